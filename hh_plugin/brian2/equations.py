r"""Brian2 equations generated from a :class:`~hh_plugin.model.ModelDefinition`.

Nothing model-specific is written here: gates, rates, channels and parameters are all
read from ``spec.model``. For a model with gates :math:`x` and channels :math:`c` the
equations are

.. math::
    \begin{align*}
    \frac{dV}{dt} &= \frac{-\sum_c I_c + I}{C}, \qquad I_c = g_c\,(V - E_c), \\
    \frac{dx}{dt} &= \phi_x\big(\alpha_x(V)\,(1 - x) - \beta_x(V)\,x\big) \ \text{or}\ 
        \phi_x \frac{x_\infty(V) - x}{\tau_x(V)},
    \end{align*}

with Brian2 units: ``V`` in volt, each gate dimensionless, ``I`` in amp,
ionic currents ``I_<channel>`` in amp, rates ``alpha_<gate>``/``beta_<gate>`` in Hz.
The model's expressions are in plugin units (V in mV, rates in 1/ms, g in mS), so each is
printed with ``V`` written as ``(V/mV)`` and a parameter ``p`` of unit ``u`` as ``(p/u)``,
and multiplied by its unit (``/ms`` for rates, ``msiemens`` for conductances).

Scalar parameters are substituted as values with units through Brian2's
``Equations(text, name=value)`` mechanism (written as ``(value*unit)`` text, so that no
digits are lost); per-neuron arrays become ``name : <unit> (constant)`` parameters.
``exprel`` is printed as a guarded branch-free expression by default (the fastest in
compiled code, see :func:`equations`), or as ``hh_exprel`` (see
:mod:`hh_plugin.brian2.functions`) or Brian2's ``exprel`` on request. Fractions are
printed as floats (see :func:`_rationals_to_floats`).
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import sympy

from hh_plugin.model.expressions import (EXPREL_TAYLOR_COEFFICIENTS, EXPREL_TAYLOR_CUTOFF_FLOAT64,
                                         VOLTAGE_SYMBOL, exprel, parse, substitute_symbol_names)
from hh_plugin.model.spec import HHSpec

from . import functions

#: Brian2 unit name for each plugin unit of a model parameter.
UNIT_NAMES = {"mV": "mV", "mS": "msiemens", "uF": "ufarad", "uA": "uA", "ms": "ms",
              "1/ms": "(1/ms)", "1": "1"}
#: Brian2 dimension name (for parameter declarations) for each plugin unit.
DIMENSION_NAMES = {"mV": "volt", "mS": "siemens", "uF": "farad", "uA": "amp", "ms": "second",
                   "1/ms": "hertz", "1": "1"}

PARAMETER_CURRENT = "parameter"


def _scalar_text(value: float, unit: str) -> str:
    """Exact text of a scalar with its Brian2 unit, e.g. ``(0.03*msiemens)``."""
    if unit == "1":
        return f"({float(value)!r})"
    return f"({float(value)!r}*{UNIT_NAMES[unit]})"


#: How ``exprel(x)`` is written into the Brian2 equations (see :func:`equations`).
EXPREL_FORMS = ("guarded", "function", "brian2")
#: Below this :math:`|x|`, the guarded form uses the Taylor polynomial of exprel
#: (the same cutoff as the torch backend's float64 exprel).
GUARD_THRESHOLD = EXPREL_TAYLOR_CUTOFF_FLOAT64
#: Taylor terms kept by the guarded form (up to x^3: truncation x^4/120 < 1e-14 here).
_GUARD_TAYLOR = EXPREL_TAYLOR_COEFFICIENTS[:4]


class _guarded_exprel(sympy.Function):
    r"""Prints :math:`\operatorname{exprel}(x)` as a branch-free Brian2 expression.

    With :math:`g = [|x| < 10^{-3}]` (``int(abs(x) < 0.001)``):

    .. math::
        g\,(1 + x/2 + x^2/6 + x^3/24) + (1 - g)\,\frac{e^x - 1}{x + g}.

    The ``+ g`` keeps the unused quotient finite at :math:`x = 0`. Errors: Taylor
    truncation :math:`x^4/120 < 10^{-14}`; cancellation in :math:`e^x - 1` for
    :math:`|x| \ge 10^{-3}` below :math:`3\cdot10^{-13}` (float64) or :math:`10^{-4}`
    (float32), relative. It uses ``exp`` rather than ``expm1``, so that Brian2's
    loop-invariant optimisation and the C++ compiler share the exponential with the
    other rates (``exp(-0.1*(V/mV) - 4)`` and ``exp(-0.1*(V/mV))`` differ by a constant
    factor), and it has no branch.
    """

    nargs = 1

    def _sympystr(self, printer):
        x = f"({printer._print(self.args[0])})"
        g = f"int(abs({x}) < {GUARD_THRESHOLD!r})"
        taylor = repr(_GUARD_TAYLOR[-1])
        for c in reversed(_GUARD_TAYLOR[:-1]):
            taylor = f"({c!r} + {x}*{taylor})"
        return f"({g}*{taylor} + (1 - {g})*(exp({x}) - 1)/({x} + {g}))"


def _print(expr: sympy.Expr, units: Dict[str, str], exprel_form: str = "guarded") -> str:
    """Print a model expression (plugin units) with every symbol made dimensionless."""
    names = {VOLTAGE_SYMBOL: "(V/mV)"}
    for s in expr.free_symbols:
        unit = units.get(s.name)
        if unit is not None and unit != "1":
            names[s.name] = f"({s.name}/{UNIT_NAMES[unit]})"
    expr = substitute_symbol_names(expr, names)
    if exprel_form == "guarded":
        function = _guarded_exprel
    elif exprel_form == "function":
        function = functions.hh_exprel
    else:
        function = sympy.Function("exprel")
    expr = expr.replace(lambda e: type(e) is exprel, lambda e: function(*e.args))
    return sympy.sstr(_rationals_to_floats(expr))


def _rationals_to_floats(expr: sympy.Expr) -> sympy.Expr:
    """Write fractions such as ``65/18`` as the nearest float.

    Brian2's loop-invariant optimisation turns ``exp(-(V/mV)/18 - 65/18)`` into
    ``pow(exp(V/mV), 1/18)``-like code (one ``pow`` per rate, about 10% of the C++
    standalone step), while ``exp(-0.0555...*(V/mV) - 3.61...)`` stays one ``exp``.
    The float is the double nearest the fraction (17 significant digits), so values
    change by round-off only.
    """
    fractions = {q for q in expr.atoms(sympy.Rational) if not q.is_Integer}
    return expr.xreplace({q: sympy.Float(float(q), 17) for q in fractions})


def _check_current(current) -> str:
    if not isinstance(current, str):
        raise TypeError(f"current must be 'parameter' or a Brian2 expression string, "
                        f"got {type(current).__name__}")
    current = current.strip()
    if not current:
        raise ValueError("current expression is empty")
    return current


def _intermediate_name(gate: str, name: str) -> str:
    """Brian2 name of a gate's rate, steady state or time constant (``alpha_m``, ``W_inf``)."""
    return {"alpha": f"alpha_{gate}", "beta": f"beta_{gate}", "x_inf": f"{gate}_inf",
            "tau": f"tau_{gate}"}[name]


