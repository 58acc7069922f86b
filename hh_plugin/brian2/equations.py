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

with Brian2 units: ``V`` in volt, each gate dimensionless, ``I`` and the ionic currents
``I_<channel>`` in amp, rates ``alpha_<gate>``/``beta_<gate>`` in Hz, time constants
``tau_<gate>`` in second, steady states ``<gate>_inf``. An instantaneous gate is
``x = ... : 1 (constant over dt)`` (evaluated at the start of the step, as the reference
models do) when ``spec.method`` is ``'exponential_euler'``, and a plain subexpression
``x = ... : 1`` with ``'rk4'``, so that each Runge-Kutta stage evaluates it afresh.

**Parameters are variables of the group**, by name: ``gNa : siemens (constant, shared)``
for a scalar, ``gNa : siemens (constant)`` for a per-neuron array; so they can be set
between runs (``group.gNa = 100*msiemens``) and through standalone ``run_args``.
:func:`~hh_plugin.brian2.neuron_group` sets their values.

**Expressions read as the definition writes them.** The definition's text (plugin units:
V in mV, rates in 1/ms) is printed term by term: a part whose dimensions are consistent
in Brian2's units is printed as it stands (``gNa*m**3*h``, ``(V - V3)/(2.0*V4)``); a
part with numbers that carry the plugin's units is printed with each symbol divided by
its unit (``(V/mV + 40.0)/10.0``) and the result multiplied by its unit (``/ms`` for a
rate). ``exprel`` becomes ``hh_exprel`` (:mod:`hh_plugin.brian2.functions`; Brian2's own
``exprel`` with ``exprel_form='brian2'``). Whole numbers are written as floats
(``65.0``) except in exponents: Brian2 turns a fraction such as ``65/18`` in an
exponential into a ``pow`` call per rate (about 10% of the C++ step), a float stays one
``exp``. The reference HH model reads

.. code-block:: text

    dV/dt = (-(I_Na + I_K + I_L) + I)/C : volt
    alpha_m = 1.0/hh_exprel(-(V/mV + 40.0)/10.0)/ms : Hz
    beta_m = 4.0*exp(-(V/mV + 65.0)/18.0)/ms : Hz
    m_inf = alpha_m/(alpha_m + beta_m) : 1
    dm/dt = alpha_m*(1 - m) - beta_m*m : 1
    ...
    I_Na = gNa*m**3*h*(V - ENa) : amp
    ...
    gNa : siemens (constant, shared)
