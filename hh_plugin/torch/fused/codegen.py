r"""Generate fused HH kernels (C++ and Triton) from a :class:`~hh_plugin.model.ModelDefinition`.

Nothing model-specific is written here: the rate functions, conductances, reversal
potentials, threshold and capacitance all come from the model definition, and the
partial derivatives the backward pass needs are taken symbolically with sympy. What is
written here is the *scheme* of :func:`hh_plugin.torch.functional.hh.hh_step`
(exponential Euler, Jacobi update, rising-edge spike, optional reset) and its adjoint.

The step is emitted as straight-line code (static single assignment) in a small
intermediate form (:class:`StepProgram`) and printed in one of two dialects, by
:mod:`.cpp_source` and :mod:`.triton_source`:

* ``'cpp'``: C++ for a ``template <typename T>`` kernel (literals as ``T(...)`` so a
  float kernel computes in float, as torch does);
* ``'triton'``: the body of a ``@triton.jit`` function.

Names inside the generated code: ``s_<state>`` old state, ``I_in`` input current,
``p_<param>`` parameters (the model's, then ``alpha``, ``width``, ``V_reset``, ``V_scale``),
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
from dataclasses import dataclass
from typing import Dict, List, Tuple

import sympy
from sympy.printing.lambdarepr import LambdaPrinter

from ...model.definition import ModelDefinition
from ...model.integrators import DEFAULT_METHOD, check_method
from ...model.expressions import (EXPREL_TAYLOR_COEFFICIENTS, EXPREL_TAYLOR_CUTOFF_FLOAT32,
                                   EXPREL_TAYLOR_CUTOFF_FLOAT64, VOLTAGE_SYMBOL, exprel)

#: Extra kernel parameters after the model's own (the surrogate, the reset potential and
#: the surrogate's scale, resolved by the caller: :func:`~hh_plugin.torch.functional.
#: surrogate.surrogate_scale`, so that its default :math:`|V_{th}|` passes its gradient on
#: to the threshold through autograd).
EXTRA_PARAMETERS = ("alpha", "width", "V_reset", "V_scale")
#: Integration methods (:mod:`hh_plugin.model.integrators`) each generated kernel implements.
FUSED_METHODS = {"fused_cpp": ("exponential_euler", "rk4"),
                 "triton": ("exponential_euler", "rk4")}
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
    _print_sinh = _print_Function

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
                     "log": "std::log", "sqrt": "std::sqrt", "tanh": "hh_tanh",
                     "cosh": "hh_cosh", "sinh": "hh_sinh", "pow": "std::pow",
                     "fabs": "std::fabs",
                     "sign": "hh_sign", "heaviside": "hh_heaviside", "relu": "hh_relu"}
        else:
            table = {"exprel": "_exprel", "exprel_d": "_exprel_d", "exp": "tl.exp",
                     "log": "tl.log", "sqrt": "tl.sqrt", "tanh": "_tanh", "cosh": "_cosh",
                     "sinh": "_sinh",
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
    """Parameter order of the kernels: the model's parameters, then ``alpha, width, V_reset,
    V_scale``."""
    clash = set(model.parameter_names) & set(EXTRA_PARAMETERS)
    if clash:
        raise ValueError(f"model {model.name!r}: parameter names {sorted(clash)} clash with "
                         f"the spike options")
    return tuple(model.parameter_names) + EXTRA_PARAMETERS


#: Short names of a gate's intermediates in the generated code (``f_<short>_<gate>``).
_SHORT = {"alpha": "a", "beta": "b", "x_inf": "xi", "tau": "tau"}


def spike_forward(d: Dialect, Vth: str) -> List[str]:
    """The rising-edge spike ``o_z`` from ``s_V`` and ``f_Vpre`` (the new potential before
    any reset) and the reset ``o_V`` (compile-time ``RESET``), shared by every method."""
    L = d.lit
    return [
        d.assign("f_isc", f"{L(1.0)}/p_V_scale"),
        d.assign("f_y1", f"(f_Vpre - {Vth})*f_isc"),
        d.assign("f_y0", f"(s_V - {Vth})*f_isc"),
        d.assign("f_H1", d.func("heaviside", "f_y1")),
        d.assign("f_H0", d.func("heaviside", "f_y0")),
        d.assign("o_z", f"f_H1*({L(1.0)} - f_H0)"),
        d.assign("o_V", d.static_select(
            "RESET == 0", "f_Vpre", d.static_select(
                "RESET == 1", f"f_Vpre - o_z*({Vth} - p_V_reset)",
                f"({L(1.0)} - o_z)*f_Vpre + o_z*p_V_reset"))),
    ]


def spike_adjoint(d: Dialect, Vth: str) -> List[str]:
    """Adjoint of :func:`spike_forward`: ``b_gVp``, the adjoint of ``f_Vpre``, and
    ``b_gy0`` (``s_V`` gains ``b_gy0*f_isc``), from ``gs_V`` and ``g_z``."""
    L = d.lit
    return [
        d.assign("b_gVpre", d.static_select("RESET == 2", f"gs_V*({L(1.0)} - o_z)", "gs_V")),
        d.assign("b_gz", d.static_select("RESET == 1", f"g_z - gs_V*({Vth} - p_V_reset)",
                                         "g_z")),
        d.assign("b_gy1", f"b_gz*({L(1.0)} - f_H0)*p_alpha*"
                          + d.func("relu", f"p_width - {d.func('fabs', 'f_y1')}")),
        d.assign("b_gy0", "(-(b_gz*f_H1))*p_alpha*"
                          + d.func("relu", f"p_width - {d.func('fabs', 'f_y0')}")),
        d.assign("b_gVp", "b_gVpre + b_gy1*f_isc"),
    ]


def spike_parameter_terms(d: Dialect, Vth: str, threshold: str,
                          pterms: Dict[str, List[str]]) -> None:
    """Add the spike's and reset's parameter-gradient terms to ``pterms``."""
    zero = d.lit(0.0)
    # x = (V - V_th)/V_scale: dx/dV_th = -1/V_scale, dx/dV_scale = -(V - V_th)/V_scale^2
    pterms[threshold].append("(-(b_gy1 + b_gy0)*f_isc)")
    pterms["V_scale"].append(
        f"(-(b_gy1*(f_Vpre - {Vth}) + b_gy0*(s_V - {Vth})))*(f_isc*f_isc)")
    pterms[threshold].append(d.static_select("RESET == 1", "(-(gs_V*o_z))", zero))
    pterms["V_reset"].append(d.static_select("RESET == 0", zero, "gs_V*o_z"))


def step_program(model: ModelDefinition, dialect: Dialect,
                 synaptic: bool = False, method: str = DEFAULT_METHOD) -> StepProgram:
    r"""Generate the forward step and its adjoint for ``model`` in ``dialect``.

    ``method``: the integration method (:mod:`hh_plugin.model.integrators`); ``'rk4'`` is
    generated by :func:`.rk4_program.rk4_program` (not with ``synaptic``).

    ``synaptic=True``: the step also reads a synaptic conductance ``G_syn`` and
    :math:`\sum_s g_s E_s` ``J_syn`` (the ``conductance``, ``conductance_current`` of
    :func:`~hh_plugin.torch.functional.hh.hh_step`, added in the same order); that
    program is forward only (no adjoint)."""
    if check_method(method) != DEFAULT_METHOD:
        if synaptic:
            raise ValueError(f"the synaptic step is generated for exponential Euler only, "
                             f"not {method!r}")
        from .rk4_program import rk4_program
        return rk4_program(model, dialect)
    d = dialect
    L = d.lit
    states = model.state_names
    gates = model.gate_names
    instantaneous = model.instantaneous_gate_names
    params = kernel_parameters(model)
    names = {VOLTAGE_SYMBOL: "s_V", **{g: f"s_{g}" for g in gates},
             **{y: f"f_y_{y}" for y in instantaneous},
             **{p: f"p_{p}" for p in params}}
    terms = model.gate_terms
    for gate, t in terms.items():  # intermediates' symbols, for derivatives that reuse them
        for name, _ in t.intermediates:
            names[t.intermediate_symbol(name).name] = f"f_{_SHORT[name]}_{gate}"
    printer = _Printer(d, names)
    pr = printer.doprint
    V = sympy.Symbol(VOLTAGE_SYMBOL, real=True)
    C = f"p_{model.capacitance}"
    Vth = f"p_{model.threshold}"
    param_symbols = {p: sympy.Symbol(p, real=True) for p in model.parameter_names}
    intermediates = {gate: [(f"f_{_SHORT[name]}_{gate}", _kernel_expr(expr))
                            for name, expr in t.intermediates] for gate, t in terms.items()}
    factors = {gate: _kernel_expr(t.factor) for gate, t in terms.items()
               if t.factor is not None}

    fwd: List[str] = []
    a = fwd.append
    # -- instantaneous gates at the old V, frozen during the step
    for y in instantaneous:
        for name, expr in intermediates[y]:
            a(d.assign(name, pr(expr)))
        if terms[y].gate.alpha is not None:
            a(d.assign(f"f_y_{y}", f"f_a_{y}/(f_a_{y} + f_b_{y})"))
        else:
            a(d.assign(f"f_y_{y}", f"f_xi_{y}"))
    conductances = {c.name: _kernel_expr(e) for c, e in
                    zip(model.channels, model.conductance_expressions.values())}
    channels = model.channels
    # -- membrane: conductances frozen at the old gates, exponential Euler
    for ch in channels:
        a(d.assign(f"f_g_{ch.name}", pr(conductances[ch.name])))
    G_sum = " + ".join(f"f_g_{ch.name}" for ch in channels)
    I_sum = " + ".join(f"f_g_{ch.name}*(s_V - p_{ch.reversal})" for ch in channels)
    if synaptic:
        G_sum, I_sum = f"{G_sum} + G_syn", f"{I_sum} + (G_syn*s_V - J_syn)"
    a(d.assign("f_G", G_sum))
    a(d.assign("f_Iion", I_sum))
    a(d.assign("f_iC", f"{L(1.0)}/{C}"))  # one division; the rest multiply by it
    a(d.assign("f_drive", "(I_in - f_Iion)*f_iC"))
    a(d.assign("f_uV", "(-f_G)*(dt*f_iC)"))
    a(d.assign("f_eV", d.func("exprel", "f_uV")))
    a(d.assign("f_Vpre", "s_V + dt*f_eV*f_drive"))
    # -- dynamic gates: rates at the old V; f_s = decay rate, f_r = derivative
    for g in gates:
        for name, expr in intermediates[g]:
            a(d.assign(name, pr(expr)))
        if terms[g].gate.alpha is not None:
            s0, r0 = f"f_a_{g} + f_b_{g}", f"f_a_{g}*({L(1.0)} - s_{g}) - f_b_{g}*s_{g}"
        else:
            s0, r0 = f"{L(1.0)}/f_tau_{g}", f"(f_xi_{g} - s_{g})/f_tau_{g}"
        if g in factors:
            a(d.assign(f"f_phi_{g}", pr(factors[g])))
            a(d.assign(f"f_s0_{g}", s0))
            a(d.assign(f"f_r0_{g}", r0))
            s0, r0 = f"f_phi_{g}*f_s0_{g}", f"f_phi_{g}*f_r0_{g}"
        a(d.assign(f"f_s_{g}", s0))
        a(d.assign(f"f_w_{g}", f"(-f_s_{g})*dt"))
        a(d.assign(f"f_e_{g}", d.func("exprel", f"f_w_{g}")))
        a(d.assign(f"f_r_{g}", r0))
        a(d.assign(f"o_{g}", f"s_{g} + dt*f_e_{g}*f_r_{g}"))
    # -- rising-edge spike and reset
    fwd += spike_forward(d, Vth)

    # ------------------------------------------------------------------ adjoint
    bwd: List[str] = []
    b = bwd.append
    zero = L(0.0)
    bwd += spike_adjoint(d, Vth)
    b(d.assign("b_gdrive", "b_gVp*(dt*f_eV)"))
    b(d.assign("b_geV", "b_gVp*dt*f_drive"))
    b(d.assign("b_guV", "b_geV*" + d.func("exprel_d", "f_uV")))
    b(d.assign("b_gG", "(-b_guV)*(dt*f_iC)"))
    b(d.assign("b_gIion", "(-b_gdrive)*f_iC"))
    b(d.assign("g_I", "b_gdrive*f_iC"))
    for ch in channels:
        b(d.assign(f"b_gg_{ch.name}", f"b_gIion*(s_V - p_{ch.reversal}) + b_gG"))

    def partial_terms(wrt: sympy.Symbol) -> List[str]:
        terms_ = []
        for ch in channels:
            deriv = sympy.diff(conductances[ch.name], wrt)
            if deriv != 0:
                terms_.append(f"b_gg_{ch.name}*({pr(deriv)})")
        return terms_

    # adjoints of every gate's intermediates: b_g<short>_<gate>
    for y in instantaneous:
        b(d.assign(f"b_gy_{y}", " + ".join(partial_terms(sympy.Symbol(y, real=True)))
                   or zero))
        if terms[y].gate.alpha is not None:
            b(d.assign(f"b_gq_{y}", f"b_gy_{y}/((f_a_{y} + f_b_{y})*(f_a_{y} + f_b_{y}))"))
            b(d.assign(f"b_ga_{y}", f"b_gq_{y}*f_b_{y}"))
            b(d.assign(f"b_gb_{y}", f"(-(b_gq_{y}*f_a_{y}))"))
        else:
            b(d.assign(f"b_gxi_{y}", f"b_gy_{y}"))
    for g in gates:
        b(d.assign(f"b_ge_{g}", f"gs_{g}*dt*f_r_{g}"))
        b(d.assign(f"b_gr_{g}", f"gs_{g}*(dt*f_e_{g})"))
        b(d.assign(f"b_gw_{g}", f"b_ge_{g}*" + d.func("exprel_d", f"f_w_{g}")))
        b(d.assign(f"b_gs_{g}", f"(-b_gw_{g})*dt"))
        gr, gs = f"b_gr_{g}", f"b_gs_{g}"
        if g in factors:
            b(d.assign(f"b_gphi_{g}", f"b_gr_{g}*f_r0_{g} + b_gs_{g}*f_s0_{g}"))
            b(d.assign(f"b_gr0_{g}", f"b_gr_{g}*f_phi_{g}"))
            b(d.assign(f"b_gs0_{g}", f"b_gs_{g}*f_phi_{g}"))
            gr, gs = f"b_gr0_{g}", f"b_gs0_{g}"
        if terms[g].gate.alpha is not None:
            b(d.assign(f"b_ga_{g}", f"{gr}*({L(1.0)} - s_{g}) + {gs}"))
            b(d.assign(f"b_gb_{g}", f"(-({gr}*s_{g})) + {gs}"))
        else:
            b(d.assign(f"b_gxi_{g}", f"{gr}/f_tau_{g}"))
            b(d.assign(f"b_gtau_{g}", f"(-({gr}*(f_xi_{g} - s_{g}) + {gs}))"
                                      f"/(f_tau_{g}*f_tau_{g})"))

    def reuse_value(expr: sympy.Expr, deriv: sympy.Expr, value_name: str) -> sympy.Expr:
        # reuse the forward's value where the derivative contains it
        # (d(1/f)/dV = -f'/f^2 -> -f' r^2): fewer divisions in the adjoint
        if expr.is_Atom:
            return deriv
        value = sympy.Symbol(value_name, real=True)
        names[value.name] = value.name
        coeff, core = expr.as_coeff_Mul()
        return deriv.subs(core, value / coeff) if coeff != 1 else deriv.subs(expr, value)

    # old V: identity, spike factor, ionic current, V-dependent conductances, intermediates
    v_terms = ["b_gVp", "b_gy0*f_isc", "b_gIion*f_G"] + partial_terms(V)
    pterms: Dict[str, List[str]] = {p: [] for p in params}
    for gate in list(instantaneous) + list(gates):
        for name, expr in intermediates[gate]:
            adjoint = f"b_g{name[2:]}"  # f_a_m -> b_ga_m
            deriv = sympy.diff(expr, V)
            if deriv != 0:
                v_terms.append(f"{adjoint}*({pr(reuse_value(expr, deriv, name))})")
            for p, sym in param_symbols.items():
                pd = sympy.diff(expr, sym)
                if pd != 0:
                    pterms[p].append(f"{adjoint}*({pr(pd)})")
        if gate in factors:
            for p, sym in param_symbols.items():
                pd = sympy.diff(factors[gate], sym)
                if pd != 0:
                    pterms[p].append(f"b_gphi_{gate}*({pr(pd)})")
    b(d.assign("go_V", " + ".join(v_terms)))
    for g in gates:
        terms_ = [f"gs_{g}", f"(-(b_gr_{g}*f_s_{g}))"] + partial_terms(sympy.Symbol(g, real=True))
        b(d.assign(f"go_{g}", " + ".join(terms_)))

    # parameters
    for p in model.parameter_names:
        pterms[p] += partial_terms(param_symbols[p])
    for ch in channels:
        pterms[ch.reversal].append(f"(-(b_gIion*f_g_{ch.name}))")
    pterms[model.capacitance].append("b_guV*f_G*dt*(f_iC*f_iC)")
    pterms[model.capacitance].append("(-(b_gdrive*f_drive*f_iC))")
    spike_parameter_terms(d, Vth, model.threshold, pterms)
    pgrads = {p: " + ".join(t) for p, t in pterms.items() if t}
    if synaptic:
        return StepProgram(tuple(states), params, tuple(fwd), (), {})
    return StepProgram(tuple(states), params, tuple(fwd), tuple(bwd), pgrads)


def source_hash(text: str) -> str:
    """Short hash of generated source (names cached builds)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def exprel_constants(template: str, cpp: bool = True) -> str:
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