def variable_names(spec: HHSpec) -> Dict[str, str]:
    """Names of the generated subexpressions: ``{'alpha_m': 'rate', 'I_Na': 'current', ...}``."""
    model = spec.model
    kinds = {"alpha": "rate", "beta": "rate", "x_inf": "steady state", "tau": "time constant"}
    names = {}
    for gate, terms in model.gate_terms.items():
        for name, _ in terms.intermediates:
            names[_intermediate_name(gate, name)] = kinds[name]
    for ch in model.channels:
        names[f"I_{ch.name}"] = "current"
    return names


def _gate_lines(model, units, exprel_form: str):
    """Equation lines of every gate (see :mod:`hh_plugin.model.definition` for the kinds)."""
    lines = []
    intermediate_units = {"alpha": ("/ms", "Hz"), "beta": ("/ms", "Hz"), "x_inf": ("", "1"),
                          "tau": ("*ms", "second")}
    for gate, terms in model.gate_terms.items():
        for name, expr in terms.intermediates:
            scale, unit = intermediate_units[name]
            text = _print(expr, units, exprel_form)
            if terms.gate.is_instantaneous and name == "x_inf":
                continue  # the gate itself is this expression (below)
            lines.append(f"{_intermediate_name(gate, name)} = ({text}){scale} : {unit}")
        g = terms.gate
        if g.is_instantaneous:
            # held at its value at the start of the step, as in the reference models
            value = (f"alpha_{gate}/(alpha_{gate} + beta_{gate})" if g.alpha is not None
                     else _print(dict(terms.intermediates)["x_inf"], units, exprel_form))
            lines.append(f"{gate} = {value} : 1 (constant over dt)")
            continue
        if g.alpha is not None:
            derivative = f"alpha_{gate}*(1 - {gate}) - beta_{gate}*{gate}"
        else:
            derivative = f"({gate}_inf - {gate})/tau_{gate}"
        if g.rate_factor is not None:
            factor = _print(parse(g.rate_factor, model.parameter_names), units, exprel_form)
            derivative = f"({factor})*({derivative})"
        lines.append(f"d{gate}/dt = {derivative} : 1")
    return lines


