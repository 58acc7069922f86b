r"""Generate fused HH kernels (C++ and Triton) from a :class:`~hh_plugin.model.ModelDefinition`.

Nothing model-specific is written here: the rate functions, conductances, reversal
potentials, threshold and capacitance all come from the model definition, and the
partial derivatives the backward pass needs are taken symbolically with sympy. What is
written here is the *scheme* of :func:`hh_plugin.torch.functional.hh.hh_step`
(exponential Euler, Jacobi update, rising-edge spike, optional reset) and its adjoint.

The step is emitted as straight-line code (static single assignment) in a small
intermediate form and printed in one of two dialects:

* ``'cpp'``: C++ for a ``template <typename T>`` kernel (literals as ``T(...)`` so a
  float kernel computes in float, as torch does);
* ``'triton'``: the body of a ``@triton.jit`` function.

Names inside the generated code: ``s_<state>`` old state, ``I_in`` input current,
``p_<param>`` parameters (the model's, then ``alpha``, ``width``, ``V_reset``),
``dt`` (ms), ``o_<state>`` / ``o_z`` new state and spike; backward: ``gs_<state>``
adjoint of the new state, ``g_z`` gradient of the spike output, ``go_<state>``
adjoint of the old state, ``g_I`` gradient of the input current, ``dp_<param>``
this step's contribution to a parameter gradient. ``RESET`` is a compile-time
constant: 0 none, 1 soft, 2 hard.

The relative exponential ``exprel`` and its derivative are helper functions of each
dialect that mirror :func:`hh_plugin.model.expressions.exprel_torch` (same Taylor
branch and threshold), so that the fused paths round like the reference step.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Dict, List, Tuple

import sympy
from sympy.printing.lambdarepr import LambdaPrinter

from ...model.definition import ModelDefinition
from ...model.expressions import (EXPREL_TAYLOR_COEFFICIENTS, EXPREL_TAYLOR_CUTOFF_FLOAT32,
                                   EXPREL_TAYLOR_CUTOFF_FLOAT64, VOLTAGE_SYMBOL, exprel)

#: Extra kernel parameters after the model's own (the surrogate and the reset potential).
EXTRA_PARAMETERS = ("alpha", "width", "V_reset")
#: Reset modes as the compile-time constant ``RESET``.
RESET_CODES = {None: 0, "soft": 1, "hard": 2}


class _exprel_d(sympy.Function):
    """Derivative of exprel, printed as a helper that avoids the cancellation of
    sympy's closed form near 0."""

    nargs = 1


class _exprel_k(sympy.Function):
    """exprel with a derivative that prints as :class:`_exprel_d`."""

    nargs = 1

    def fdiff(self, argindex=1):
        return _exprel_d(self.args[0])


def _kernel_expr(expr: sympy.Expr) -> sympy.Expr:
    return expr.replace(exprel, _exprel_k)


# --------------------------------------------------------------------------- dialects
class _Printer(LambdaPrinter):
    """Prints sympy expressions in Python syntax that is also valid C++ (with the
    dialect's literal and function spelling)."""

    def __init__(self, dialect: "Dialect", names: Dict[str, str]):
        super().__init__({"strict": True})
        self.dialect = dialect
        self.names = names

    def _print_Symbol(self, expr):
        return self.names[expr.name]

    def _print_Integer(self, expr):
        return self.dialect.lit(float(int(expr)))

    def _print_Rational(self, expr):
        # Python evaluates "p/q" in double, as lambdify's torch callables do.
        return self.dialect.lit(expr.p / expr.q)

    def _print_Float(self, expr):
        return self.dialect.lit(float(expr))

    _print_One = _print_Integer
    _print_NegativeOne = _print_Integer
    _print_Zero = _print_Integer
    _print_Half = _print_Rational

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        b = self.parenthesize(base, 100)  # always parenthesise the base
        if exp.is_Integer and 1 <= int(exp) <= 8:
            return "(" + "*".join([f"({self._print(base)})"] * int(exp)) + ")"
        if exp.is_Integer and -8 <= int(exp) <= -1:
            prod = "*".join([f"({self._print(base)})"] * -int(exp))
            return f"({self.dialect.lit(1.0)}/({prod}))"
        if exp == sympy.S.Half:
            return self.dialect.func("sqrt", self._print(base))
        return self.dialect.func("pow", self._print(base), self._print(exp))

    def _print_Function(self, expr):
        name = {_exprel_k: "exprel", _exprel_d: "exprel_d", exprel: "exprel"}.get(type(expr))
        if name is None:
            name = type(expr).__name__
        return self.dialect.func(name, *(self._print(a) for a in expr.args))

    _print_exp = _print_Function
    _print_log = _print_Function
    _print_tanh = _print_Function
    _print_cosh = _print_Function

    def parenthesize(self, item, level, strict=False):
        text = self._print(item)
        if item.is_Atom and not (item.is_Number and item < 0):
            return text
        return f"({text})"


@dataclass(frozen=True)
class Dialect:
    """Spelling of literals, functions and statements in one target language."""

    name: str

    def lit(self, value: float) -> str:
        text = repr(float(value))
        return f"T({text})" if self.name == "cpp" else f"tl.full([], {text}, DT)"

    def func(self, name: str, *args: str) -> str:
        joined = ", ".join(args)
        if self.name == "cpp":
            table = {"exprel": "hh_exprel", "exprel_d": "hh_exprel_d", "exp": "hh_exp",
                     "log": "std::log", "sqrt": "std::sqrt", "tanh": "std::tanh",
                     "cosh": "std::cosh", "pow": "std::pow", "fabs": "std::fabs",
                     "sign": "hh_sign", "heaviside": "hh_heaviside", "relu": "hh_relu"}
        else:
            table = {"exprel": "_exprel", "exprel_d": "_exprel_d", "exp": "tl.exp",
                     "log": "tl.log", "sqrt": "tl.sqrt", "tanh": "_tanh", "cosh": "_cosh",
                     "pow": "_pow", "fabs": "tl.abs", "sign": "_sign",
                     "heaviside": "_heaviside", "relu": "_relu"}
        if self.name == "triton" and name in ("exprel", "exprel_d"):
            joined += ", EPS, LIBDEVICE"  # the kernel's compile-time constants
        return f"{table[name]}({joined})"

    def static_select(self, condition: str, a: str, b: str) -> str:
        """Choose at compile time (``condition`` on constants such as ``RESET``)."""
        if self.name == "cpp":
            return f"(({condition}) ? ({a}) : ({b}))"
        return f"(({a}) if ({condition}) else ({b}))"

    def assign(self, name: str, expr: str) -> str:
        return f"const T {name} = {expr};" if self.name == "cpp" else f"{name} = {expr}"


