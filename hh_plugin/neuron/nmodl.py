r"""NMODL source generated from a :class:`~hh_plugin.model.ModelDefinition`.

One *density mechanism* per model (``SUFFIX``), written from the definition's parsed
expressions (:attr:`~hh_plugin.model.ModelDefinition.gate_terms`,
:attr:`~hh_plugin.model.ModelDefinition.conductance_expressions`): no rate or default is
written twice. With :math:`V` the membrane potential ``v`` (mV) and the gates

* kinetic: :math:`x' = \phi\,(\alpha_x(v)(1 - x) - \beta_x(v)\,x)`,
* relaxing: :math:`x' = \phi\,(x_\infty(v) - x)/\tau_x(v)`,
* instantaneous: :math:`x = x_\infty(v)` or :math:`\alpha_x/(\alpha_x + \beta_x)`, an
  ``ASSIGNED`` variable evaluated at the present ``v`` wherever it is used (the
  continuous-time meaning of the plugin's "held during a step"),

(rates in 1/ms, :math:`\tau` in ms, :math:`\phi` the gate's rate factor, e.g. a
temperature factor :math:`Q_{10}^{(T - T_0)/10}` written as an expression of parameters),
the mechanism's outward current density is

.. math::
    i = \frac{10^5}{A} \sum_c g_c(x)\,(v - E_c) \quad [\mathrm{mA/cm^2}],

where :math:`g_c` is the channel's conductance in the plugin's unit mS (of the whole
membrane patch), :math:`E_c` in mV, and :math:`A` the ``RANGE`` parameter ``patch``
(um²), which the cell builder sets to the section's area: mS·mV = uA, and
1 uA / (A um²) = :math:`10^{-3}` mA / (:math:`A \cdot 10^{-8}` cm²). Parameters stay in the
plugin's units (mV, mS, uA, ms, 1/ms, 1) as per-segment ``RANGE`` variables with the
definition's defaults; the membrane capacitance and the spike threshold are properties
of the cell (``cm``, the ``NetCon`` threshold), so they appear here only if an expression
uses them.

NMODL has no ``exprel``: each mechanism defines the helper ``FUNCTION exprel(x)``,
:math:`(e^x - 1)/x`, evaluated as the Taylor polynomial
:math:`1 + x/2 + x^2/6 + x^3/24 + x^4/120` for :math:`|x| < 10^{-3}` (the same cut-off and
coefficients as the torch and C++ backends,
:data:`~hh_plugin.model.expressions.EXPREL_TAYLOR_CUTOFF_FLOAT64`).

Names. The mechanism's suffix is ``<model name>_<8 hex digits>``, the digits a hash of
the definition's content (so that two definitions of one name never meet in one NEURON
process). Model names that NMODL, C or NEURON reserve (``v``, ``area``, ``celsius``,
``if``, ...) are written with a trailing ``_p``; :attr:`Mechanism.names` maps each model
name to its NMODL name. A parameter name that equals one of the generated names
(``alpha_<gate>``, ``beta_<gate>``, ``inf_<gate>``, ``tau_<gate>``, ``phi_<gate>``) is
refused, naming both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Dict, Mapping, Tuple

import sympy

from ..model.definition import ModelDefinition, steady_state
from ..model.expressions import (EXPREL_TAYLOR_COEFFICIENTS, EXPREL_TAYLOR_CUTOFF_FLOAT64,
                                 VOLTAGE_SYMBOL)

#: Names NMODL, the C code it becomes, or NEURON's mechanism interface reserve.
RESERVED = frozenset("""
v i t dt celsius area diam patch secondorder PI FARADAY R pi e0 exprel rates states
threshold flag net_send net_event
if else while for do int double float char long short void return break continue switch
case default const static extern struct union enum sizeof goto auto register signed
unsigned volatile inline exp log log10 sqrt tanh cosh sinh sin cos tan fabs pow floor
ceil atan atan2 asin acos erf erfc nrn_random_play printf fprintf stderr stdout
NEURON SUFFIX POINT_PROCESS RANGE GLOBAL PARAMETER ASSIGNED STATE INITIAL BREAKPOINT
DERIVATIVE SOLVE METHOD PROCEDURE FUNCTION NET_RECEIVE UNITS LOCAL TABLE DEPEND FROM TO
WITH THREADSAFE NONSPECIFIC_CURRENT ELECTRODE_CURRENT USEION READ WRITE VALENCE COMMENT
ENDCOMMENT VERBATIM ENDVERBATIM TITLE KINETIC CONSERVE COMPARTMENT LONGITUDINAL_DIFFUSION
LINEAR NONLINEAR PARTIAL INDEPENDENT CONSTANT STEPPED SWEEP FIRST LAST REPRESENTS
CONSTRUCTOR DESTRUCTOR NETRECEIVE POINTER BBCOREPOINTER EXTERNAL BEFORE AFTER WATCH
""".split())

#: NMODL unit of each plugin parameter unit.
UNITS = {"mV": "(mV)", "mS": "(mS)", "uF": "(uF)", "uA": "(uA)", "ms": "(ms)",
         "1/ms": "(/ms)", "1": "(1)"}


def content_hash(model: ModelDefinition) -> str:
    """8 hex digits of the SHA-256 of the definition's :meth:`~ModelDefinition.to_dict`
    (its equations, parameters and defaults; not its ``area``, which changes no value)."""
    data = model.to_dict()
    data.pop("area", None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def nmodl_name(name: str) -> str:
    """``name`` as written in NMODL: unchanged, or with ``_p`` where it is reserved."""
    return name + "_p" if name in RESERVED else name


def _number(value: float) -> str:
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        raise ValueError(f"NMODL: the number {value} cannot be written in a mechanism")
    return f"({text})" if text.startswith("-") else text


class _Printer:
    """Fully parenthesised NMODL text of a sympy expression (numbers as doubles, ``^`` for
    powers, ``exprel`` as the mechanism's helper function)."""

    FUNCTIONS = {"exp": "exp", "log": "log", "sqrt": "sqrt", "tanh": "tanh",
                 "cosh": "cosh", "exprel": "exprel"}

    def __init__(self, names: Mapping[str, str]):
        self.names = names

    def __call__(self, expr) -> str:
        if isinstance(expr, sympy.Symbol):
            try:
                return self.names[expr.name]
            except KeyError:
                raise ValueError(f"NMODL: unknown name {expr.name!r} in an expression") \
                    from None
        if expr.is_number:
            value = complex(expr)
            if value.imag != 0:
                raise ValueError(f"NMODL: the constant {expr} is not real")
            return _number(value.real)
        if isinstance(expr, sympy.Add):
            return "(" + " + ".join(self(a) for a in expr.args) + ")"
        if isinstance(expr, sympy.Mul):
            return "(" + "*".join(self(a) for a in expr.args) + ")"
        if isinstance(expr, sympy.Pow):
            base, exponent = expr.args
            if exponent == -1:
                return f"(1.0/{self(base)})"
            if exponent == sympy.Rational(1, 2):
                return f"sqrt({self(base)})"
            return f"({self(base)}^{self(exponent)})"
        if isinstance(expr, sympy.Function):
            name = type(expr).__name__
            if name not in self.FUNCTIONS:
                raise ValueError(f"NMODL: the function {name!r} has no NMODL counterpart")
            return f"{self.FUNCTIONS[name]}(" + ", ".join(self(a) for a in expr.args) + ")"
        raise ValueError(f"NMODL: cannot write {expr!r} ({type(expr).__name__}) in NMODL")


@dataclass(frozen=True)
class Mechanism:
    """A generated density mechanism: its ``suffix``, NMODL ``source`` and ``names``
    (model name -> NMODL name: parameters, gates; the hoc/Python name of a ``RANGE``
    variable is ``<NMODL name>_<suffix>``); ``parameters``: the model parameters it holds
    (those some expression uses), in declaration order."""

    model: ModelDefinition
    suffix: str
    source: str
    names: Mapping[str, str]
    parameters: Tuple[str, ...]

    def range_name(self, name: str) -> str:
        """The Python attribute of a segment for a model parameter or gate:
        ``seg.<range_name>`` (e.g. ``gNa_hodgkin_huxley_1a2b3c4d``)."""
        return f"{self.names[name]}_{self.suffix}"


def _used_parameters(model: ModelDefinition) -> Tuple[str, ...]:
    used = set()
    for terms in model.gate_terms.values():
        for _, expr in terms.intermediates:
            used |= {s.name for s in expr.free_symbols}
        if terms.factor is not None:
            used |= {s.name for s in terms.factor.free_symbols}
    for expr in model.conductance_expressions.values():
        used |= {s.name for s in expr.free_symbols}
    used |= {c.reversal for c in model.channels}
    return tuple(p for p in model.parameter_names if p in used)


def _exprel_function() -> str:
    c = EXPREL_TAYLOR_COEFFICIENTS
    taylor = (f"{c[0]!r} + x*({c[1]!r} + x*({c[2]!r} + x*({c[3]!r} + x*{c[4]!r})))")
    return (f"FUNCTION exprel(x) {{ : (exp(x) - 1)/x, exprel(0) = 1\n"
            f"    if (fabs(x) < {EXPREL_TAYLOR_CUTOFF_FLOAT64!r}) {{\n"
            f"        exprel = {taylor}\n"
            f"    }} else {{\n"
            f"        exprel = (exp(x) - 1.0)/x\n"
            f"    }}\n}}\n")


def generate_mechanism(model: ModelDefinition) -> Mechanism:
    """The :class:`Mechanism` of ``model`` (see the module docstring for the equations)."""
    if not isinstance(model, ModelDefinition):
        raise TypeError(f"expected a ModelDefinition, got {type(model).__name__}")
    suffix = f"{model.name}_{content_hash(model)}"
    parameters = _used_parameters(model)
    names: Dict[str, str] = {VOLTAGE_SYMBOL: "v"}
    for name in (*model.parameter_names, *(g.name for g in model.gates)):
        names[name] = nmodl_name(name)
    generated: Dict[str, str] = {}
    for g in model.gates:
        for label, name in (("alpha", "alpha"), ("beta", "beta"), ("x_inf", "inf"),
                            ("tau", "tau"), ("factor", "phi")):
            generated[f"{g.name}__{label}"] = f"{name}_{g.name}"
    clash = set(generated.values()) & set(names.values())
    if clash:
        name = sorted(clash)[0]
        raise ValueError(f"NEURON mechanism of model {model.name!r}: the name {name!r} "
                         f"is both a name of the model and the generated name of a gate's "
                         f"rate, steady state, time constant or rate factor in NMODL; "
                         f"rename it")
    symbols = {**names, **generated, **{n: n for n in generated.values()}}
    write = _Printer(symbols)
    terms = model.gate_terms
    dynamic = [g for g in model.gates if not g.is_instantaneous]
    instant = [g for g in model.gates if g.is_instantaneous]
    assigned_rates = []  # (nmodl name, unit)
    rate_lines = []
    for g in model.gates:
        t = terms[g.name]
        for label, expr in t.intermediates:
            unit = {"alpha": "(/ms)", "beta": "(/ms)", "x_inf": "(1)", "tau": "(ms)"}[label]
            target = generated[f"{g.name}__{label}"]
            assigned_rates.append((target, unit))
            rate_lines.append(f"    {target} = {write(expr)}")
        if t.factor is not None:
            target = generated[f"{g.name}__factor"]
            assigned_rates.append((target, "(1)"))
            rate_lines.append(f"    {target} = {write(t.factor)}")
        if g.is_instantaneous:
            rate_lines.append(f"    {names[g.name]} = {write(t.value)}")
    currents = " + ".join(
        f"{write(model.conductance_expressions[c.name])}*(v - {names[c.reversal]})"
        for c in model.channels)
    derivative_lines = []
    steady_lines = []
    for g in dynamic:
        t = terms[g.name]
        derivative = t.derivative
        if t.factor is not None:  # as its ASSIGNED value: cnexp takes no powers of parameters
            phi = sympy.Symbol(generated[g.name + "__factor"], real=True)
            derivative = derivative.subs(t.factor, phi)
            if phi not in derivative.free_symbols or \
                    derivative.free_symbols & t.factor.free_symbols:
                raise ValueError(f"NEURON mechanism of model {model.name!r}: the rate factor "
                                 f"of gate {g.name!r} could not be separated from its "
                                 f"derivative")
        derivative_lines.append(f"    {names[g.name]}' = {write(derivative)}")
        # the definition's own steady state (x_inf, or alpha/(alpha + beta)) of the
        # intermediates' symbols
        steady = steady_state({label: t.intermediate_symbol(label)
                               for label, _ in t.intermediates})
        steady_lines.append(f"    {names[g.name]} = {write(steady)}")
    units = model.units
    param_lines = [f"    {names[p]} = {model.parameter(p).default!r} {UNITS[units[p]]}"
                   for p in parameters]
    ranges = ["patch", *(names[p] for p in parameters), *(names[g.name] for g in instant),
              *(n for n, _ in assigned_rates)]
    header = (f"TITLE hh_plugin model {model.name} (generated from its ModelDefinition by "
              f"hh_plugin.neuron; do not edit)\n")
    comment = (
        "COMMENT\n"
        f"Model {model.name!r}. Parameters in the plugin's units of the whole membrane\n"
        "patch (mV, mS, uA, ms, 1/ms, 1); patch is the segment's area in um2 (set by\n"
        "hh_plugin.neuron), which turns the patch current g*(v - E) (mS*mV = uA) into the\n"
        "density i = 1e5/patch * sum g*(v - E) (mA/cm2).\n"
        "ENDCOMMENT\n")
    lines = [header, comment,
             "NEURON {",
             f"    SUFFIX {suffix}",
             "    NONSPECIFIC_CURRENT i",
             f"    RANGE {', '.join(ranges)}",
             "    THREADSAFE",
             "}", "",
             "UNITS {",
             "    (mV) = (millivolt)",
             "    (mA) = (milliamp)",
             "    (uA) = (microamp)",
             "    (mS) = (millisiemens)",
             "    (uF) = (microfarad)",
             "    (um) = (micron)",
             "}", "",
             "PARAMETER {",
             f"    patch = {1e8!r} (um2)",
             *param_lines,
             "}", "",
             "ASSIGNED {",
             "    v (mV)",
             "    i (mA/cm2)",
             *(f"    {names[g.name]} (1)" for g in instant),
             *(f"    {n} {u}" for n, u in assigned_rates),
             "}", ""]
    if dynamic:
        lines += ["STATE {", *(f"    {names[g.name]}" for g in dynamic), "}", "",
                  "BREAKPOINT {", "    SOLVE states METHOD cnexp"]
    else:
        lines += ["BREAKPOINT {"]
    lines += ["    rates(v)",
              f"    i = (1e5/patch)*({currents})",
              "}", "",
              "INITIAL {",
              "    rates(v)",
              *steady_lines,
              "}", ""]
    if dynamic:
        lines += ["DERIVATIVE states {", "    rates(v)", *derivative_lines, "}", ""]
    lines += ["PROCEDURE rates(v (mV)) {", *rate_lines, "}", "", _exprel_function()]
    return Mechanism(model, suffix, "\n".join(lines), dict(names), parameters)