def equations(spec: HHSpec = None, current: str = PARAMETER_CURRENT,
              exprel_form: str = "guarded"):
    r"""The Brian2 ``Equations`` of ``spec.model`` with the values of ``spec``.

    Args:
        spec: an :class:`~hh_plugin.model.HHSpec` (default: the reference model's defaults).
        current: ``'parameter'`` (default): ``I : amp``, a per-neuron parameter;
            otherwise a Brian2 expression in amp, e.g. ``'I_stim(t, i)'`` for a
            ``TimedArray`` or ``'I0 + I_syn'``, which defines ``I = <expr> : amp``.
        exprel_form: how the model's ``exprel(x)`` is written:
            ``'guarded'`` (default): a branch-free expression with ``exp`` and a Taylor
            polynomial for :math:`|x| < 10^{-3}` (:class:`_guarded_exprel`), the fastest
            in compiled code (C++ standalone: about 1.3x the step rate of Brian2's
            ``exprel``) and needing no function implementation on any target;
            ``'function'``: calls of ``hh_exprel`` (:mod:`hh_plugin.brian2.functions`);
            ``'brian2'``: Brian2's own ``exprel`` (slow on the numpy target).

    Returns:
        ``brian2.Equations`` with the state ``V`` (volt), one dimensionless variable per
        gate, ``I`` (amp), subexpressions ``alpha_x``, ``beta_x`` (Hz) (or ``x_inf``, ``tau_x``)
        and ``I_c`` (amp), and one ``name : <unit> (constant)`` parameter per per-neuron array
        (including ``V_reset`` when ``spec.V_reset`` is an array).
    """
    import brian2

    functions.ensure_registered()
    spec = HHSpec() if spec is None else spec
    if not isinstance(spec, HHSpec):
        raise TypeError(f"spec must be an HHSpec, got {type(spec).__name__}")
    current = _check_current(current)
    if exprel_form not in EXPREL_FORMS:
        raise ValueError(f"exprel_form must be one of {EXPREL_FORMS}, got {exprel_form!r}")
    model = spec.model
    units = model.units
    taken = set(model.state_names) | set(model.parameter_names) | {"I"}
    clash = taken & set(variable_names(spec))
    if clash:
        raise ValueError(f"model {model.name!r}: names {sorted(clash)} clash with the "
                         f"generated subexpressions of the Brian2 backend")
    if "I" in model.parameter_names or "I" in model.gate_names:
        raise ValueError(f"model {model.name!r}: 'I' is reserved for the input current")

    lines = []
    cap = model.capacitance
    currents = " + ".join(f"I_{ch.name}" for ch in model.channels)
    lines.append(f"dV/dt = (-({currents}) + I)/{cap} : volt")
    lines += _gate_lines(model, units, exprel_form)
    for ch, g in zip(model.channels, model.conductance_expressions.values()):
        lines.append(f"I_{ch.name} = ({_print(g, units, exprel_form)})*msiemens*"
                     f"(V - {ch.reversal}) : amp")
    if current == PARAMETER_CURRENT:
        lines.append("I : amp")
    else:
        lines.append(f"I = {current} : amp")

    replacements = {}
    for name, value in spec.parameters.items():
        if isinstance(value, np.ndarray):
            lines.append(f"{name} : {DIMENSION_NAMES[units[name]]} (constant)")
        else:
            replacements[name] = _scalar_text(value, units[name])
    if isinstance(spec.V_reset, np.ndarray):
        if "V_reset" in taken:
            raise ValueError(f"model {model.name!r}: 'V_reset' is reserved for the reset option")
        lines.append("V_reset : volt (constant)")
    # Brian2 refuses to substitute names that the equations do not use.
    text = "\n".join(lines)
    used = brian2.Equations(text).identifiers
    replacements = {k: v for k, v in replacements.items() if k in used}
    return brian2.Equations(text, **replacements)