CPP = Dialect("cpp")
TRITON = Dialect("triton")


# --------------------------------------------------------------------------- the program
@dataclass(frozen=True)
class StepProgram:
    """Straight-line code of one step and of its adjoint, in one dialect."""

    states: Tuple[str, ...]
    parameters: Tuple[str, ...]
    forward: Tuple[str, ...]
    backward: Tuple[str, ...]
    parameter_gradients: Dict[str, str]


def kernel_parameters(model: ModelDefinition) -> Tuple[str, ...]:
    """Parameter order of the kernels: the model's parameters, then ``alpha, width, V_reset``."""
    clash = set(model.parameter_names) & set(EXTRA_PARAMETERS)
    if clash:
        raise ValueError(f"model {model.name!r}: parameter names {sorted(clash)} clash with "
                         f"the spike options")
    return tuple(model.parameter_names) + EXTRA_PARAMETERS


def step_program(model: ModelDefinition, dialect: Dialect) -> StepProgram:
    """Generate the forward step and its adjoint for ``model`` in ``dialect``."""
    d = dialect
    L = d.lit
    states = model.state_names
    gates = model.gate_names
    params = kernel_parameters(model)
    names = {VOLTAGE_SYMBOL: "s_V", **{g: f"s_{g}" for g in gates},
             **{p: f"p_{p}" for p in params}}
    printer = _Printer(d, names)
    pr = printer.doprint
    V = sympy.Symbol(VOLTAGE_SYMBOL, real=True)
    C = f"p_{model.capacitance}"
    Vth = f"p_{model.threshold}"

    fwd: List[str] = []
    a = fwd.append
    conductances = {c.name: _kernel_expr(e) for c, e in
                    zip(model.channels, model.conductance_expressions.values())}
    channels = model.channels
    # -- membrane: conductances frozen at the old gates, exponential Euler
    for ch in channels:
        a(d.assign(f"f_g_{ch.name}", pr(conductances[ch.name])))
    a(d.assign("f_G", " + ".join(f"f_g_{ch.name}" for ch in channels)))
    a(d.assign("f_Iion", " + ".join(f"f_g_{ch.name}*(s_V - p_{ch.reversal})" for ch in channels)))
    a(d.assign("f_iC", f"{L(1.0)}/{C}"))  # one division; the rest multiply by it
    a(d.assign("f_drive", "(I_in - f_Iion)*f_iC"))
    a(d.assign("f_uV", "(-f_G)*(dt*f_iC)"))
    a(d.assign("f_eV", d.func("exprel", "f_uV")))
    a(d.assign("f_Vpre", "s_V + dt*f_eV*f_drive"))
    # -- gates: rates at the old V
    rates = {g: tuple(_kernel_expr(e) for e in pair) for g, pair in model.rate_expressions.items()}
    for g in gates:
        alpha, beta = rates[g]
        a(d.assign(f"f_a_{g}", pr(alpha)))
        a(d.assign(f"f_b_{g}", pr(beta)))
        a(d.assign(f"f_s_{g}", f"f_a_{g} + f_b_{g}"))
        a(d.assign(f"f_w_{g}", f"(-f_s_{g})*dt"))
        a(d.assign(f"f_e_{g}", d.func("exprel", f"f_w_{g}")))
        a(d.assign(f"f_r_{g}", f"f_a_{g}*({L(1.0)} - s_{g}) - f_b_{g}*s_{g}"))
        a(d.assign(f"o_{g}", f"s_{g} + dt*f_e_{g}*f_r_{g}"))
    # -- rising-edge spike and reset
    a(d.assign("f_sc", d.func("fabs", Vth)))
    a(d.assign("f_isc", f"{L(1.0)}/f_sc"))
    a(d.assign("f_y1", f"(f_Vpre - {Vth})*f_isc"))
    a(d.assign("f_y0", f"(s_V - {Vth})*f_isc"))
    a(d.assign("f_H1", d.func("heaviside", "f_y1")))
    a(d.assign("f_H0", d.func("heaviside", "f_y0")))
    a(d.assign("o_z", f"f_H1*({L(1.0)} - f_H0)"))
    a(d.assign("o_V", d.static_select(
        "RESET == 0", "f_Vpre", d.static_select(
            "RESET == 1", f"f_Vpre - o_z*({Vth} - p_V_reset)",
            f"({L(1.0)} - o_z)*f_Vpre + o_z*p_V_reset"))))

    # ------------------------------------------------------------------ adjoint
    bwd: List[str] = []
    b = bwd.append
    zero = L(0.0)
    b(d.assign("b_gVpre", d.static_select("RESET == 2", f"gs_V*({L(1.0)} - o_z)", "gs_V")))
    b(d.assign("b_gz", d.static_select("RESET == 1", f"g_z - gs_V*({Vth} - p_V_reset)", "g_z")))
    b(d.assign("b_gy1", f"b_gz*({L(1.0)} - f_H0)*p_alpha*"
                        + d.func("relu", f"p_width - {d.func('fabs', 'f_y1')}")))
    b(d.assign("b_gy0", f"(-(b_gz*f_H1))*p_alpha*"
                        + d.func("relu", f"p_width - {d.func('fabs', 'f_y0')}")))
    b(d.assign("b_gVp", "b_gVpre + b_gy1*f_isc"))
    b(d.assign("b_gdrive", "b_gVp*(dt*f_eV)"))
    b(d.assign("b_geV", "b_gVp*dt*f_drive"))
    b(d.assign("b_guV", "b_geV*" + d.func("exprel_d", "f_uV")))
    b(d.assign("b_gG", "(-b_guV)*(dt*f_iC)"))
    b(d.assign("b_gIion", "(-b_gdrive)*f_iC"))
    b(d.assign("g_I", "b_gdrive*f_iC"))
    for ch in channels:
        b(d.assign(f"b_gg_{ch.name}", f"b_gIion*(s_V - p_{ch.reversal}) + b_gG"))
    for g in gates:
        b(d.assign(f"b_ge_{g}", f"gs_{g}*dt*f_r_{g}"))
        b(d.assign(f"b_gr_{g}", f"gs_{g}*(dt*f_e_{g})"))
        b(d.assign(f"b_gw_{g}", f"b_ge_{g}*" + d.func("exprel_d", f"f_w_{g}")))
        b(d.assign(f"b_ga_{g}", f"b_gr_{g}*({L(1.0)} - s_{g}) - b_gw_{g}*dt"))
        b(d.assign(f"b_gb_{g}", f"(-(b_gr_{g}*s_{g})) - b_gw_{g}*dt"))

    def partial_terms(wrt: sympy.Symbol) -> List[str]:
        terms = []
        for ch in channels:
            deriv = sympy.diff(conductances[ch.name], wrt)
            if deriv != 0:
                terms.append(f"b_gg_{ch.name}*({pr(deriv)})")
        return terms

    # old V: identity, spike factor, ionic current, V-dependent conductances, rates
    v_terms = ["b_gVp", "b_gy0*f_isc", "b_gIion*f_G"] + partial_terms(V)
    for g in gates:
        for which, expr in (("a", rates[g][0]), ("b", rates[g][1])):
            deriv = sympy.diff(expr, V)
            if deriv != 0 and not expr.is_Atom:
                # reuse the forward's rate value where the derivative contains the rate
                # (d(1/f)/dV = -f'/f^2 -> -f' r^2): fewer divisions in the adjoint
                rate = sympy.Symbol(f"f_{which}_{g}", real=True)
                names[rate.name] = rate.name
                coeff, core = expr.as_coeff_Mul()
                deriv = deriv.subs(core, rate / coeff) if coeff != 1 else deriv.subs(expr, rate)
            if deriv != 0:
                v_terms.append(f"b_g{which}_{g}*({pr(deriv)})")
    b(d.assign("go_V", " + ".join(v_terms)))
    for g in gates:
        terms = [f"gs_{g}", f"(-(b_gr_{g}*f_s_{g}))"] + partial_terms(sympy.Symbol(g, real=True))
        b(d.assign(f"go_{g}", " + ".join(terms)))

    # parameters
    pterms: Dict[str, List[str]] = {p: [] for p in params}
    for p in model.parameter_names:
        pterms[p] += partial_terms(sympy.Symbol(p, real=True))
    for ch in channels:
        pterms[ch.reversal].append(f"(-(b_gIion*f_g_{ch.name}))")
    pterms[model.capacitance].append("b_guV*f_G*dt*(f_iC*f_iC)")
    pterms[model.capacitance].append("(-(b_gdrive*f_drive*f_iC))")
    pterms[model.threshold].append(
        f"(-(b_gy1 + b_gy0)*f_isc) - (b_gy1*(f_Vpre - {Vth}) + b_gy0*(s_V - {Vth}))"
        f"*(f_isc*f_isc)*" + d.func("sign", Vth))
    pterms[model.threshold].append(d.static_select("RESET == 1", "(-(gs_V*o_z))", zero))
    pterms["V_reset"].append(d.static_select("RESET == 0", zero, "gs_V*o_z"))
    pgrads = {p: " + ".join(t) for p, t in pterms.items() if t}
    return StepProgram(tuple(states), params, tuple(fwd), tuple(bwd), pgrads)


