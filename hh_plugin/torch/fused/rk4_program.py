r"""The fused kernels' RK4 step and its adjoint, generated from the model definition and
the RK4 tableau (:data:`hh_plugin.model.integrators.RK4_TABLEAU`).

With :math:`y = (V, x_1, \dots)`, the vector field :math:`f(y; p, I)` of the model
(:func:`vector_field`: instantaneous gates substituted, so each stage re-evaluates them)
and the stages of the tableau

.. math::
    Y_i = y + \sum_{j<i} a_{ij} k_j, \qquad k_i = \Delta t\, f(Y_i), \qquad
    y' = y + \sum_i b_i k_i,

the forward statements compute :math:`Y_i` (``f_Y<i>_<state>``), :math:`k_i`
(``f_k<i>_<state>``) and the pre-reset potential ``f_Vpre``, then the spike and reset of
:func:`.codegen.spike_forward`. The adjoint runs the stages backwards: with
:math:`\bar y'` the adjoint of the new state,

.. math::
    \bar k_i = b_i \bar y' + \sum_{l > i} a_{li} \bar Y_l, \qquad
    \bar Y_i = \Delta t\, J_f(Y_i)^\top \bar k_i, \qquad
    \bar y = \bar y' + \sum_i \bar Y_i,

and the input current and parameters gather :math:`\Delta t\,(\partial f/\partial q)(Y_i)^\top
\bar k_i` over the stages. The vector-Jacobian products are taken symbolically (sympy) and
shared subexpressions computed once per stage (``sympy.cse``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, List, Tuple

import sympy

from ...model.definition import ModelDefinition, steady_state
from ...model.expressions import VOLTAGE_SYMBOL
from ...model.integrators import RK4_DENOMINATOR, RK4_TABLEAU
from .codegen import (Dialect, StepProgram, _kernel_expr, _Printer, kernel_parameters,
                      spike_adjoint, spike_forward, spike_parameter_terms)

_INPUT = "I_in"


def vector_field(model: ModelDefinition) -> Tuple[Tuple[sympy.Symbol, ...], List[sympy.Expr]]:
    r"""``(state symbols, [f_V, f_x1, ...])``: :math:`\dot V` (mV/ms) and each dynamic gate's
    derivative (1/ms) as sympy expressions of the state, the parameters and ``I_in`` (uA),
    instantaneous gates and intermediates substituted, ``exprel`` in the kernels' form."""
    V = sympy.Symbol(VOLTAGE_SYMBOL, real=True)
    I = sympy.Symbol(_INPUT, real=True)
    gates = [sympy.Symbol(g, real=True) for g in model.gate_names]
    params = {p: sympy.Symbol(p, real=True) for p in model.parameter_names}
    terms = model.gate_terms
    substitutions = {}
    for name, t in terms.items():
        inter = dict(t.intermediates)
        substitutions.update({t.intermediate_symbol(k): e for k, e in t.intermediates})
        if t.gate.is_instantaneous:
            substitutions[sympy.Symbol(name, real=True)] = steady_state(inter)
    ionic = 0
    for channel, g in zip(model.channels, model.conductance_expressions.values()):
        ionic = ionic + g.subs(substitutions) * (V - params[channel.reversal])
    exprs = [(I - ionic) / params[model.capacitance]]
    for name in model.gate_names:
        exprs.append(terms[name].derivative.subs(substitutions))
    return (V, *gates), [_kernel_expr(e) for e in exprs]


@lru_cache(maxsize=None)
def _symbolic(model: ModelDefinition):
    """The vector field and its vector-Jacobian products, with common subexpressions."""
    states, f = vector_field(model)
    lam = [sympy.Symbol(f"lam{k}", real=True) for k in range(len(states))]
    wrt = list(states) + [sympy.Symbol(p, real=True) for p in model.parameter_names] \
        + [sympy.Symbol(_INPUT, real=True)]
    vjp = [sum((l * sympy.diff(fc, w) for l, fc in zip(lam, f)), sympy.S.Zero) for w in wrt]
    f_cse = _powers_named(*sympy.cse(f, symbols=sympy.numbered_symbols("c"),
                                     optimizations=None), "cq")
    vjp_cse = _powers_named(*sympy.cse(vjp, symbols=sympy.numbered_symbols("d"),
                                       optimizations=None), "dq")
    return states, f_cse, lam, wrt, vjp_cse


def _powers_named(defs, exprs, prefix: str):
    """``(defs, exprs)`` with the base of every integer power that is not a symbol named
    (the kernels print :math:`b^3` as ``b*b*b``, which would evaluate ``b`` three times)."""
    names: Dict[sympy.Expr, sympy.Symbol] = {}
    out = []

    def visit(e):
        if e.is_Atom:
            return e
        args = tuple(visit(a) for a in e.args)
        if args != e.args:
            e = e.func(*args)
        if e.is_Pow and e.exp.is_Integer and abs(int(e.exp)) > 1 and not e.base.is_Atom:
            if e.base not in names:
                names[e.base] = sympy.Symbol(f"{prefix}{len(names)}", real=True)
                out.append((names[e.base], e.base))
            return sympy.Pow(names[e.base], e.exp)
        return e

    for sym, expr in defs:
        expr = visit(expr)
        out.append((sym, expr))
    return out, [visit(e) for e in exprs]