"""

from __future__ import annotations

import ast
from typing import Dict, Optional, Tuple

import numpy as np

from hh_plugin.model.expressions import VOLTAGE_SYMBOL
from hh_plugin.model.integrators import DEFAULT_METHOD
from hh_plugin.model.spec import HHSpec

from . import _compat
from .functions import FUNCTION_NAME

#: Brian2 unit name for each plugin unit of a model parameter.
UNIT_NAMES = {"mV": "mV", "mS": "msiemens", "uF": "ufarad", "uA": "uA", "ms": "ms",
              "1/ms": "(1/ms)", "1": "1"}
#: Brian2 dimension name (for parameter declarations) for each plugin unit.
DIMENSION_NAMES = {"mV": "volt", "mS": "siemens", "uF": "farad", "uA": "amp", "ms": "second",
                   "1/ms": "hertz", "1": "1"}

PARAMETER_CURRENT = "parameter"
#: How the model's ``exprel`` is written: the plugin's function, or Brian2's ``exprel``.
EXPREL_FORMS = ("function", "brian2")


def _scalar_text(value: float, unit: str) -> str:
    """Exact text of a scalar with its Brian2 unit, e.g. ``(0.03*msiemens)``."""
    if unit == "1":
        return f"({float(value)!r})"
    return f"({float(value)!r}*{UNIT_NAMES[unit]})"


# ------------------------------------------------------------------ expression printer
# Dimensions as exponents of (mV, ms, uA): the plugin's units are coherent in these
# (mS = uA/mV, uF = uA*ms/mV), so a part of an expression whose dimensions agree in
# Brian2's units has the same value in the plugin's units, scaled by its unit.
_DIMENSIONS = {"mV": (1, 0, 0), "ms": (0, 1, 0), "uA": (0, 0, 1), "mS": (-1, 0, 1),
               "uF": (-1, 1, 1), "1/ms": (0, -1, 0), "1": (0, 0, 0)}
_DIMENSIONLESS = (0, 0, 0)
#: How a dimensionless number in plugin units is made from a Brian2 quantity of each dimension.
_TO_NUMBER = {(1, 0, 0): "/mV", (0, 1, 0): "/ms", (0, 0, 1): "/uA", (-1, 0, 1): "/msiemens",
              (-1, 1, 1): "/ufarad", (0, -1, 0): "*ms"}
_ATOM, _POWER, _UNARY, _PRODUCT, _SUM = 5, 4, 3, 2, 1
_OPERATORS = {ast.Add: (" + ", _SUM), ast.Sub: (" - ", _SUM), ast.Mult: ("*", _PRODUCT),
              ast.Div: ("/", _PRODUCT), ast.Pow: ("**", _POWER)}


def _paren(text: str, precedence: int, needed: int) -> str:
    return f"({text})" if precedence < needed else text


def _number(value, exponent: bool) -> str:
    if isinstance(value, int) and exponent:
        return repr(value)
    return repr(float(value))


class _Printer:
    """Prints one model expression (definition text, plugin units) for Brian2.

    ``native(node)``: ``(text, precedence, dimension)`` when the part's dimensions agree
    in Brian2's units (its numbers then multiply or divide only), else ``None``.
    ``number(node)``: ``(text, precedence)`` of a dimensionless Brian2 expression whose
    value is the part's value in plugin units.
    """

    def __init__(self, units: Dict[str, str], functions: Dict[str, str]):
        self.dims = {VOLTAGE_SYMBOL: _DIMENSIONS["mV"]}
        self.dims.update({name: _DIMENSIONS[u] for name, u in units.items()})
        self.functions = functions

    def native(self, node, exponent=False) -> Optional[Tuple[str, int, tuple]]:
        if isinstance(node, ast.Constant):
            return _number(node.value, exponent), _ATOM, _DIMENSIONLESS
        if isinstance(node, ast.Name):
            return node.id, _ATOM, self.dims.get(node.id, _DIMENSIONLESS)
        if isinstance(node, ast.UnaryOp):
            inner = self.native(node.operand, exponent)
            if inner is None:
                return None
            text, prec, dim = inner
            sign = "-" if isinstance(node.op, ast.USub) else "+"
            return sign + _paren(text, prec, _UNARY), _UNARY, dim
        if isinstance(node, ast.Call):
            text, _ = self.number(node.args[0])
            name = self.functions.get(node.func.id, node.func.id)
            if name == FUNCTION_NAME:  # the exponential goes in as an argument (functions.py)
                return f"{name}({text}, exp({text}))", _ATOM, _DIMENSIONLESS
            return f"{name}({text})", _ATOM, _DIMENSIONLESS
        if not isinstance(node, ast.BinOp):
            raise ValueError(f"cannot print {ast.dump(node)}")  # the model parser refuses these
        symbol, prec = _OPERATORS[type(node.op)]
        left = self.native(node.left, exponent)
        if isinstance(node.op, ast.Pow):
            right = self.native(node.right, True)
            if left is None or right is None or right[2] != _DIMENSIONLESS:
                return None
            if left[2] != _DIMENSIONLESS:
                if not (isinstance(node.right, ast.Constant) and
                        float(node.right.value).is_integer()):
                    return None
                dim = tuple(int(node.right.value) * d for d in left[2])
            else:
                dim = _DIMENSIONLESS
            return (f"{_paren(left[0], left[1], prec + 1)}{symbol}"
                    f"{_paren(right[0], right[1], prec)}", prec, dim)
        right = self.native(node.right, exponent)
        if left is None or right is None:
            return None
        if isinstance(node.op, (ast.Add, ast.Sub)):
            if left[2] != right[2]:
                return None
            dim = left[2]
        elif isinstance(node.op, ast.Mult):
            dim = tuple(a + b for a, b in zip(left[2], right[2]))
        else:
            dim = tuple(a - b for a, b in zip(left[2], right[2]))
        return (f"{_paren(left[0], left[1], prec)}{symbol}"
                f"{_paren(right[0], right[1], prec + 1)}", prec, dim)

    def number(self, node, exponent=False) -> Tuple[str, int]:
        native = self.native(node, exponent)
        if native is not None:
            text, prec, dim = native
            if dim == _DIMENSIONLESS:
                return text, prec
            if dim in _TO_NUMBER:
                return _paren(text, prec, _PRODUCT) + _TO_NUMBER[dim], _PRODUCT
        if isinstance(node, ast.Name):  # a lone symbol of a unit _TO_NUMBER lacks
            raise ValueError(f"cannot print symbol {node.id!r}")
        if isinstance(node, ast.UnaryOp):
            text, prec = self.number(node.operand, exponent)
            sign = "-" if isinstance(node.op, ast.USub) else "+"
            return sign + _paren(text, prec, _UNARY), _UNARY
        if isinstance(node, ast.Call):
            return self.native(node)[:2]
        symbol, prec = _OPERATORS[type(node.op)]
        pow_ = isinstance(node.op, ast.Pow)
        left = self.number(node.left, exponent)
        right = self.number(node.right, exponent or pow_)
        left_needed, right_needed = (prec + 1, prec) if pow_ else (prec, prec + 1)
        return (f"{_paren(left[0], left[1], left_needed)}{symbol}"
                f"{_paren(right[0], right[1], right_needed)}", prec)

    def quantity(self, text: str, unit: str) -> Tuple[str, int]:
        """``(text, precedence)`` in Brian2 of a definition expression whose value is in
        plugin ``unit``: as it stands when its dimensions agree, else converted."""
        tree = ast.parse(text.strip(), mode="eval").body
        native = self.native(tree)
        if native is not None and native[2] == _DIMENSIONS[unit]:
            return native[:2]
        number, prec = self.number(tree)
        if unit == "1":
            return number, prec
        scale = "/ms" if unit == "1/ms" else f"*{UNIT_NAMES[unit]}"
        return f"{_paren(number, prec, _PRODUCT)}{scale}", _PRODUCT


# ------------------------------------------------------------------------- equations
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
    """Names of the generated subexpressions: ``{'alpha_m': 'rate', 'm_inf': 'steady
    state', 'I_Na': 'current', ...}``."""
    model = spec.model
    kinds = {"alpha": "rate", "beta": "rate", "x_inf": "steady state", "tau": "time constant"}
    names = {}
    for gate, terms in model.gate_terms.items():
        for name, _ in terms.intermediates:
            if not (name == "x_inf" and terms.gate.is_instantaneous):
                names[_intermediate_name(gate, name)] = kinds[name]
        if terms.gate.alpha is not None and not terms.gate.is_instantaneous:
            names[f"{gate}_inf"] = "steady state"
    for ch in model.channels:
        names[f"I_{ch.name}"] = "current"
    return names


def _gate_lines(model, printer: _Printer, frozen: bool = True):
    """Equation lines of every gate (see :mod:`hh_plugin.model.definition` for the kinds);
    with ``frozen`` an instantaneous gate is ``(constant over dt)``."""
    lines = []
    units = {"alpha": "1/ms", "beta": "1/ms", "x_inf": "1", "tau": "ms"}
    declared = {"alpha": "Hz", "beta": "Hz", "x_inf": "1", "tau": "second"}
    for g in model.gates:
        x = g.name
        texts = {"alpha": g.alpha, "beta": g.beta, "x_inf": g.x_inf, "tau": g.tau}
        if g.is_instantaneous:
            # held at its value at the start of the step, as in the reference models
            if g.alpha is not None:
                for name in ("alpha", "beta"):
                    lines.append(f"{name}_{x} = {printer.quantity(texts[name], units[name])[0]}"
                                 f" : {declared[name]}")
                value = f"alpha_{x}/(alpha_{x} + beta_{x})"
            else:
                value = printer.quantity(g.x_inf, "1")[0]
            lines.append(f"{x} = {value} : 1" + (" (constant over dt)" if frozen else ""))
            continue
        if g.alpha is not None:
            for name in ("alpha", "beta"):
                lines.append(f"{name}_{x} = {printer.quantity(texts[name], units[name])[0]} : "
                             f"{declared[name]}")
            lines.append(f"{x}_inf = alpha_{x}/(alpha_{x} + beta_{x}) : 1")
            derivative = f"alpha_{x}*(1 - {x}) - beta_{x}*{x}"
        else:
            for name in ("x_inf", "tau"):
                lines.append(f"{_intermediate_name(x, name)} = "
                             f"{printer.quantity(texts[name], units[name])[0]} : {declared[name]}")
            derivative = f"({x}_inf - {x})/tau_{x}"
        if g.rate_factor is not None:
            factor, prec = printer.quantity(g.rate_factor, "1")
            derivative = f"{_paren(factor, prec, _PRODUCT)}*({derivative})"
        lines.append(f"d{x}/dt = {derivative} : 1")
    return lines


def steady_state_gates(spec: HHSpec):
    """Names of the dynamic gates, whose steady state is the subexpression ``<gate>_inf``."""
    return tuple(spec.model.gate_names)


def equations(spec: HHSpec = None, current: str = PARAMETER_CURRENT,
              exprel_form: str = "function"):
    r"""The Brian2 ``Equations`` of ``spec.model`` (see the module docs for the form).

    Args:
        spec: an :class:`~hh_plugin.model.HHSpec` (default: the reference model). Its
            values are not in the equations: scalar parameters are declared
            ``(constant, shared)``, per-neuron arrays ``(constant)``; ``V_reset`` is a
            parameter when ``spec.V_reset`` is set.
        current: ``'parameter'`` (default): ``I : amp``, a per-neuron parameter;
            otherwise a Brian2 expression in amp, e.g. ``'I_stim(t, i)'`` for a
            ``TimedArray`` or ``'ge*(Ee - V)'``, which defines ``I = <expr> : amp``.
        exprel_form: ``'function'`` (default): ``hh_exprel``, the plugin's fast function
            (:mod:`hh_plugin.brian2.functions`; a ``NeuronGroup`` of your own needs
            ``namespace=hh_plugin.brian2.namespace()``); ``'brian2'``: Brian2's
            ``exprel`` (needs no namespace; slow on the numpy target).

    Returns:
        ``brian2.Equations`` with the state ``V`` (volt), one dimensionless variable per
        dynamic gate, ``I`` (amp), the rates, steady states, time constants and ionic
        currents as subexpressions, and one parameter per model parameter.

    :func:`~hh_plugin.brian2.neuron_group` builds a ready group from these equations
    (namespace, parameter values, spike rule, initial state); ``print(equations(spec))``
    shows the model.
    """
    import brian2

    spec = HHSpec() if spec is None else spec
    if not isinstance(spec, HHSpec):
        raise TypeError(f"spec must be an HHSpec, got {type(spec).__name__}")
    current = _check_current(current)
    if exprel_form not in EXPREL_FORMS:
        raise ValueError(f"exprel_form must be one of {EXPREL_FORMS}, got {exprel_form!r}")
    model = spec.model
    taken = set(model.state_names) | set(model.parameter_names) | {"I"}
    clash = taken & set(variable_names(spec))
    if clash:
        raise ValueError(f"model {model.name!r}: names {sorted(clash)} clash with the "
                         f"generated subexpressions of the Brian2 backend")
    if "I" in model.parameter_names or "I" in model.gate_names:
        raise ValueError(f"model {model.name!r}: 'I' is reserved for the input current")
    if spec.V_reset is not None and "V_reset" in taken:
        raise ValueError(f"model {model.name!r}: 'V_reset' is reserved for the reset option")

    function = FUNCTION_NAME if exprel_form == "function" else "exprel"
    printer = _Printer(model.units, {"exprel": function})
    currents = " + ".join(f"I_{ch.name}" for ch in model.channels)
    lines = [f"dV/dt = (-({currents}) + I)/{model.capacitance} : volt"]
    lines += _gate_lines(model, printer, frozen=spec.method == DEFAULT_METHOD)
    for ch in model.channels:
        g, prec = printer.quantity(ch.conductance, "mS")
        lines.append(f"I_{ch.name} = {_paren(g, prec, _PRODUCT)}*(V - {ch.reversal}) : amp")
    lines.append("I : amp" if current == PARAMETER_CURRENT else f"I = {current} : amp")
    for name, value in spec.parameters.items():
        kind = "constant" if isinstance(value, np.ndarray) else "constant, shared"
        lines.append(f"{name} : {DIMENSION_NAMES[model.units[name]]} ({kind})")
    if spec.V_reset is not None:
        kind = "constant" if isinstance(spec.V_reset, np.ndarray) else "constant, shared"
        lines.append(f"V_reset : volt ({kind})")
    text = "\n".join(lines)
    try:
        return brian2.Equations(text)
    except _compat.equation_errors() as exc:
        raise ValueError(f"model {model.name!r} cannot be written as Brian2 equations: "
                         f"{exc}") from None