# --------------------------------------------------------------------------- C++
def _exprel_constants(template: str, cpp: bool = True) -> str:
    """Fill the exprel cutoffs and Taylor coefficients from :mod:`hh_plugin.model.expressions`."""
    coefficients = EXPREL_TAYLOR_COEFFICIENTS
    if len(coefficients) != 5:
        raise ValueError("the generated exprel derivative expects 5 Taylor coefficients")
    wrap = (lambda c: f"T({c!r})") if cpp else repr
    taylor = wrap(coefficients[-1])
    for c in reversed(coefficients[:-1]):
        taylor = f"{wrap(c)} + x * ({taylor})"
    out = template.replace("EXPREL_TAYLOR", taylor)
    out = out.replace("EXPREL_EPS64", repr(EXPREL_TAYLOR_CUTOFF_FLOAT64))
    out = out.replace("EXPREL_EPS32", repr(EXPREL_TAYLOR_CUTOFF_FLOAT32))
    for k, c in enumerate(coefficients):
        out = out.replace(f"EXPREL_C{k}", repr(c))
    return out


_CPP_HEADER = r"""
// Generated by hh_plugin.torch.fused.codegen from the model definition MODEL_NAME.
// Do not edit: regenerate from the model definition.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>
#include <algorithm>
#ifdef __linux__
#include <sys/mman.h>
#endif

#define HH_INLINE inline __attribute__((always_inline))

namespace {

// Inline, vectorisable exp and expm1 (no calls into libm/libmvec, so that the simd loops
// keep their registers). Range reduction x = k ln2 + r, |r| <= ln2/2 (Cody-Waite with a
// short high part of ln2), expm1(r) by a polynomial to below half an ulp, then
// exp(x) = (1 + expm1(r)) 2^k and expm1(x) = 2^k expm1(r) + (2^k - 1), the powers of two
// built in the exponent bits. Max error about 1 ulp; exp flushes results below about
// twice the smallest normal number (2.6e-38 in float, 5.5e-308 in double) to zero.
template <typename T> struct HHMath;
template <> struct HHMath<float> {
  using I = int32_t;
  static constexpr float shifter = 12582912.0f;            // 1.5 * 2^23
  static constexpr float log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 0.693145751953125f;      // 16 significant bits
  static constexpr float ln2_lo = 1.42860682030941723212e-6f;
  static constexpr float exp_hi = 88.7228317f;             // log(FLT_MAX)
  static constexpr float exp_lo = -86.5f;                 // exp(x) < 2.6e-38 flushed to 0
  static constexpr float expm1_lo = -86.0f;                // expm1 == -1 below
  static constexpr int bias = 127, mant = 23;
  static HH_INLINE float poly(float r) {
    // expm1(r) = r + r^2 q(r), q a degree-4 minimax fit on |r| <= ln2/2 (relative error
    // of expm1 below 1.4e-8, a quarter of an ulp)
    float q = 1.38825164036e-3f;
    q = std::fma(q, r, 8.36654726487e-3f);
    q = std::fma(q, r, 4.16672007168e-2f);
    q = std::fma(q, r, 1.66665434233e-1f);
    q = std::fma(q, r, 4.99999981496e-1f);
    return std::fma(r * r, q, r);
  }
};
template <> struct HHMath<double> {
  using I = int64_t;
  static constexpr double shifter = 6755399441055744.0;     // 1.5 * 2^52
  static constexpr double log2e = 1.4426950408889634074;
  static constexpr double ln2_hi = 0.693147180559890330187;  // 32 significant bits
  static constexpr double ln2_lo = 5.49792301870837115524e-14;
  static constexpr double exp_hi = 709.782712893383973;       // log(DBL_MAX)
  static constexpr double exp_lo = -707.5;                   // exp(x) < 5.5e-308 flushed to 0
  static constexpr double expm1_lo = -700.0;
  static constexpr int bias = 1023, mant = 52;
  static HH_INLINE double poly(double r) {
    // expm1(r) = r + r^2 (1/2 + r/6 + ... + r^11/13!)
    double q = 1.60590438368216146e-10;
    q = std::fma(q, r, 2.08767569878680990e-9);
    q = std::fma(q, r, 2.50521083854417188e-8);
    q = std::fma(q, r, 2.75573192239858907e-7);
    q = std::fma(q, r, 2.75573192239858907e-6);
    q = std::fma(q, r, 2.48015873015873016e-5);
    q = std::fma(q, r, 1.98412698412698413e-4);
    q = std::fma(q, r, 1.38888888888888889e-3);
    q = std::fma(q, r, 8.33333333333333333e-3);
    q = std::fma(q, r, 4.16666666666666667e-2);
    q = std::fma(q, r, 1.66666666666666667e-1);
    q = std::fma(q, r, 0.5);
    return std::fma(r * r, q, r);
  }
};

template <typename T> HH_INLINE T hh_pow2(typename HHMath<T>::I k) {
  using M = HHMath<T>;
  return __builtin_bit_cast(T, (typename M::I)((k + M::bias) << M::mant));
}

// k and expm1(r) for x = k ln2 + r
template <typename T> HH_INLINE
T hh_reduce(T x, typename HHMath<T>::I& k) {
  using M = HHMath<T>;
  const T t = std::fma(x, M::log2e, M::shifter);
  const T kf = t - M::shifter;
  k = __builtin_bit_cast(typename M::I, t) - __builtin_bit_cast(typename M::I, M::shifter);
  T r = std::fma(kf, -M::ln2_hi, x);
  r = std::fma(kf, -M::ln2_lo, r);
  return M::poly(r);
}

template <typename T> HH_INLINE T hh_exp_inline(T x) {
  using M = HHMath<T>;
  T xc = x < M::exp_lo ? M::exp_lo : x;
  xc = xc > M::exp_hi ? M::exp_hi : xc;
  typename M::I k;
  const T p = hh_reduce<T>(xc, k);
  const T y = T(2) * ((p + T(1)) * hh_pow2<T>(k - 1));  // 2^(k-1) is normal for x >= exp_lo
  return x > M::exp_hi ? T(INFINITY) : (x < M::exp_lo ? T(0) : y);
}

template <typename T> HH_INLINE T hh_expm1_inline(T x) {
  using M = HHMath<T>;
  T xc = x < M::expm1_lo ? M::expm1_lo : x;
  xc = xc > M::exp_hi ? M::exp_hi : xc;
  typename M::I k;
  const T p = hh_reduce<T>(xc, k);
  const T sh = hh_pow2<T>(k - 1);  // 2^k / 2 (normal for k >= 2 - bias)
  const T y = T(2) * std::fma(sh, p, sh - T(0.5));
  return x > M::exp_hi ? T(INFINITY) : y;
}


// exp/expm1 in the simd loops. Default: std::exp/std::expm1, which vectorise through
// glibc's libmvec (x86-64, glibc >= 2.35; declared below) and measure faster than the
// inline versions above on this AVX-512 CPU; without libmvec they stay scalar libm calls
// (slow, but rounding like libm). HH_INLINE_EXP: the inline versions above (vectorised
// everywhere; about 1-2 ulp, so float32 runs may shift a near-threshold spike more often).
#if defined(__x86_64__) && defined(__GLIBC__) && !defined(HH_NO_LIBMVEC) && !defined(HH_INLINE_EXP)
#if (__GLIBC__ > 2) || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35)
}  // namespace
extern "C" {
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) float expm1f(float) noexcept;
__attribute__((simd("notinbranch"))) double exp(double) noexcept;
__attribute__((simd("notinbranch"))) double expm1(double) noexcept;
}
namespace {
#endif
#endif
#ifdef HH_INLINE_EXP
template <typename T> HH_INLINE T hh_exp(T x) { return hh_exp_inline<T>(x); }
template <typename T> HH_INLINE T hh_expm1(T x) { return hh_expm1_inline<T>(x); }
#else
template <typename T> HH_INLINE T hh_exp(T x) { return std::exp(x); }
template <typename T> HH_INLINE T hh_expm1(T x) { return std::expm1(x); }
#endif

// exprel(x) = expm1(x)/x exactly as hh_plugin.model.expressions.exprel_torch computes it:
// the Taylor polynomial within |x| < eps (EXPREL_EPS64 in double, EXPREL_EPS32 in float).
template <typename T> HH_INLINE T hh_eps() { return std::is_same<T, double>::value ? T(EXPREL_EPS64) : T(EXPREL_EPS32); }

template <typename T> HH_INLINE T hh_exprel(T x) {
  const bool small = std::fabs(x) < hh_eps<T>();
  const T safe = small ? T(1) : x;
  const T taylor = EXPREL_TAYLOR;
  const T quotient = hh_expm1<T>(safe) / safe;
  return small ? taylor : quotient;
}

// d exprel / dx, as autograd differentiates exprel_torch.
template <typename T> HH_INLINE T hh_exprel_d(T x) {
  const bool small = std::fabs(x) < hh_eps<T>();
  const T safe = small ? T(1) : x;
  const T q3 = T(EXPREL_C3) + x * T(EXPREL_C4);
  const T q2 = T(EXPREL_C2) + x * q3;
  const T q1 = T(EXPREL_C1) + x * q2;
  const T d3 = T(EXPREL_C4);
  const T d2 = q3 + x * d3;
  const T d1 = q2 + x * d2;
  const T dpoly = q1 + x * d1;
  const T em = hh_expm1<T>(safe);
  const T inv = T(1) / safe;
  const T dquot = (em + T(1)) * inv - em * (inv * inv);
  return small ? dpoly : dquot;
}

template <typename T> HH_INLINE T hh_heaviside(T y) { return y >= T(0) ? T(1) : T(0); }
template <typename T> HH_INLINE T hh_relu(T y) { return y > T(0) ? y : T(0); }
template <typename T> HH_INLINE T hh_sign(T y) { return y > T(0) ? T(1) : (y < T(0) ? T(-1) : T(0)); }

template <typename T> struct BlockWidth { static constexpr int value = std::is_same<T, double>::value ? BLOCK_DOUBLE : BLOCK_FLOAT; };

constexpr int NS = NUM_STATES;
constexpr int NP = NUM_PARAMS;

template <typename T> struct Args {
  int64_t steps, M, every;
  T dt;
  const T* I;
  T* Z;
  const T* state0[NS];
  T* state1[NS];
  T* ckpt;  // block-major: (nblocks, nseg, NS, W)
  int64_t nseg;
  T* rec[NS];
  const T* param[NP];
  bool scalar[NP];
  // backward
  const T* gZ;
  const T* gfinal[NS];
  const T* grec[NS];
  T* gI;
  T* gstate0[NS];
  T* gparam[NP];
};
"""