def rk4_program(model: ModelDefinition, dialect: Dialect) -> StepProgram:
    """Forward and adjoint statements of one RK4 step (see the module docstring) in
    ``dialect``, with the names of :func:`.codegen.step_program`."""
    d = dialect
    L = d.lit
    params = kernel_parameters(model)
    states, (f_defs, f_exprs), lam, wrt, (v_defs, v_exprs) = _symbolic(model)
    names = [s.name for s in states]
    stages, weights = RK4_TABLEAU
    Vth = f"p_{model.threshold}"

    def printer(i: int) -> _Printer:
        table = {s: f"f_Y{i}_{s}" for s in names}
        table.update({p: f"p_{p}" for p in params})
        table[_INPUT] = _INPUT
        table.update({sym.name: f"f_{sym.name}_{i}" for sym, _ in f_defs})
        table.update({sym.name: f"b_{sym.name}_{i}" for sym, _ in v_defs})
        table.update({lm.name: f"b_lam{i}_{s}" for lm, s in zip(lam, names)})
        return _Printer(d, table)

    fwd: List[str] = []
    for i, row in enumerate(stages, start=1):
        for s in names:
            shift = "".join(f" + f_k{j}_{s}" + ("" if a == 1 else f"*{L(float(a))}")
                            for j, a in enumerate(row, start=1) if a != 0)
            fwd.append(d.assign(f"f_Y{i}_{s}", f"s_{s}{shift}"))
        pr = printer(i).doprint
        fwd += [d.assign(f"f_{sym.name}_{i}", pr(e)) for sym, e in f_defs]
        fwd += [d.assign(f"f_k{i}_{s}", f"dt*({pr(e)})") for s, e in zip(names, f_exprs)]

    def combined(s: str) -> str:
        total = " + ".join(f"f_k{i}_{s}" if b == 1 else f"{L(float(b))}*f_k{i}_{s}"
                           for i, b in enumerate(weights, start=1))
        return f"s_{s} + ({total})/{L(float(RK4_DENOMINATOR))}"

    fwd.append(d.assign("f_Vpre", combined(names[0])))
    fwd += [d.assign(f"o_{s}", combined(s)) for s in names[1:]]
    fwd += spike_forward(d, Vth)

    bwd: List[str] = list(spike_adjoint(d, Vth))
    new_adjoint = {names[0]: "b_gVp", **{s: f"gs_{s}" for s in names[1:]}}
    pterms: Dict[str, List[str]] = {p: [] for p in params}
    input_terms: List[str] = []
    for i in range(len(stages), 0, -1):
        for s in names:
            parts = [f"{new_adjoint[s]}*{L(weights[i - 1] / RK4_DENOMINATOR)}"]
            parts += [f"b_gY{l_}_{s}" + ("" if stages[l_ - 1][i - 1] == 1
                                         else f"*{L(float(stages[l_ - 1][i - 1]))}")
                      for l_ in range(i + 1, len(stages) + 1) if stages[l_ - 1][i - 1] != 0]
            bwd.append(d.assign(f"b_lam{i}_{s}", f"dt*({' + '.join(parts)})"))
        pr = printer(i).doprint
        bwd += [d.assign(f"b_{sym.name}_{i}", pr(e)) for sym, e in v_defs]
        for w, e in zip(wrt, v_exprs):
            if e == 0:
                continue
            if w.name in names:
                bwd.append(d.assign(f"b_gY{i}_{w.name}", pr(e)))
            elif w.name == _INPUT:
                bwd.append(d.assign(f"b_gI{i}", pr(e)))
                input_terms.append(f"b_gI{i}")
            else:
                bwd.append(d.assign(f"b_gp{i}_{w.name}", pr(e)))
                pterms[w.name].append(f"b_gp{i}_{w.name}")
        for s in names:  # a state the field does not depend on gets no stage adjoint
            if all(str(w) != s or e == 0 for w, e in zip(wrt, v_exprs)):
                bwd.append(d.assign(f"b_gY{i}_{s}", L(0.0)))
    stage_sums = {s: " + ".join(f"b_gY{i}_{s}" for i in range(1, len(stages) + 1))
                  for s in names}
    bwd.append(d.assign("go_V", f"b_gVp + b_gy0*f_isc + {stage_sums[names[0]]}"))
    bwd += [d.assign(f"go_{s}", f"gs_{s} + {stage_sums[s]}") for s in names[1:]]
    bwd.append(d.assign("g_I", " + ".join(input_terms) or L(0.0)))
    spike_parameter_terms(d, Vth, model.threshold, pterms)
    pgrads = {p: " + ".join(t) for p, t in pterms.items() if t}
    return StepProgram(tuple(names), params, tuple(fwd), tuple(bwd), pgrads)