_LOCAL_NAME = re.compile(r"\b(?:(?:s|p|f|o|b|gs|go)_\w+|I_in|g_z|g_I)\b")


def _interleave(lines, unroll: int, indent: str = "      ") -> str:
    """Emit each statement ``unroll`` times, for the lane groups ``i + u*(W/unroll)``,
    with the local names suffixed ``_u``: the groups are independent dependency chains
    that the CPU overlaps (one step is a long chain of exp, division and polynomial
    latencies)."""
    out = []
    for line in lines:
        for u in range(unroll):
            text = _LOCAL_NAME.sub(lambda m: f"{m.group(0)}_{u}", line)
            text = text.replace("[i]", f"[i + {u}*(W/{unroll})]")
            out.append(indent + text)
    return "\n".join(out)


def _cpp_block_code(program: StepProgram, unroll: int = 2) -> str:
    U = unroll
    states, params = program.states, program.parameters
    load_state = [f"const T s_{s} = SRC[{k}][i];" for k, s in enumerate(states)]
    load_param = [f"const T p_{p} = P[{k}][i];" for k, p in enumerate(params)]
    store_state = [f"DST[{k}][i] = o_{s};" for k, s in enumerate(states)]
    load_gs = [f"const T gs_{s} = GS[{k}][i];" for k, s in enumerate(states)]
    store_go = [f"GS[{k}][i] = go_{s};" for k, s in enumerate(states)]
    pgrad = [f"GP[{k}][i] += {program.parameter_gradients[p]};"
             for k, p in enumerate(params) if p in program.parameter_gradients]
    fwd_body = _interleave(load_state + load_param + ["const T I_in = It[i];"]
                           + list(program.forward) + store_state, U)
    fwd_z = _interleave(["Zt[i] = o_z;"], U, "        ")
    bwd_body = _interleave(load_state + load_gs + load_param
                           + ["const T I_in = It[i];", "const T g_z = gZt ? gZt[i] : T(0);"]
                           + list(program.forward) + list(program.backward) + store_go
                           + ["gIt[i] = g_I;"], U)
    bwd_pg = _interleave(pgrad, U, "        ")
    return f"""
// One step for the lanes [0, W) of a block: state SRC -> DST (may alias), spikes to Zt.
// Each simd iteration advances {U} independent lane groups (see codegen._interleave).
template <typename T, int RESET, int W>
inline void step_lanes(int n, const T (&SRC)[NS][W], T (&DST)[NS][W], const T (&P)[NP][W],
                       const T* __restrict It, T* __restrict Zt, T dt) {{
  static_assert(W % {U} == 0, "block width must be a multiple of the interleave factor");
#pragma omp simd
  for (int i = 0; i < W / {U}; ++i) {{
{fwd_body}
      if (Zt) {{
{fwd_z}
      }}
  }}
}}

// Adjoint of one step: GS holds the adjoint of the state after the step on entry,
// of the state before it on exit.
template <typename T, int RESET, int W, bool PG>
inline void adjoint_lanes(int n, const T (&SRC)[NS][W], T (&GS)[NS][W], T (&GP)[NP][W],
                          const T (&P)[NP][W], const T* __restrict It,
                          const T* __restrict gZt, T* __restrict gIt, T dt) {{
  static_assert(W % {U} == 0, "block width must be a multiple of the interleave factor");
#pragma omp simd
  for (int i = 0; i < W / {U}; ++i) {{
{bwd_body}
      if constexpr (PG) {{
{bwd_pg}
      }}
  }}
}}
"""


_CPP_DRIVER = r"""
template <typename T, int W>
inline void load_params(const Args<T>& a, int64_t j0, int n, T (&P)[NP][W]) {
  for (int q = 0; q < NP; ++q)
    for (int i = 0; i < W; ++i)
      P[q][i] = a.scalar[q] ? a.param[q][0] : a.param[q][j0 + std::min(i, n - 1)];
}

template <typename T, int RESET, int W>
void forward_block(const Args<T>& a, int64_t j0, int n) {
  alignas(64) T S[NS][W];
  alignas(64) T P[NP][W];
  load_params<T, W>(a, j0, n, P);
  for (int s = 0; s < NS; ++s)
    for (int i = 0; i < W; ++i) S[s][i] = a.state0[s][j0 + std::min(i, n - 1)];
  alignas(64) T Ipad[W];
  alignas(64) T Zpad[W];
  for (int64_t t = 0; t < a.steps; ++t) {
    if (a.every > 0 && t % a.every == 0) {
      T* dst = a.ckpt + ((j0 / W) * a.nseg + t / a.every) * (NS * W);
      for (int s = 0; s < NS; ++s)
        for (int i = 0; i < W; ++i) dst[s * W + i] = S[s][i];
    }
    const T* It = a.I + t * a.M + j0;
    T* Zt = a.Z + t * a.M + j0;
    if (n == W) {
      step_lanes<T, RESET, W>(W, S, S, P, It, Zt, a.dt);
    } else {
      for (int i = 0; i < W; ++i) Ipad[i] = It[std::min(i, n - 1)];
      step_lanes<T, RESET, W>(W, S, S, P, Ipad, Zpad, a.dt);
      for (int i = 0; i < n; ++i) Zt[i] = Zpad[i];
    }
    if (a.rec[0]) {
      for (int s = 0; s < NS; ++s)
        for (int i = 0; i < n; ++i) a.rec[s][t * a.M + j0 + i] = S[s][i];
    }
  }
  for (int s = 0; s < NS; ++s)
    for (int i = 0; i < n; ++i) a.state1[s][j0 + i] = S[s][i];
}

template <typename T, int RESET, int W, bool PG>
void backward_block(const Args<T>& a, int64_t j0, int n, std::vector<T>& scratch) {
  using Row = T[NS][W];
  const int64_t k = a.every;
  scratch.resize((size_t)k * NS * W + 64 / sizeof(T));
  // align the segment buffer to 64 bytes
  uintptr_t base = reinterpret_cast<uintptr_t>(scratch.data());
  T* aligned = reinterpret_cast<T*>((base + 63) & ~uintptr_t(63));
  Row* buf = reinterpret_cast<Row*>(aligned);
  alignas(64) T P[NP][W];
  alignas(64) T GS[NS][W];
  alignas(64) T GP[NP][W];
  alignas(64) T Ipad[W];
  alignas(64) T gZpad[W];
  alignas(64) T gIpad[W];
  load_params<T, W>(a, j0, n, P);
  for (int s = 0; s < NS; ++s)
    for (int i = 0; i < W; ++i)
      GS[s][i] = (a.gfinal[s] && i < n) ? a.gfinal[s][j0 + i] : T(0);
  for (int q = 0; q < NP; ++q)
    for (int i = 0; i < W; ++i) GP[q][i] = T(0);
  const int64_t nseg = a.nseg;
  for (int64_t seg = nseg - 1; seg >= 0; --seg) {
    const int64_t t0 = seg * k;
    const int64_t len = std::min(k, a.steps - t0);
    const T* src = a.ckpt + ((j0 / W) * a.nseg + seg) * (NS * W);
    for (int s = 0; s < NS; ++s)
      for (int i = 0; i < W; ++i) buf[0][s][i] = src[s * W + i];
    // recompute the segment's states from its checkpoint
    for (int64_t tt = 0; tt + 1 < len; ++tt) {
      const T* It = a.I + (t0 + tt) * a.M + j0;
      if (n != W) {
        for (int i = 0; i < W; ++i) Ipad[i] = It[std::min(i, n - 1)];
        It = Ipad;
      }
      step_lanes<T, RESET, W>(W, buf[tt], buf[tt + 1], P, It, (T*)nullptr, a.dt);
    }
    for (int64_t tt = len - 1; tt >= 0; --tt) {
      const int64_t t = t0 + tt;
      if (a.grec[0]) {
        for (int s = 0; s < NS; ++s)
          for (int i = 0; i < n; ++i) GS[s][i] += a.grec[s][t * a.M + j0 + i];
      }
      const T* It = a.I + t * a.M + j0;
      const T* gZt = a.gZ ? a.gZ + t * a.M + j0 : nullptr;
      T* gIt = a.gI + t * a.M + j0;
      if (n == W) {
        adjoint_lanes<T, RESET, W, PG>(W, buf[tt], GS, GP, P, It, gZt, gIt, a.dt);
      } else {
        for (int i = 0; i < W; ++i) {
          Ipad[i] = It[std::min(i, n - 1)];
          gZpad[i] = (gZt && i < n) ? gZt[i] : T(0);
        }
        adjoint_lanes<T, RESET, W, PG>(W, buf[tt], GS, GP, P, Ipad, gZpad, gIpad, a.dt);
        for (int i = 0; i < n; ++i) gIt[i] = gIpad[i];
      }
    }
  }
  for (int s = 0; s < NS; ++s)
    for (int i = 0; i < n; ++i) a.gstate0[s][j0 + i] = GS[s][i];
  if (PG) {
    for (int q = 0; q < NP; ++q)
      if (a.gparam[q])
        for (int i = 0; i < n; ++i) a.gparam[q][j0 + i] = GP[q][i];
  }
}

template <typename T, int RESET>
void run_forward(const Args<T>& a) {
  constexpr int W = BlockWidth<T>::value;
  const int64_t nblocks = (a.M + W - 1) / W;
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t j0 = blk * W;
      forward_block<T, RESET, W>(a, j0, (int)std::min<int64_t>(W, a.M - j0));
    }
  });
}

template <typename T, int RESET, bool PG>
void run_backward(const Args<T>& a) {
  constexpr int W = BlockWidth<T>::value;
  const int64_t nblocks = (a.M + W - 1) / W;
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<T> scratch;
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t j0 = blk * W;
      backward_block<T, RESET, W, PG>(a, j0, (int)std::min<int64_t>(W, a.M - j0), scratch);
    }
  });
}

// Large (T, M) outputs are fresh memory; faulting it in 4 KiB pages inside the kernel
// cost about a third of the forward time at N = 1e4, T = 1000 on the benchmark machine.
// Where transparent huge pages are enabled in "madvise" mode, ask for them.
inline torch::Tensor big_empty(at::IntArrayRef shape, const torch::TensorOptions& opts) {
  torch::Tensor t = torch::empty(shape, opts);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = uintptr_t(1) << 21;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t end = begin + uintptr_t(t.numel()) * t.element_size();
  const uintptr_t b = (begin + huge - 1) & ~(huge - 1), e = end & ~(huge - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);  // a hint: errors ignored
#endif
  return t;
}

void check_vector(const std::vector<torch::Tensor>& v, size_t n, const char* what) {
  TORCH_CHECK(v.size() == n, what, ": expected ", n, " tensors, got ", v.size());
}

template <typename T>
void fill_common(Args<T>& a, const torch::Tensor& I, const std::vector<torch::Tensor>& params,
                 double dt, int64_t every) {
  a.steps = I.size(0);
  a.M = I.size(1);
  a.every = every;
  a.nseg = every > 0 ? (a.steps + every - 1) / every : 0;
  a.dt = T(dt);
  a.I = I.data_ptr<T>();
  for (int q = 0; q < NP; ++q) {
    TORCH_CHECK(params[q].is_contiguous() && params[q].scalar_type() == I.scalar_type(),
                "parameter ", q, " must be contiguous and of the input's dtype");
    TORCH_CHECK(params[q].numel() == 1 || params[q].numel() == a.M,
                "parameter ", q, " must have 1 or M elements");
    a.param[q] = params[q].data_ptr<T>();
    a.scalar[q] = params[q].numel() == 1;
  }
}

}  // namespace

// Forward over the whole sequence. I: (steps, M) contiguous; state0: NS tensors (M,);
// params: NP tensors of 1 or M elements. every > 0 stores the state before steps
// 0, every, 2 every, ... (checkpoints for the backward). Returns
// [Z, final state (NS), checkpoints (NS, if every > 0), recorded states (NS, if record)].
std::vector<torch::Tensor> hh_forward(torch::Tensor I, std::vector<torch::Tensor> state0,
                                      std::vector<torch::Tensor> params, double dt,
                                      int64_t reset, int64_t every, bool record) {
  TORCH_CHECK(I.dim() == 2 && I.is_contiguous() && I.device().is_cpu(),
              "I must be a contiguous CPU tensor (steps, M)");
  check_vector(state0, NS, "state0");
  check_vector(params, NP, "params");
  const int64_t steps = I.size(0), M = I.size(1);
  auto opts = I.options();
  std::vector<torch::Tensor> out;
  out.push_back(big_empty({steps, M}, opts));
  for (int s = 0; s < NS; ++s) out.push_back(torch::empty({M}, opts));
  if (every > 0) {
    constexpr int Wf = BLOCK_FLOAT_V, Wd = BLOCK_DOUBLE_V;
    const int64_t W = I.scalar_type() == torch::kDouble ? Wd : Wf;
    out.push_back(torch::empty({(M + W - 1) / W, (steps + every - 1) / every, NS, W}, opts));
  }
  if (record)
    for (int s = 0; s < NS; ++s) out.push_back(big_empty({steps, M}, opts));
  AT_DISPATCH_FLOATING_TYPES(I.scalar_type(), "hh_forward", [&] {
    using T = scalar_t;
    Args<T> a{};
    fill_common<T>(a, I, params, dt, every);
    a.Z = out[0].data_ptr<T>();
    a.ckpt = every > 0 ? out[1 + NS].data_ptr<T>() : nullptr;
    for (int s = 0; s < NS; ++s) {
      TORCH_CHECK(state0[s].is_contiguous() && state0[s].numel() == M &&
                  state0[s].scalar_type() == I.scalar_type(), "state0 tensors must be (M,) contiguous");
      a.state0[s] = state0[s].data_ptr<T>();
      a.state1[s] = out[1 + s].data_ptr<T>();
      a.rec[s] = record ? out[1 + NS + (every > 0 ? 1 : 0) + s].data_ptr<T>() : nullptr;
    }
    if (M == 0 || steps == 0) return;
    if (reset == 0) run_forward<T, 0>(a);
    else if (reset == 1) run_forward<T, 1>(a);
    else run_forward<T, 2>(a);
  });
  return out;
}

// Backward: recomputes each checkpoint segment and runs the adjoint step backwards.
// gZ: (steps, M) or empty; gfinal, grec: NS tensors each or an empty list (zero).
// Returns [gI, gstate0 (NS), per-neuron parameter gradients (NP, (M,))].
std::vector<torch::Tensor> hh_backward(torch::Tensor I, torch::Tensor ckpt,
                                       std::vector<torch::Tensor> params, double dt,
                                       int64_t reset, int64_t every, torch::Tensor gZ,
                                       std::vector<torch::Tensor> gfinal,
                                       std::vector<torch::Tensor> grec, bool pgrad) {
  TORCH_CHECK(I.dim() == 2 && I.is_contiguous() && I.device().is_cpu(), "bad I");
  TORCH_CHECK(every > 0, "backward needs checkpoints (every > 0)");
  TORCH_CHECK(ckpt.is_contiguous() && ckpt.dim() == 4 && ckpt.size(2) == NS, "bad checkpoints");
  check_vector(params, NP, "params");
  const int64_t steps = I.size(0), M = I.size(1);
  auto opts = I.options();
  std::vector<torch::Tensor> out;
  out.push_back(big_empty({steps, M}, opts));
  for (int s = 0; s < NS; ++s) out.push_back(torch::empty({M}, opts));
  for (int q = 0; q < NP; ++q) out.push_back(torch::empty({M}, opts));
  AT_DISPATCH_FLOATING_TYPES(I.scalar_type(), "hh_backward", [&] {
    using T = scalar_t;
    Args<T> a{};
    fill_common<T>(a, I, params, dt, every);
    a.gZ = gZ.numel() ? gZ.data_ptr<T>() : nullptr;
    if (gZ.numel()) TORCH_CHECK(gZ.is_contiguous() && gZ.numel() == steps * M, "bad gZ");
    a.gI = out[0].data_ptr<T>();
    a.ckpt = ckpt.data_ptr<T>();
    TORCH_CHECK(ckpt.size(1) == a.nseg && ckpt.size(3) == BlockWidth<T>::value, "bad checkpoint shape");
    for (int s = 0; s < NS; ++s) {
      a.gfinal[s] = (gfinal.size() == (size_t)NS && gfinal[s].numel()) ? gfinal[s].data_ptr<T>() : nullptr;
      a.grec[s] = (grec.size() == (size_t)NS) ? grec[s].data_ptr<T>() : nullptr;
      a.gstate0[s] = out[1 + s].data_ptr<T>();
    }
    if (grec.size() == (size_t)NS)
      for (int s = 0; s < NS; ++s) TORCH_CHECK(grec[s].is_contiguous() && grec[s].numel() == steps * M, "bad grec");
    for (int q = 0; q < NP; ++q) a.gparam[q] = out[1 + NS + q].data_ptr<T>();
    if (M == 0 || steps == 0) return;
    // Parameter gradients cost little next to the rest, so one variant (with them) is
    // compiled; without pgrad they go to scratch buffers that are dropped.
    if (reset == 0) run_backward<T, 0, true>(a);
    else if (reset == 1) run_backward<T, 1, true>(a);
    else run_backward<T, 2, true>(a);
  });
  return out;
}
"""

#: Independent lane groups interleaved in each simd iteration (see :func:`_interleave`).
INTERLEAVE = 1
#: Neurons per block (lanes kept in L1 across the time loop), float and double.
BLOCK_FLOAT = 64
BLOCK_DOUBLE = 32


def generate_cpp(model: ModelDefinition) -> str:
    """C++ source of the fused CPU extension for ``model`` (functions ``hh_forward``,
    ``hh_backward``)."""
    program = step_program(model, CPP)
    header = (_exprel_constants(_CPP_HEADER).replace("MODEL_NAME", model.name)
              .replace("NUM_STATES", str(len(program.states)))
              .replace("NUM_PARAMS", str(len(program.parameters)))
              .replace("BLOCK_DOUBLE", str(BLOCK_DOUBLE))
              .replace("BLOCK_FLOAT", str(BLOCK_FLOAT)))
    driver = (_CPP_DRIVER.replace("BLOCK_FLOAT_V", str(BLOCK_FLOAT))
              .replace("BLOCK_DOUBLE_V", str(BLOCK_DOUBLE)))
    return header + _cpp_block_code(program, INTERLEAVE) + driver


def source_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- Triton
_TRITON_HELPERS = r"""
# Generated by hh_plugin.torch.fused.codegen from the model definition MODEL_NAME.
# Do not edit: regenerate from the model definition.
import triton
import triton.language as tl
from triton.language.extra import libdevice


@triton.jit
def _expm1(x, LIBDEVICE: tl.constexpr):
    if LIBDEVICE:
        y = libdevice.expm1(x)
    else:
        # Kahan's expm1 from exp and log (the interpreter has no libdevice.expm1)
        u = tl.exp(x)
        um1 = u - 1.0
        y = tl.where(u == 1.0, x, tl.where(um1 == -1.0, -1.0, um1 * x / tl.log(u)))
    return y


@triton.jit
def _exprel(x, EPS: tl.constexpr, LIBDEVICE: tl.constexpr):
    # mirrors hh_plugin.model.expressions.exprel_torch
    small = tl.abs(x) < EPS
    safe = tl.where(small, 1.0, x)
    taylor = EXPREL_TAYLOR
    return tl.where(small, taylor, _expm1(safe, LIBDEVICE) / safe)


@triton.jit
def _heaviside(y):
    return tl.where(y >= 0, 1.0, 0.0).to(y.dtype)


@triton.jit
def _tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x >= 0, t, -t)


@triton.jit
def _cosh(x):
    return 0.5 * (tl.exp(x) + tl.exp(-x))


@triton.jit
def _pow(a, b):
    return tl.exp(b * tl.log(a))
"""


def generate_triton(model: ModelDefinition) -> str:
    """Python source of a Triton forward kernel ``hh_forward_kernel`` for ``model``: one
    program per ``BLOCK`` neurons runs the whole time loop with the state in registers."""
    program = step_program(model, TRITON)
    states, params = program.states, program.parameters
    fwd = program.forward
    sig_states = ", ".join(f"S0_{s}, S1_{s}, R_{s}" for s in states)
    sig_params = ", ".join(f"P_{p}, stride_{p}" for p in params)
    body = []
    b = body.append
    b("    pid = tl.program_id(0)")
    b("    offs = pid * BLOCK + tl.arange(0, BLOCK)")
    b("    mask = offs < M")
    b("    dt = tl.load(DT_ptr)")
    for s in states:
        b(f"    s_{s} = tl.load(S0_{s} + offs, mask=mask, other=0.0)")
    for p in params:
        b(f"    p_{p} = tl.load(P_{p} + offs * stride_{p}, mask=mask, other=1.0)")
    b("    for t in range(steps):")
    b("        base = tl.cast(t, tl.int64) * M + offs")
    b("        I_in = tl.load(I_ptr + base, mask=mask, other=0.0)")
    for line in fwd:
        b("        " + line)
    b("        tl.store(Z_ptr + base, o_z, mask=mask)")
    b("        if RECORD:")
    for s in states:
        b(f"            tl.store(R_{s} + base, o_{s}, mask=mask)")
    for s in states:
        b(f"        s_{s} = o_{s}")
    for s in states:
        b(f"    tl.store(S1_{s} + offs, s_{s}, mask=mask)")
    kernel = (
        "\n\n@triton.jit\n"
        f"def hh_forward_kernel(I_ptr, Z_ptr, DT_ptr, {sig_states}, {sig_params}, steps, M,\n"
        "                      RESET: tl.constexpr, RECORD: tl.constexpr, EPS: tl.constexpr,\n"
        "                      LIBDEVICE: tl.constexpr, DT: tl.constexpr, BLOCK: tl.constexpr):\n"
        + "\n".join(body) + "\n")
    return _exprel_constants(_TRITON_HELPERS, cpp=False).replace("MODEL_NAME", model.name) + kernel
