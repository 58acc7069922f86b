r"""Synapse models, declared once and generated for every backend.

A :class:`SynapseModel` is a *definition*, the sibling of
:class:`~hh_plugin.model.ModelDefinition`: it says what a synapse does to its target
neuron, not how a backend does it, and each backend (torch, Brian2, the network file) is
generated from it. Each target population gets the model's state variables once per
*receptor* (a named :class:`Synapse`: a model with parameter values); every projection
onto that receptor adds to the same states, so they hold the sum of the receptor's
synaptic inputs (the dynamics are linear, so summing is exact). A definition has:

**Parameters** (:class:`SynapseParameter`: name, unit ``ms``/``mV``/``mS``/``uA``/``1``,
constraint, default) and **derived values** (expressions of the parameters, e.g. the
factor that normalises a peak) with **conditions** (``requires``: expressions that must be
> 0, e.g. ``tau_decay - tau_rise``).

**States** :math:`x_s` (:class:`SynapseState`), in the model's unit (``'uA'``: a
current, ``'mS'``: a conductance), with their dynamics between spikes, linear and
homogeneous in the states, :math:`\dot x = A x` (:math:`A` made of parameters), or
*pulses* (:math:`x` holds the weights of the spikes that arrive for one step and is zero
again after that step, the input of a ``torch.nn.Linear`` between two Norse layers).
Between spikes both backends apply the exact propagator

.. math:: x_{k+1} = e^{A\Delta t}\, x_k,

which for one decaying state is :math:`x_{k+1} = x_k e^{-\Delta t/\tau}` (also what
Brian2's ``exponential_euler`` computes for :math:`\dot x = -x/\tau`).

**on_pre**: on a presynaptic spike (after the projection's delay) each synapse adds
:math:`c_s w_{ij}` to state :math:`s` (an expression linear in the weight ``w``, e.g.
``w*peak``).

**Entry** into the membrane equation of the *output* :math:`y = \sum_s k_s x_s`
(``output``, an expression linear in the states):

- ``reversal=None``: a current, added to the input current: :math:`I \mathrel{+}= y`;
- ``reversal`` the name of a parameter :math:`E` (mV): a conductance, adding
  :math:`y\,B(V)\,(E - V)` to :math:`C\,dV/dt`, where :math:`B(V)` is the optional
  voltage-dependent ``factor`` (1 without). Both backends treat it as part of the
  membrane conductance in the exponential Euler step,
  :math:`G = \sum_c g_c + \sum_r y_r B_r(V_k)`, with the factor evaluated at the
  :math:`V` of the step's start and held over the step, as an instantaneous gate (see
  :func:`hh_plugin.torch.functional.hh.hh_step`).

The step in which the states are used, decay and receive spikes is fixed by the network's
schedule (:mod:`hh_plugin.network.spec`). Every expression goes through the whitelisting
parser of neuron models (:func:`hh_plugin.model.expressions.parse`); a broken definition
is refused when it is made, naming the problem.

Shipped models: :data:`CURRENT_PULSE`, :data:`EXPONENTIAL_CURRENT` and
:data:`EXPONENTIAL_CONDUCTANCE` (COBAHH's ``ge``, ``gi``), :data:`BIEXPONENTIAL_CURRENT`,
:data:`BIEXPONENTIAL_CONDUCTANCE` (NEURON's ``Exp2Syn``), :data:`ALPHA_CONDUCTANCE` and
:data:`NMDA_CONDUCTANCE` (Jahr-Stevens magnesium block), and the graded
:data:`GATED_CONDUCTANCE` (Wang and Buzsaki 1996). ``docs/network.md`` gives the
equations of each.

**Graded synapses** declare ``presynaptic`` states instead: dimensionless states of the
*source* neuron (``s_<receptor>`` on the source population) whose dynamics may use its
potential ``V`` and are linear in the state itself, advanced by the exponential Euler
step of the gates from the step's start, :math:`x' = x + \Delta t\,
\operatorname{exprel}(-\lambda \Delta t)\,\dot x`, :math:`\lambda = -\partial\dot
x/\partial x`; the target's output is :math:`y_j = \sum_i w_{ij}\,
\mathrm{transmit}_i` of the states at the step's start, every step (no spikes, delay 1).

**Plasticity** of a projection's weights is declared the same way
(:class:`PlasticityModel`: parameters, presynaptic and postsynaptic traces that decay
exactly, and ordered ``on_pre``/``on_post`` statements, a trace increment or
:math:`w \leftarrow \operatorname{clip}(w + f, w_{lo}, w_{hi})`); :class:`STDP` is its
built-in additive rule (:data:`ADDITIVE_STDP`), :class:`Plasticity` a rule with values.
Tsodyks-Markram short-term plasticity (:class:`TsodyksMarkram`) is a declaration of its own.

Example (a user's model, the alpha function written out):

    >>> alpha = SynapseModel(
    ...     "my_alpha", "mS", (SynapseParameter("tau", "ms", "time to peak", "positive"),
    ...                        SynapseParameter("E", "mV", "reversal potential")),
    ...     reversal="E", states=(SynapseState("h", "-h/tau"), SynapseState("g", "(h - g)/tau")),
    ...     on_pre={"h": "w*exp(1)"}, output="g")
    >>> Synapse(alpha, "a", tau=1.0, E=0.0).state_variables
    ('h_a', 'g_a')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import sympy

from ..model.expressions import VOLTAGE_SYMBOL, parse, to_callable
from .units import as_scalar, check_name

#: Units of a synapse parameter (``'1'``: dimensionless, e.g. a concentration in mM
#: divided by 1 mM) and of a synaptic variable (the weights' unit).
SYNAPSE_PARAMETER_UNITS = ("ms", "mV", "mS", "uA", "1/ms", "1")
SYNAPSE_VARIABLE_UNITS = ("uA", "mS")
#: Name of the synaptic weight in ``on_pre`` expressions (the model's unit).
WEIGHT_SYMBOL = "w"
#: Names a synapse definition may not use for its parameters, states or derived values.
RESERVED_SYNAPSE_NAMES = frozenset({VOLTAGE_SYMBOL, WEIGHT_SYMBOL, "t", "dt", "i", "j", "N",
                                    "lastspike", "not_refractory", "delay"})
#: Most parameters, states, derived values and conditions a definition may have (a
#: definition travels in files: its size is bounded).
MAX_SYNAPSE_ITEMS = 16
#: Range of V (mV) over which a voltage-dependent factor must be finite and >= 0.
FACTOR_CHECK_RANGE = (-100.0, 60.0)
_CONSTRAINTS = (None, "positive", "nonnegative")


def _identifier(name, what: str) -> str:
    if not (isinstance(name, str) and name.isascii() and name.isidentifier()
            and not name.startswith("_") and len(name) <= 32):
        raise ValueError(f"{what} name {name!r} is not a valid identifier (ASCII letters, "
                         f"digits and _, at most 32 characters, not starting with _)")
    if name in RESERVED_SYNAPSE_NAMES:
        raise ValueError(f"{what} name {name!r} is reserved "
                         f"({sorted(RESERVED_SYNAPSE_NAMES)})")
    return name


def _check_parameter(parameter, what: str, units) -> None:
    """Checks of a declared parameter (synapse or plasticity): an identifier, a known unit
    and constraint, a string description, a finite default (stored as a float)."""
    _identifier(parameter.name, what)
    if parameter.unit not in units:
        raise ValueError(f"{what} {parameter.name!r}: unit {parameter.unit!r} not in {units}")
    if parameter.constraint not in _CONSTRAINTS:
        raise ValueError(f"{what} {parameter.name!r}: constraint "
                         f"{parameter.constraint!r} not in {_CONSTRAINTS}")
    if not isinstance(parameter.description, str):
        raise ValueError(f"{what} {parameter.name!r}: description must be a string")
    default = parameter.default
    if default is not None:
        if isinstance(default, bool) or not isinstance(default, (int, float)) \
                or not math.isfinite(default):
            raise ValueError(f"{what} {parameter.name!r}: default must be a finite number, "
                             f"got {default!r}")
        object.__setattr__(parameter, "default", float(default))


@dataclass(frozen=True)
class SynapseParameter:
    """A synapse model parameter: name, unit (one of :data:`SYNAPSE_PARAMETER_UNITS`),
    meaning, constraint (``'positive'``, ``'nonnegative'`` or ``None``) and default
    (``None``: must be given)."""

    name: str
    unit: str
    description: str
    constraint: Optional[str] = None
    default: Optional[float] = None

    def __post_init__(self):
        _check_parameter(self, "synapse parameter", SYNAPSE_PARAMETER_UNITS)

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "description": self.description,
                "constraint": self.constraint, "default": self.default}


@dataclass(frozen=True)
class SynapseState:
    r"""A state variable of a synapse model, in the model's unit (mS or uA).

    ``dynamics``: the text of :math:`\dot x` (unit per ms) between spikes, linear and
    homogeneous in the model's states with coefficients made of parameters
    (``'-g/tau'``, ``'(h - g)/tau'``); ``None``: a *pulse*, cleared after every step.
    """

    name: str
    dynamics: Optional[str] = None

    def __post_init__(self):
        _identifier(self.name, "synapse state")
        if self.dynamics is not None and not isinstance(self.dynamics, str):
            raise ValueError(f"synapse state {self.name!r}: dynamics must be an expression "
                             f"string or None (a pulse)")


def _pairs(value, what: str) -> Tuple[Tuple[str, str], ...]:
    """A mapping or a sequence of ``(name, text)`` pairs as a tuple of pairs."""
    items = value.items() if isinstance(value, Mapping) else value
    out = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2
                and all(isinstance(x, str) for x in item)):
            raise ValueError(f"{what}: expected pairs of strings, got {item!r}")
        out.append((item[0], item[1]))
    return tuple(out)


class _Compiled:
    """What the backends read from a definition: the coefficients of its linear parts as
    sympy expressions of the parameters only (derived values substituted)."""

    def __init__(self, model: "SynapseModel"):
        params = list(model.parameter_names)
        states = [s.name for s in model.states]
        sym = {n: sympy.Symbol(n, real=True) for n in params + states
               + [WEIGHT_SYMBOL, VOLTAGE_SYMBOL] + [d for d, _ in model.derived]
               + [x.name for x in model.presynaptic]}
        where = f"synapse model {model.name!r}"
        derived: Dict[str, sympy.Expr] = {}
        for name, text in model.derived:
            expr = _parse(text, params + list(derived), where, f"derived value {name!r}")
            derived[name] = expr.xreplace({sym[d]: e for d, e in derived.items()})
        self.derived = derived
        subs = {sym[d]: e for d, e in derived.items()}
        known = params + list(derived)

        def parsed(text, extra, what):
            return _parse(text, list(extra) + known, where, what).xreplace(subs)

        self.requires = [parsed(text, (), f"condition {text!r}") for text, _ in model.requires]
        self.parameters = params
        self._functions: Dict = {}
        pre = [x.name for x in model.presynaptic]
        self._pre_names = pre
        self.pre_drift, self.pre_rate, self.transmit = [], [], None
        if pre:
            # graded: each presynaptic state x has dx/dt = f(V, states), linear in x itself
            # (exponential Euler with the rate -df/dx, as gates and Brian2's scheme)
            for x in model.presynaptic:
                expr = parsed(x.dynamics, pre + [VOLTAGE_SYMBOL], f"dynamics of {x.name!r}")
                rate = -sympy.diff(expr, sym[x.name])
                if sym[x.name] in rate.free_symbols:
                    raise ValueError(f"{where}: the dynamics of {x.name!r} are not linear in "
                                     f"{x.name!r} (d/d{x.name} = {-rate})")
                self.pre_drift.append(expr)
                self.pre_rate.append(rate)
            self.transmit = parsed(model.transmit, pre, "transmit")
            self.matrix, self.increment, self.output, self.pulse = [], [], [], False
            self.factor = None
            if model.factor is not None:
                self.factor = parsed(model.factor, [VOLTAGE_SYMBOL], "factor")
            return
        state_syms = [sym[s] for s in states]
        self.pulse = all(s.dynamics is None for s in model.states)
        if not self.pulse and any(s.dynamics is None for s in model.states):
            raise ValueError(f"{where}: either every state is a pulse (dynamics None) or "
                             f"none is")
        self.matrix = []
        for s in model.states:
            if s.dynamics is None:
                self.matrix.append([sympy.S.Zero] * len(states))
                continue
            expr = parsed(s.dynamics, states, f"dynamics of {s.name!r}")
            self.matrix.append(_linear(expr, state_syms, where, f"the dynamics of {s.name!r}",
                                       "the states"))
        on_pre = dict(model.on_pre)
        self.increment = []
        for s in model.states:
            if s.name not in on_pre:
                self.increment.append(sympy.S.Zero)
                continue
            expr = parsed(on_pre[s.name], [WEIGHT_SYMBOL], f"on_pre of {s.name!r}")
            self.increment.append(_linear(expr, [sym[WEIGHT_SYMBOL]], where,
                                          f"on_pre of {s.name!r}", "the weight w")[0])
        if model.output is None:
            raise ValueError(f"{where}: give the output (the conductance or current, an "
                             f"expression of the states)")
        self.output = _linear(parsed(model.output, states, "output"), state_syms, where,
                              "the output", "the states")
        if all(c == 0 for c in self.output):
            raise ValueError(f"{where}: the output does not depend on any state")
        self.factor = None
        if model.factor is not None:
            self.factor = parsed(model.factor, [VOLTAGE_SYMBOL], "factor")

    def function(self, key: str, backend: str, with_dt: bool = False):
        """A callable of ``(*parameters)`` (``(dt, *parameters)`` with ``with_dt``; the
        factor: ``(V, *parameters)``) returning the list of coefficients ``key``:
        ``'matrix'`` (row by row, times ``dt`` with ``with_dt``), ``'increment'``,
        ``'output'``, ``'factor'``, ``'requires'``, ``'derived'``."""
        cache_key = (key, backend, with_dt)
        if cache_key not in self._functions:
            dt = sympy.Symbol("dt", real=True)
            if key == "matrix":
                exprs = [e * dt if with_dt else e for row in self.matrix for e in row]
            elif key == "factor":
                exprs = [self.factor]
            elif key == "derived":
                exprs = list(self.derived.values())
            elif key == "transmit":
                exprs = [self.transmit]
            else:
                exprs = list(getattr(self, key))
            pre = [str(x) for x in self._pre_names]
            if key in ("pre_drift", "pre_rate"):
                head = ["V"] + pre
            elif key == "transmit":
                head = pre
            else:
                head = ["V"] if key == "factor" else []
            args = head + (["dt"] if with_dt else []) + self.parameters
            funcs = [to_callable(e, args, backend) for e in exprs]
            self._functions[cache_key] = lambda *a: [f(*a) for f in funcs]
        return self._functions[cache_key]


def _parse(text, allowed, where: str, what: str) -> sympy.Expr:
    if not isinstance(text, str):
        raise ValueError(f"{where}: {what} must be an expression string, got "
                         f"{type(text).__name__}")
    try:
        return parse(text, allowed)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {what}: {exc}") from None


def _linear(expr, symbols, where: str, what: str, of: str):
    """The coefficients of ``expr`` in ``symbols``, refusing a part that is not linear
    and homogeneous in them."""
    coefficients = []
    for s in symbols:
        c = sympy.diff(expr, s)
        if c.free_symbols & set(symbols):
            raise ValueError(f"{where}: {what} is not linear in {of} (d/d{s} = {c})")
        coefficients.append(c)
    rest = expr.xreplace({s: 0 for s in symbols})
    if rest != 0:
        raise ValueError(f"{where}: {what} has a part without {of} ({rest}); it must be "
                         f"linear and homogeneous in {of}")
    for c in coefficients:
        bad = {str(x) for x in c.free_symbols} & {VOLTAGE_SYMBOL, WEIGHT_SYMBOL}
        if bad:
            raise ValueError(f"{where}: the coefficients of {what} may use parameters only, "
                             f"not {sorted(bad)}")
    return coefficients


@dataclass(frozen=True)
class SynapseModel:
    r"""A synapse model: the definition that every backend is generated from.

    Fields (see the module docstring for the semantics and the numerics):

    - ``name``; ``unit``: ``'mS'`` (a conductance) or ``'uA'`` (a current), the unit of
      the weights and of every state;
    - ``parameters``: :class:`SynapseParameter` objects;
    - ``states``: :class:`SynapseState` objects, each with its dynamics between spikes;
    - ``on_pre``: ``{state: increment}``, what a presynaptic spike adds to a state, an
      expression linear in the weight ``w`` (``'w'``, ``'w*peak'``);
    - ``output``: the conductance (mS) or current (uA), an expression linear in the
      states (``'B - A'``);
    - ``reversal``: the name of a parameter in mV for a conductance, ``None`` for a current;
    - ``factor``: optional voltage-dependent factor of a conductance, an expression of
      ``V`` (mV) and the parameters (the magnesium block), evaluated with the ``V`` of
      the start of each step;
    - ``derived``: ``{name: expression of parameters}``, values used by the expressions
      (in order, each may use those before it);
    - ``requires``: ``[(expression, message)]``: conditions on parameter values, each
      expression must be > 0 for a receptor to be made (the message says why).

    The shorthand of the three original models, ``SynapseModel(name, unit, parameters,
    time_constant, reversal)``, declares one state named ``g`` (conductance) or ``I``
    (current) with :math:`\dot x = -x/\tau` (``time_constant`` the name of
    :math:`\tau`) or a pulse (``time_constant=None``), ``on_pre`` ``x += w`` and output
    ``x``.

    A definition is checked when it is made: names (identifiers, unique, not reserved),
    units, every expression through the whitelisting parser of neuron models
    (:func:`hh_plugin.model.expressions.parse`) with the names it may use, the
    linearity of dynamics, increments and output; a broken one raises ``ValueError``
    naming the problem.
    """

    name: str
    unit: str
    parameters: Tuple[SynapseParameter, ...] = ()
    time_constant: Optional[str] = None
    reversal: Optional[str] = None
    description: str = ""
    states: Tuple[SynapseState, ...] = ()
    on_pre: Tuple[Tuple[str, str], ...] = ()
    output: Optional[str] = None
    factor: Optional[str] = None
    derived: Tuple[Tuple[str, str], ...] = ()
    requires: Tuple[Tuple[str, str], ...] = ()
    presynaptic: Tuple[SynapseState, ...] = ()
    transmit: Optional[str] = None

    def __post_init__(self):
        setter = object.__setattr__
        if not (isinstance(self.name, str) and self.name.isascii() and self.name.isidentifier()
                and len(self.name) <= 64):
            raise ValueError(f"synapse model name {self.name!r} is not an identifier")
        where = f"synapse model {self.name!r}"
        if self.unit not in SYNAPSE_VARIABLE_UNITS:
            raise ValueError(f"{where}: unit {self.unit!r} not in {SYNAPSE_VARIABLE_UNITS}")
        setter(self, "parameters", tuple(self.parameters))
        for p in self.parameters:
            if not isinstance(p, SynapseParameter):
                raise ValueError(f"{where}: parameters must be SynapseParameter objects")
        states = tuple(s if isinstance(s, SynapseState) else SynapseState(*s)
                       for s in self.states)
        setter(self, "states", states)
        setter(self, "presynaptic", tuple(x if isinstance(x, SynapseState) else SynapseState(*x)
                                          for x in self.presynaptic))
        for key in ("on_pre", "derived", "requires"):
            setter(self, key, _pairs(getattr(self, key), f"{where}: {key}"))
        for key, items in (("parameters", self.parameters), ("states", states),
                           ("derived", self.derived), ("requires", self.requires)):
            if len(items) > MAX_SYNAPSE_ITEMS:
                raise ValueError(f"{where}: more than {MAX_SYNAPSE_ITEMS} {key}")
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: duplicate parameter names")
        units = {p.name: p.unit for p in self.parameters}
        if self.time_constant is not None and units.get(self.time_constant) != "ms":
            raise ValueError(f"{where}: time constant {self.time_constant!r} must be a "
                             f"parameter in ms")
        if self.reversal is not None:
            if units.get(self.reversal) != "mV":
                raise ValueError(f"{where}: reversal {self.reversal!r} must be a parameter "
                                 f"in mV")
            if self.unit != "mS":
                raise ValueError(f"{where}: a reversal potential needs a conductance (unit "
                                 f"'mS')")
        elif self.unit != "uA":
            raise ValueError(f"{where}: a conductance needs a reversal potential parameter")
        if self.factor is not None and self.reversal is None:
            raise ValueError(f"{where}: a voltage-dependent factor needs a conductance")
        if self.presynaptic:  # a graded synapse: presynaptic states, no spikes
            if states or self.on_pre or self.output is not None or self.time_constant:
                raise ValueError(f"{where}: a graded synapse (presynaptic states) has no "
                                 f"postsynaptic states, on_pre, output or time_constant")
            if self.transmit is None:
                raise ValueError(f"{where}: a graded synapse needs transmit (the expression "
                                 f"of the presynaptic states that the weights multiply)")
            if len(self.presynaptic) > MAX_SYNAPSE_ITEMS:
                raise ValueError(f"{where}: more than {MAX_SYNAPSE_ITEMS} presynaptic states")
            if any(x.dynamics is None for x in self.presynaptic):
                raise ValueError(f"{where}: every presynaptic state needs its dynamics")
        elif self.transmit is not None:
            raise ValueError(f"{where}: transmit goes with presynaptic states")
        elif not states:  # the shorthand of the original three models
            if self.on_pre or self.output is not None or self.derived:
                raise ValueError(f"{where}: give states with on_pre and output")
            x = self.variable_prefix
            if x in units:
                raise ValueError(f"{where}: parameter {x!r} clashes with the state {x!r}")
            dynamics = None if self.time_constant is None else f"-{x}/{self.time_constant}"
            setter(self, "states", (SynapseState(x, dynamics),))
            setter(self, "on_pre", ((x, WEIGHT_SYMBOL),))
            setter(self, "output", x)
        elif self.time_constant is not None:
            raise ValueError(f"{where}: time_constant is the shorthand of a one-state model; "
                             f"with states, write each state's dynamics")
        taken = (list(names) + [s.name for s in self.states] + [d for d, _ in self.derived]
                 + [x.name for x in self.presynaptic])
        if len(set(taken)) != len(taken):
            raise ValueError(f"{where}: parameters, states and derived values must have "
                             f"distinct names, got {taken}")
        for d, _ in self.derived:
            _identifier(d, "derived value")
        for s, _ in self.on_pre:
            if s not in {st.name for st in self.states}:
                raise ValueError(f"{where}: on_pre changes {s!r}, which is not a state")
        if not self.on_pre and not self.presynaptic:
            raise ValueError(f"{where}: on_pre must change at least one state")
        setter(self, "_compiled", _Compiled(self))

    # ---------------------------------------------------------------- properties
    @property
    def is_conductance(self) -> bool:
        return self.reversal is not None

    @property
    def is_pulse(self) -> bool:
        """Whether the states are pulses (cleared after every step)."""
        return bool(self.states) and all(s.dynamics is None for s in self.states)

    @property
    def is_graded(self) -> bool:
        """Whether the synapse is graded: presynaptic states driven by the presynaptic
        potential, transmitted every step (no spikes)."""
        return bool(self.presynaptic)

    @property
    def presynaptic_names(self) -> Tuple[str, ...]:
        return tuple(x.name for x in self.presynaptic)

    @property
    def is_single_exponential(self) -> bool:
        """The shape of the original three models: one state ``x`` (``x += w``, output
        ``x``, no factor) that is a pulse or decays with ``time_constant``."""
        return (len(self.states) == 1 and self.factor is None
                and (self.is_pulse or self.time_constant is not None)
                and self.on_pre == ((self.states[0].name, WEIGHT_SYMBOL),)
                and self.output == self.states[0].name)

    @property
    def is_diagonal(self) -> bool:
        """Whether each state decays on its own (no coupling between states)."""
        m = self._compiled.matrix
        return all(m[i][j] == 0 for i in range(len(m)) for j in range(len(m)) if i != j)

    @property
    def variable_prefix(self) -> str:
        """``'g'`` for conductances, ``'I'`` for currents (the output is ``<prefix>_<receptor>``)."""
        return "g" if self.is_conductance else "I"

    @property
    def parameter_names(self) -> Tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def state_names(self) -> Tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def compiled(self) -> _Compiled:
        """The coefficients the backends read (sympy, parameters only)."""
        return self._compiled

    # ---------------------------------------------------------------- files
    def to_dict(self) -> Dict[str, Any]:
        """The full definition (states written out), for files."""
        return {"name": self.name, "unit": self.unit, "description": self.description,
                "parameters": [p.to_dict() for p in self.parameters],
                "states": [{"name": s.name, "dynamics": s.dynamics} for s in self.states],
                "on_pre": dict(self.on_pre), "output": self.output,
                "reversal": self.reversal, "factor": self.factor,
                "derived": dict(self.derived), "requires": [list(r) for r in self.requires],
                "presynaptic": [{"name": x.name, "dynamics": x.dynamics}
                                for x in self.presynaptic], "transmit": self.transmit}

    @classmethod
    def from_dict(cls, data: Mapping) -> "SynapseModel":
        """Inverse of :meth:`to_dict`; every field is checked (files are untrusted)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"synapse definition: expected a mapping, got "
                             f"{type(data).__name__}")
        allowed = {"name", "unit", "description", "parameters", "states", "on_pre",
                   "output", "reversal", "factor", "derived", "requires", "presynaptic",
                   "transmit"}
        extra = set(data) - allowed
        if extra:
            raise ValueError(f"unknown key(s) in synapse definition: {sorted(extra)}")
        for key in ("name", "unit"):
            if key not in data:
                raise ValueError(f"synapse definition: {key!r} is missing")
        params = _parameters_from(data, SynapseParameter, "synapse definition")

        def state_list(key):
            return _states_from(data, key, "synapse definition")

        states, presynaptic = state_list("states"), state_list("presynaptic")
        if not states and not presynaptic:
            raise ValueError("synapse definition: no states")
        requires = [tuple(r) if isinstance(r, (list, tuple)) else r
                    for r in _sequence(data.get("requires", ()), "requires")]
        description = data.get("description", "")
        if not isinstance(description, str) or len(description) > 2000:
            raise ValueError("synapse definition: description must be a string (at most "
                             "2000 characters)")
        return cls(data["name"], data["unit"], tuple(params), None, data.get("reversal"),
                   description, tuple(states), _pairs(data.get("on_pre", {}), "on_pre"),
                   data.get("output"), data.get("factor"),
                   _pairs(data.get("derived", {}), "derived"), _pairs(requires, "requires"),
                   tuple(presynaptic), data.get("transmit"))


def _sequence(value, what, where: str = "synapse definition"):
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        if isinstance(value, np.ndarray):
            return list(value)
        raise ValueError(f"{where}: {what} must be a list")
    if len(value) > MAX_SYNAPSE_ITEMS:
        raise ValueError(f"{where}: more than {MAX_SYNAPSE_ITEMS} {what}")
    return value


def _parameters_from(data: Mapping, parameter_type, what: str) -> list:
    """The ``parameters`` entries of a definition read from a file, each checked."""
    params = []
    for p in _sequence(data.get("parameters", ()), "parameters", what):
        if not isinstance(p, Mapping) or set(p) - {"name", "unit", "description",
                                                   "constraint", "default"}:
            raise ValueError(f"{what}: bad parameter entry {p!r}")
        params.append(parameter_type(p.get("name"), p.get("unit"), p.get("description", ""),
                                     p.get("constraint"), p.get("default")))
    return params


def _states_from(data: Mapping, key: str, what: str) -> list:
    """The state (or trace) entries ``data[key]`` of a definition read from a file."""
    out = []
    for x in _sequence(data.get(key, ()), key, what):
        if not isinstance(x, Mapping) or set(x) - {"name", "dynamics"}:
            raise ValueError(f"{what}: bad {key} entry {x!r}")
        out.append(SynapseState(x.get("name"), x.get("dynamics")))
    return out


def _carried_definition(data: Mapping, model_type, builtins: Mapping, what: str, whose: str):
    """The model defined in ``data['definition']`` (a file carries a user's definition with
    its use): it must have the name ``data['model']`` and may not redefine a built-in."""
    model = model_type.from_dict(data["definition"])
    if model.name != data.get("model"):
        raise ValueError(f"{what}: the definition is named {model.name!r}, the {whose} "
                         f"model {data.get('model')!r}")
    builtin = builtins.get(model.name)
    if builtin is not None and builtin != model:
        raise ValueError(f"{what}: the definition redefines the built-in model "
                         f"{model.name!r}")
    return model


def expm(matrix: np.ndarray) -> np.ndarray:
    r"""The matrix exponential :math:`e^M` in float64 (scaling and squaring with a
    Taylor series of degree 20: the propagator of linear synaptic dynamics)."""
    m = np.asarray(matrix, dtype=np.float64)
    norm = np.max(np.sum(np.abs(m), axis=1)) if m.size else 0.0
    squarings = max(0, int(math.ceil(math.log2(norm))) + 1) if norm > 0.5 else 0
    a = m / (2.0 ** squarings)
    term = np.eye(len(m))
    total = np.eye(len(m))
    for k in range(1, 21):
        term = term @ a / k
        total = total + term
    for _ in range(squarings):
        total = total @ total
    return total

_TAU = SynapseParameter("tau", "ms", "decay time constant", "positive")
_E_REV = SynapseParameter("E_rev", "mV", "reversal potential")
_TAU_RISE = SynapseParameter("tau_rise", "ms", "rise time constant", "positive")
_TAU_DECAY = SynapseParameter("tau_decay", "ms", "decay time constant", "positive")

#: A current that lasts one step: :math:`I_k = \sum_i w_{ij} z_{i,k-d}` (``torch.nn.Linear``).
CURRENT_PULSE = SynapseModel(
    "current_pulse", "uA", (), None, None,
    "current pulse of one step: the weights of the spikes arriving in a step are the "
    "current of that step")
#: An exponentially decaying current :math:`\dot I_s = -I_s/\tau`, :math:`I \mathrel{+}= I_s`.
EXPONENTIAL_CURRENT = SynapseModel(
    "exponential_current", "uA", (_TAU,), "tau", None,
    "exponentially decaying current dI/dt = -I/tau, added to the input current")
#: An exponentially decaying conductance :math:`\dot g = -g/\tau` with current
#: :math:`g (E_{rev} - V)` (COBAHH's ``ge``, ``gi``).
EXPONENTIAL_CONDUCTANCE = SynapseModel(
    "exponential_conductance", "mS", (_TAU, _E_REV), "tau", "E_rev",
    "exponentially decaying conductance dg/dt = -g/tau with current g*(E_rev - V)")

#: Time of the peak of :math:`e^{-t/\tau_d} - e^{-t/\tau_r}` and the factor that makes
#: that peak 1 (NEURON's ``Exp2Syn``).
_PEAK = (("t_peak", "tau_rise*tau_decay/(tau_decay - tau_rise)*log(tau_decay/tau_rise)"),
         ("peak", "1/(exp(-t_peak/tau_decay) - exp(-t_peak/tau_rise))"))
_RISE_BEFORE_DECAY = (("tau_decay - tau_rise", "tau_decay must be longer than tau_rise"),)
_BIEXP_STATES = (SynapseState("A", "-A/tau_rise"), SynapseState("B", "-B/tau_decay"))

#: A current with rise and decay, peak :math:`w` (``Exp2Syn`` as a current):
#: :math:`I_s = B - A`, :math:`\dot A = -A/\tau_r`, :math:`\dot B = -B/\tau_d`, a spike
#: adds :math:`w\,p` to both (:math:`p` normalises the peak to :math:`w`).
BIEXPONENTIAL_CURRENT = SynapseModel(
    "biexponential_current", "uA", (_TAU_RISE, _TAU_DECAY), None, None,
    "current B - A with dA/dt = -A/tau_rise, dB/dt = -B/tau_decay; a spike adds w*peak to "
    "both, so that a single spike's current peaks at w", _BIEXP_STATES,
    (("A", "w*peak"), ("B", "w*peak")), "B - A", None, _PEAK, _RISE_BEFORE_DECAY)
#: NEURON's ``Exp2Syn``: conductance :math:`g = B - A` with rise and decay, peak :math:`w`.
BIEXPONENTIAL_CONDUCTANCE = SynapseModel(
    "biexponential_conductance", "mS", (_TAU_RISE, _TAU_DECAY, _E_REV), None, "E_rev",
    "conductance B - A with dA/dt = -A/tau_rise, dB/dt = -B/tau_decay (NEURON's Exp2Syn); "
    "a spike adds w*peak to both, so that a single spike's conductance peaks at w",
    _BIEXP_STATES, (("A", "w*peak"), ("B", "w*peak")), "B - A", None, _PEAK,
    _RISE_BEFORE_DECAY)
#: The alpha function :math:`g(t) = w\,(t/\tau)\,e^{1 - t/\tau}` (peak :math:`w` at
#: :math:`t = \tau`): :math:`\dot h = -h/\tau`, :math:`\dot g = (h - g)/\tau`, a spike
#: adds :math:`e\,w` to :math:`h`.
ALPHA_CONDUCTANCE = SynapseModel(
    "alpha_conductance", "mS", (_TAU, _E_REV), None, "E_rev",
    "alpha-function conductance g(t) = w*(t/tau)*exp(1 - t/tau) of one spike, peak w at "
    "t = tau: dh/dt = -h/tau, dg/dt = (h - g)/tau, a spike adds e*w to h",
    (SynapseState("h", "-h/tau"), SynapseState("g", "(h - g)/tau")),
    (("h", "w*exp(1)"),), "g")
#: NMDA: a biexponential conductance times the Jahr-Stevens magnesium block
#: :math:`B(V) = 1/(1 + [\mathrm{Mg}]\,e^{-0.062 V}/3.57)` (:math:`[\mathrm{Mg}]` in mM).
NMDA_CONDUCTANCE = SynapseModel(
    "nmda_conductance", "mS",
    (SynapseParameter("tau_rise", "ms", "rise time constant", "positive", 2.0),
     SynapseParameter("tau_decay", "ms", "decay time constant", "positive", 100.0),
     SynapseParameter("E_rev", "mV", "reversal potential", None, 0.0),
     SynapseParameter("Mg", "1", "extracellular magnesium concentration in mM",
                      "nonnegative", 1.0)),
    None, "E_rev",
    "NMDA conductance: biexponential B - A (peak w) times the magnesium block "
    "1/(1 + Mg*exp(-0.062*V)/3.57) of Jahr and Stevens (1990), V in mV, Mg in mM",
    _BIEXP_STATES, (("A", "w*peak"), ("B", "w*peak")), "B - A",
    "1/(1 + Mg*exp(-0.062*V)/3.57)", _PEAK, _RISE_BEFORE_DECAY)

#: The first-order kinetic (gated) synapse of Wang and Buzsaki (1996): a presynaptic
#: gate :math:`\dot s = \alpha F(V_{pre})(1 - s) - \beta s`,
#: :math:`F(V) = 1/(1 + e^{-(V - \theta)/2})`, conductance :math:`\sum_j w_{ij} s_j`.
GATED_CONDUCTANCE = SynapseModel(
    "gated_conductance", "mS",
    (SynapseParameter("alpha", "1/ms", "opening rate", "positive", 12.0),
     SynapseParameter("beta", "1/ms", "closing rate", "positive", 0.1),
     SynapseParameter("theta", "mV", "half-activation potential of the transmitter release",
                      None, 0.0),
     SynapseParameter("E_rev", "mV", "reversal potential", None, -75.0)),
    None, "E_rev",
    "first-order kinetic synapse (Wang and Buzsaki 1996): presynaptic gate ds/dt = "
    "alpha*F(V_pre)*(1 - s) - beta*s, F(V) = 1/(1 + exp(-(V - theta)/2)); the target's "
    "conductance is the weighted sum of the presynaptic gates",
    presynaptic=(SynapseState("s", "alpha/(1 + exp(-(V - theta)/2))*(1 - s) - beta*s"),),
    transmit="s")

#: The models every installation knows by name (a file names them without their definition).
BUILTIN_SYNAPSE_MODELS = (CURRENT_PULSE, EXPONENTIAL_CURRENT, EXPONENTIAL_CONDUCTANCE,
                          BIEXPONENTIAL_CURRENT, BIEXPONENTIAL_CONDUCTANCE, ALPHA_CONDUCTANCE,
                          NMDA_CONDUCTANCE, GATED_CONDUCTANCE)
_BUILTIN_NAMES = {m.name: m for m in BUILTIN_SYNAPSE_MODELS}

_SYNAPSE_MODELS: Dict[str, SynapseModel] = {}


def register_synapse_model(model: SynapseModel) -> SynapseModel:
    """Make a synapse model known by name (for specifications read back from a dict)."""
    existing = _SYNAPSE_MODELS.get(model.name)
    if existing is not None and existing != model:
        raise ValueError(f"a different synapse model named {model.name!r} is registered")
    _SYNAPSE_MODELS[model.name] = model
    return model


def get_synapse_model(name: str) -> SynapseModel:
    try:
        return _SYNAPSE_MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown synapse model {name!r}; known: "
                         f"{sorted(_SYNAPSE_MODELS)}") from None


for _m in BUILTIN_SYNAPSE_MODELS:
    register_synapse_model(_m)


class Synapse:
    """A receptor: a :class:`SynapseModel` with parameter values and a name.

    The receptor's output, the conductance or current that enters the membrane, is
    ``g_<receptor>`` (mS) or ``I_<receptor>`` (uA); its states are
    ``<state>_<receptor>`` on every target population it is used with (for the
    one-state models the state is the output: ``g_e``). Parameters are numbers in the
    model's units (``tau`` in ms, ``E_rev`` in mV) or Brian2 quantities. Made only when
    every parameter, derived value, condition and the voltage-dependent factor (over
    :data:`FACTOR_CHECK_RANGE`) is finite and valid.

    Example:
        >>> exc = Synapse(EXPONENTIAL_CONDUCTANCE, "e", tau=5.0, E_rev=0.0)
        >>> exc.variable, exc.tau
        ('g_e', 5.0)
    """

    __slots__ = ("model", "receptor", "_values")

    def __init__(self, model: SynapseModel, receptor: str, **parameters):
        if not isinstance(model, SynapseModel):
            raise TypeError(f"model must be a SynapseModel, got {type(model).__name__}")
        check_name(receptor, "receptor")
        unknown = set(parameters) - set(model.parameter_names)
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)} for synapse model "
                            f"{model.name!r}; known: {list(model.parameter_names)}")
        values = {}
        for p in model.parameters:
            if p.name not in parameters and p.default is None:
                raise TypeError(f"synapse model {model.name!r} needs parameter {p.name!r} "
                                f"({p.description}, {p.unit})")
            given = parameters.get(p.name, p.default)
            if p.unit == "1/ms":  # a number in 1/ms, or a Brian2 rate
                value = (as_scalar(given, "Hz", f"{receptor}.{p.name}") * 1e-3
                         if hasattr(given, "dim") else as_scalar(given, "1", f"{receptor}.{p.name}"))
            else:
                value = as_scalar(given, p.unit, f"{receptor}.{p.name}")
            if p.constraint == "positive" and not value > 0:
                raise ValueError(f"{receptor}.{p.name} must be > 0 (got {value} {p.unit})")
            if p.constraint == "nonnegative" and not value >= 0:
                raise ValueError(f"{receptor}.{p.name} must be >= 0 (got {value} {p.unit})")
            values[p.name] = value
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "receptor", receptor)
        object.__setattr__(self, "_values", values)
        self._check_values()

    def _check_values(self):
        model, compiled = self.model, self.model.compiled
        args = self.parameter_values
        where = f"receptor {self.receptor!r} ({model.name})"
        with np.errstate(all="ignore"):
            for (text, message), value in zip(model.requires,
                                              compiled.function("requires", "numpy")(*args)):
                if not value > 0:
                    raise ValueError(f"{where}: {message} ({text} = {value:g} is not > 0)")
            for (name, _), value in zip(model.derived, compiled.function("derived", "numpy")(*args)):
                if not np.isfinite(value):
                    raise ValueError(f"{where}: derived value {name!r} is {value} for "
                                     f"{self.parameters}")
            for key in ("matrix", "increment", "output"):
                values = np.asarray(compiled.function(key, "numpy")(*args), dtype=np.float64)
                if not np.all(np.isfinite(values)):
                    raise ValueError(f"{where}: the {key} coefficients are not finite for "
                                     f"{self.parameters}")
            if model.is_graded:
                V = np.linspace(*FACTOR_CHECK_RANGE, 161)
                half = [np.full_like(V, 0.5)] * len(model.presynaptic)
                for key in ("pre_drift", "pre_rate"):
                    values = compiled.function(key, "numpy")(V, *half, *args)
                    if not all(np.all(np.isfinite(v)) for v in values):
                        raise ValueError(f"{where}: the presynaptic dynamics are not finite "
                                         f"over V in {FACTOR_CHECK_RANGE} mV")
                if not np.all(np.isfinite(compiled.function("transmit", "numpy")(*half, *args))):
                    raise ValueError(f"{where}: transmit is not finite")
            if compiled.factor is not None:
                V = np.linspace(*FACTOR_CHECK_RANGE, 161)
                f = np.broadcast_to(compiled.function("factor", "numpy")(V, *args)[0], V.shape)
                if not (np.all(np.isfinite(f)) and np.all(f >= 0)):
                    raise ValueError(f"{where}: the factor {model.factor!r} is not finite "
                                     f"and >= 0 over V in {FACTOR_CHECK_RANGE} mV")

    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(f"Synapse has no attribute {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError("Synapse is immutable")

    @property
    def parameters(self) -> Dict[str, float]:
        return dict(self._values)

    @property
    def parameter_values(self) -> Tuple[float, ...]:
        """The parameter values in the model's order (the coefficient functions' arguments)."""
        return tuple(self._values[n] for n in self.model.parameter_names)

    @property
    def variable(self) -> str:
        """Name of the output, the conductance or current (``g_e``, ``I_syn``)."""
        return f"{self.model.variable_prefix}_{self.receptor}"

    def state_variable(self, state: str) -> str:
        """The population's name of one of the model's states (``A`` -> ``A_nmda``;
        the one state of the original models is the output, ``g_e``)."""
        return f"{state}_{self.receptor}"

    @property
    def state_variables(self) -> Tuple[str, ...]:
        """The population's names of the receptor's states, in the model's order."""
        return tuple(self.state_variable(s) for s in self.model.state_names)

    @property
    def presynaptic_variables(self) -> Tuple[str, ...]:
        """A graded synapse's states on its *source* population (``s_gaba``)."""
        return tuple(self.state_variable(x) for x in self.model.presynaptic_names)

    @property
    def unit(self) -> str:
        return self.model.unit

    @property
    def time_constant(self) -> Optional[float]:
        """:math:`\\tau` in ms of a one-state exponential model, else ``None`` (a pulse,
        or a model with several states: see :meth:`propagator`)."""
        tc = self.model.time_constant
        return None if tc is None else self._values[tc]

    @property
    def reversal_potential(self) -> Optional[float]:
        """:math:`E` in mV, or ``None`` for a current."""
        rv = self.model.reversal
        return None if rv is None else self._values[rv]

    # ------------------------------------------------------------------ numerics
    def propagator(self, dt: float) -> np.ndarray:
        r"""The exact step of the states between spikes, :math:`x_{k+1} = P x_k` with
        :math:`P = e^{A\Delta t}` (``dt`` in ms); diagonal dynamics give
        :math:`P_{ii} = e^{A_{ii}\Delta t}` (``math.exp(-dt/tau)``, as Brian2's exponential
        Euler computes it), coupled ones :func:`expm`; pulses give 0."""
        n = len(self.model.states)
        if self.model.is_pulse:
            return np.zeros((n, n))
        scaled = self.model.compiled.function("matrix", "numpy", with_dt=True)(
            dt, *self.parameter_values)
        m = np.asarray(scaled, dtype=np.float64).reshape(n, n)
        if self.model.is_diagonal:
            return np.diag([math.exp(float(m[i, i])) for i in range(n)])
        return expm(m)

    def increments(self) -> Tuple[float, ...]:
        """:math:`c_s`: a spike of weight :math:`w` adds :math:`c_s w` to state :math:`s`."""
        return tuple(float(v) for v in self.model.compiled.function("increment", "numpy")(
            *self.parameter_values))

    def output_coefficients(self) -> Tuple[float, ...]:
        """:math:`k_s`: the output is :math:`\\sum_s k_s x_s`."""
        return tuple(float(v) for v in self.model.compiled.function("output", "numpy")(
            *self.parameter_values))

    # ------------------------------------------------------------------ files
    def to_dict(self) -> Dict:
        """``model`` (name), ``receptor``, ``parameters``, and ``definition`` (the
        model's :meth:`SynapseModel.to_dict`) for a model that is not built in, so that
        the receptor can be read where its model was never declared."""
        out = {"model": self.model.name, "receptor": self.receptor,
               "parameters": dict(self._values)}
        if _BUILTIN_NAMES.get(self.model.name) != self.model:
            out["definition"] = self.model.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "Synapse":
        """Inverse of :meth:`to_dict`. A ``definition`` is checked as any definition
        (the expression whitelist, linearity, bounds) and used for this receptor only
        (it is not registered); it may not redefine a built-in model."""
        if not isinstance(data, Mapping):
            raise TypeError(f"synapse: expected a mapping, got {type(data).__name__}")
        extra = set(data) - {"model", "receptor", "parameters", "definition"}
        if extra:
            raise ValueError(f"unknown key(s) in synapse: {sorted(extra)}")
        parameters = data.get("parameters", {})
        if not isinstance(parameters, Mapping):
            raise ValueError("synapse: parameters must be a mapping")
        if "definition" in data:
            model = _carried_definition(data, SynapseModel, _BUILTIN_NAMES, "synapse",
                                        "receptor's")
        else:
            model = get_synapse_model(data.get("model"))
        return cls(model, data.get("receptor"), **dict(parameters))

    def __eq__(self, other):
        if not isinstance(other, Synapse):
            return NotImplemented
        return self.model == other.model and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash((self.model.name, self.receptor, tuple(sorted(self._values.items()))))

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Synapse({self.model.name}, {self.receptor!r}{', ' if params else ''}{params})"


def current_pulse(receptor: str = "syn") -> Synapse:
    """A :data:`CURRENT_PULSE` receptor (variable ``I_<receptor>``, weights in uA)."""
    return Synapse(CURRENT_PULSE, receptor)


def exponential_current(receptor: str, tau) -> Synapse:
    """An :data:`EXPONENTIAL_CURRENT` receptor: ``tau`` in ms, weights in uA."""
    return Synapse(EXPONENTIAL_CURRENT, receptor, tau=tau)


def exponential_conductance(receptor: str, tau, E_rev) -> Synapse:
    """An :data:`EXPONENTIAL_CONDUCTANCE` receptor: ``tau`` in ms, ``E_rev`` in mV,
    weights in mS."""
    return Synapse(EXPONENTIAL_CONDUCTANCE, receptor, tau=tau, E_rev=E_rev)


def biexponential_current(receptor: str, tau_rise, tau_decay) -> Synapse:
    """A :data:`BIEXPONENTIAL_CURRENT` receptor: time constants in ms, weights (the
    peak current of one spike) in uA."""
    return Synapse(BIEXPONENTIAL_CURRENT, receptor, tau_rise=tau_rise, tau_decay=tau_decay)


def biexponential_conductance(receptor: str, tau_rise, tau_decay, E_rev) -> Synapse:
    """A :data:`BIEXPONENTIAL_CONDUCTANCE` receptor (``Exp2Syn``): time constants in ms,
    ``E_rev`` in mV, weights (the peak conductance of one spike) in mS."""
    return Synapse(BIEXPONENTIAL_CONDUCTANCE, receptor, tau_rise=tau_rise,
                   tau_decay=tau_decay, E_rev=E_rev)


def alpha_conductance(receptor: str, tau, E_rev) -> Synapse:
    """An :data:`ALPHA_CONDUCTANCE` receptor: ``tau`` (time to peak) in ms, ``E_rev`` in
    mV, weights (the peak conductance) in mS."""
    return Synapse(ALPHA_CONDUCTANCE, receptor, tau=tau, E_rev=E_rev)


def nmda_conductance(receptor: str = "nmda", tau_rise=2.0, tau_decay=100.0, E_rev=0.0,
                     Mg=1.0) -> Synapse:
    """An :data:`NMDA_CONDUCTANCE` receptor: time constants in ms, ``E_rev`` in mV,
    ``Mg`` in mM, weights (peak conductance without block) in mS."""
    return Synapse(NMDA_CONDUCTANCE, receptor, tau_rise=tau_rise, tau_decay=tau_decay,
                   E_rev=E_rev, Mg=Mg)


def gated_conductance(receptor: str = "gaba", alpha=12.0, beta=0.1, theta=0.0,
                      E_rev=-75.0) -> Synapse:
    """A :data:`GATED_CONDUCTANCE` receptor (Wang and Buzsaki 1996's GABA_A synapse by
    default): rates in 1/ms, ``theta`` and ``E_rev`` in mV, weights (the conductance of a
    fully open synapse) in mS."""
    return Synapse(GATED_CONDUCTANCE, receptor, alpha=alpha, beta=beta, theta=theta,
                   E_rev=E_rev)


class TsodyksMarkram:
    r"""Tsodyks-Markram short-term plasticity of a projection, on any spike-driven synapse
    model (the form of Brian2's ``examples/synapses/short_term_plasticity.py``).

    Each presynaptic neuron of the projection has a utilisation :math:`u` and a fraction
    of available resources :math:`x` (dimensionless), relaxing between spikes as

    .. math:: \dot u = \frac{U - u}{\tau_f}, \qquad \dot x = \frac{1 - x}{\tau_d}

    (exactly: :math:`u \leftarrow U + (u - U) e^{-\Delta t/\tau_f}` per step), from
    :math:`u = U`, :math:`x = 1`. A spike arriving at the synapses (after the
    projection's delay) releases :math:`r = u x`: the synapse model's ``on_pre`` gets the
    weight :math:`w r` instead of :math:`w`, then :math:`x \mathrel{-}= r` and
    :math:`u \mathrel{+}= U (1 - u)`.

    ``U`` in (0, 1]; ``tau_rec`` (:math:`\tau_d`) and ``tau_facil`` (:math:`\tau_f`) in
    ms, > 0 (a small ``tau_facil`` gives depression only). The state is per presynaptic
    neuron, so the projection's delay must be one value (Brian2 keeps it per synapse; with
    one delay every synapse of a neuron sees the same spikes at the same times). The state
    is updated in the forward pass and not differentiated through its parameters.
    """

    __slots__ = ("U", "tau_rec", "tau_facil")

    def __init__(self, U, tau_rec, tau_facil):
        U = as_scalar(U, "1", "Tsodyks-Markram U")
        tau_rec = as_scalar(tau_rec, "ms", "Tsodyks-Markram tau_rec")
        tau_facil = as_scalar(tau_facil, "ms", "Tsodyks-Markram tau_facil")
        if not 0.0 < U <= 1.0:
            raise ValueError(f"Tsodyks-Markram U must be in (0, 1], got {U}")
        for name, value in (("tau_rec", tau_rec), ("tau_facil", tau_facil)):
            if not value > 0:
                raise ValueError(f"Tsodyks-Markram {name} must be > 0 ms, got {value}")
        object.__setattr__(self, "U", U)
        object.__setattr__(self, "tau_rec", tau_rec)
        object.__setattr__(self, "tau_facil", tau_facil)

    def __setattr__(self, name, value):
        raise AttributeError("TsodyksMarkram is immutable")

    def decay(self, dt: float) -> Tuple[float, float]:
        """:math:`(e^{-\\Delta t/\\tau_f}, e^{-\\Delta t/\\tau_d})` for a step ``dt`` (ms)."""
        return math.exp(-dt / self.tau_facil), math.exp(-dt / self.tau_rec)

    def to_dict(self) -> Dict[str, float]:
        return {"U": self.U, "tau_rec": self.tau_rec, "tau_facil": self.tau_facil}

    @classmethod
    def from_dict(cls, data: Mapping) -> "TsodyksMarkram":
        if not isinstance(data, Mapping) or set(data) != {"U", "tau_rec", "tau_facil"}:
            raise ValueError(f"short_term: expected U, tau_rec and tau_facil, got {data!r}")
        return cls(data["U"], data["tau_rec"], data["tau_facil"])

    def __eq__(self, other):
        return isinstance(other, TsodyksMarkram) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(tuple(self.to_dict().items()))

    def __repr__(self):
        return f"TsodyksMarkram(U={self.U}, tau_rec={self.tau_rec}, tau_facil={self.tau_facil})"


#: Units of a plasticity parameter: ``'w'`` is the unit of the projection's weights (mS
#: or uA, the receptor's).
PLASTICITY_PARAMETER_UNITS = ("ms", "1", "w")
_WEIGHT_TARGET = "w"


@dataclass(frozen=True)
class PlasticityParameter:
    """A parameter of a :class:`PlasticityModel`: name, unit (one of
    :data:`PLASTICITY_PARAMETER_UNITS`), meaning, constraint, default."""

    name: str
    unit: str
    description: str = ""
    constraint: Optional[str] = None
    default: Optional[float] = None

    def __post_init__(self):
        _check_parameter(self, "plasticity parameter", PLASTICITY_PARAMETER_UNITS)

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "description": self.description,
                "constraint": self.constraint, "default": self.default}


@dataclass(frozen=True)
class PlasticityModel:
    r"""A spike-timing plasticity rule of a projection's weights, declared once and
    generated for every backend (the step loop and fused kernel of torch, Brian2's
    ``Synapses`` with ``on_pre`` and ``on_post``, the network file).

    - ``parameters``: :class:`PlasticityParameter` objects (``ms``, ``1``, or ``w``: the
      unit of the weights);
    - ``pre_traces``, ``post_traces``: :class:`SynapseState` objects, a trace per source
      neuron and per target neuron, in the weights' unit, each decaying on its own between
      spikes, :math:`\dot a = -\lambda a` (``'-a_pre/tau_pre'``; :math:`\lambda` made of
      parameters), advanced exactly, :math:`a \leftarrow a\,e^{-\lambda\Delta t}` per step;
    - ``on_pre``: what a presynaptic spike arriving at synapse :math:`(i \to j)` does, and
      ``on_post``: what a spike of target neuron :math:`j` does, each an ordered sequence
      of ``(target, expression)`` statements: a trace of that side,
      ``a += expression`` (parameters only, so that the trace is the same for every
      synapse of the neuron, as Brian2 keeps it per synapse), or ``'w'``,
      :math:`w_{ij} \leftarrow \operatorname{clip}(w_{ij} + f, w_{lo}, w_{hi})` with
      :math:`f` an expression of the parameters, the traces of :math:`i` and :math:`j`
      and the weight ``w`` itself (soft bounds, multiplicative rules);
    - ``bounds``: the expressions of :math:`(w_{lo}, w_{hi})` (parameters only).

    The presynaptic spike is transmitted with the weight it had before ``on_pre``. Per
    step: the arriving presynaptic spikes' ``on_pre`` (with the traces as they were at the
    end of the previous step), the target's update, the traces' decay over the step, then
    the target's spikes' ``on_post`` (Brian2: the post pathway before the pre pathway in
    the ``synapses`` slot, the same order). A definition is checked when it is made (the
    expression whitelist, linear decay, the names each statement may use); a broken one
    raises ``ValueError`` naming the problem. The rule's state is updated in the forward
    pass and not differentiated.

    Example (:data:`ADDITIVE_STDP`, the rule of Brian2's ``examples/synapses/STDP.py``)::

        PlasticityModel(
            "additive_stdp", parameters=(tau_pre, tau_post, d_pre, d_post, w_max),
            pre_traces=(SynapseState("a_pre", "-a_pre/tau_pre"),),
            post_traces=(SynapseState("a_post", "-a_post/tau_post"),),
            on_pre=(("a_pre", "d_pre"), ("w", "a_post")),
            on_post=(("a_post", "d_post"), ("w", "a_pre")),
            bounds=("0", "w_max"))
    """

    name: str
    parameters: Tuple[PlasticityParameter, ...] = ()
    pre_traces: Tuple[SynapseState, ...] = ()
    post_traces: Tuple[SynapseState, ...] = ()
    on_pre: Tuple[Tuple[str, str], ...] = ()
    on_post: Tuple[Tuple[str, str], ...] = ()
    bounds: Tuple[str, str] = ("0", "w_max")
    description: str = ""

    def __post_init__(self):
        setter = object.__setattr__
        if not (isinstance(self.name, str) and self.name.isascii() and self.name.isidentifier()
                and len(self.name) <= 64):
            raise ValueError(f"plasticity model name {self.name!r} is not an identifier")
        where = f"plasticity model {self.name!r}"
        setter(self, "parameters", tuple(self.parameters))
        for p in self.parameters:
            if not isinstance(p, PlasticityParameter):
                raise ValueError(f"{where}: parameters must be PlasticityParameter objects")
        for key in ("pre_traces", "post_traces"):
            setter(self, key, tuple(x if isinstance(x, SynapseState) else SynapseState(*x)
                                    for x in getattr(self, key)))
        for key in ("on_pre", "on_post"):
            setter(self, key, _pairs(getattr(self, key), f"{where}: {key}"))
        if not (isinstance(self.bounds, (tuple, list)) and len(self.bounds) == 2
                and all(isinstance(b, str) for b in self.bounds)):
            raise ValueError(f"{where}: bounds must be two expressions (lower, upper)")
        setter(self, "bounds", tuple(self.bounds))
        if not isinstance(self.description, str) or len(self.description) > 2000:
            raise ValueError(f"{where}: description must be a string (at most 2000 "
                             f"characters)")
        for key in ("parameters", "pre_traces", "post_traces", "on_pre", "on_post"):
            if len(getattr(self, key)) > MAX_SYNAPSE_ITEMS:
                raise ValueError(f"{where}: more than {MAX_SYNAPSE_ITEMS} {key}")
        params = [p.name for p in self.parameters]
        pre = [x.name for x in self.pre_traces]
        post = [x.name for x in self.post_traces]
        taken = params + pre + post
        if len(set(taken)) != len(taken):
            raise ValueError(f"{where}: parameters and traces must have distinct names, got "
                             f"{taken}")
        for x in self.pre_traces + self.post_traces:
            if x.dynamics is None:
                raise ValueError(f"{where}: trace {x.name!r} needs its dynamics (a decay)")
        if not self.on_post and not self.on_pre:
            raise ValueError(f"{where}: give on_pre or on_post")
        sym = {n: sympy.Symbol(n, real=True) for n in taken}
        self_decay = []
        for x in self.pre_traces + self.post_traces:
            expr = _parse(x.dynamics, params + [x.name], where, f"dynamics of {x.name!r}")
            rate = _linear(expr, [sym[x.name]], where, f"the dynamics of {x.name!r}",
                           f"the trace {x.name!r}")[0]
            self_decay.append(rate)
        statements = {}
        for key, own, other in (("on_pre", pre, post), ("on_post", post, pre)):
            out = []
            for target, text in getattr(self, key):
                if target == _WEIGHT_TARGET:
                    expr = _parse(text, params + pre + post + [WEIGHT_SYMBOL], where,
                                  f"{key} update of w")
                    out.append((None, expr))
                elif target in own:
                    expr = _parse(text, params, where, f"{key} increment of {target!r}")
                    out.append((own.index(target), expr))
                else:
                    side = "presynaptic" if key == "on_pre" else "postsynaptic"
                    raise ValueError(f"{where}: {key} changes {target!r}, which is neither "
                                     f"'w' nor a {side} trace ({own})")
            statements[key] = out
        bounds = [_parse(b, params, where, f"bound {b!r}") for b in self.bounds]
        setter(self, "_compiled", {"rates": self_decay, "on_pre": statements["on_pre"],
                                   "on_post": statements["on_post"], "bounds": bounds,
                                   "parameters": params, "pre": pre, "post": post,
                                   "functions": {}})

    @property
    def parameter_names(self) -> Tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def pre_trace_names(self) -> Tuple[str, ...]:
        return tuple(x.name for x in self.pre_traces)

    @property
    def post_trace_names(self) -> Tuple[str, ...]:
        return tuple(x.name for x in self.post_traces)

    def weight_update(self, key: str, k: int):
        """The sympy expression :math:`f` of the ``k``-th statement of ``key``
        (``'on_pre'``/``'on_post'``) when it updates ``w``, else ``None``."""
        index, expr = self._compiled[key][k]
        return expr if index is None else None

    def weight_function(self, key: str, k: int, backend: str):
        """``f(*pre_traces, *post_traces, w, *parameters)`` of a weight statement."""
        cache = self._compiled["functions"]
        if (key, k, backend) not in cache:
            args = (list(self.pre_trace_names) + list(self.post_trace_names)
                    + [WEIGHT_SYMBOL] + list(self.parameter_names))
            cache[(key, k, backend)] = to_callable(self.weight_update(key, k), args, backend)
        return cache[(key, k, backend)]

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "parameters": [p.to_dict() for p in self.parameters],
                "pre_traces": [{"name": x.name, "dynamics": x.dynamics}
                               for x in self.pre_traces],
                "post_traces": [{"name": x.name, "dynamics": x.dynamics}
                                for x in self.post_traces],
                "on_pre": [list(p) for p in self.on_pre],
                "on_post": [list(p) for p in self.on_post], "bounds": list(self.bounds)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "PlasticityModel":
        """Inverse of :meth:`to_dict`; every field is checked (files are untrusted)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"plasticity definition: expected a mapping, got "
                             f"{type(data).__name__}")
        allowed = {"name", "description", "parameters", "pre_traces", "post_traces",
                   "on_pre", "on_post", "bounds"}
        extra = set(data) - allowed
        if extra:
            raise ValueError(f"unknown key(s) in plasticity definition: {sorted(extra)}")
        params = _parameters_from(data, PlasticityParameter, "plasticity definition")

        def traces(key):
            return tuple(_states_from(data, key, "plasticity definition"))

        def statements(key):
            items = [tuple(x) if isinstance(x, (list, tuple)) else x
                     for x in _sequence(data.get(key, ()), key, "plasticity definition")]
            return _pairs(items, f"plasticity definition: {key}")

        bounds = data.get("bounds", ("0", "w_max"))
        if not isinstance(bounds, (list, tuple)):
            raise ValueError("plasticity definition: bounds must be a list of two expressions")
        return cls(data.get("name"), tuple(params), traces("pre_traces"), traces("post_traces"),
                   statements("on_pre"), statements("on_post"), tuple(bounds),
                   data.get("description", ""))


#: Pair-based additive STDP with traces (Song, Miller and Abbott 2000), the rule of
#: Brian2's ``examples/synapses/STDP.py``.
ADDITIVE_STDP = PlasticityModel(
    "additive_stdp",
    (PlasticityParameter("tau_pre", "ms", "presynaptic trace time constant", "positive"),
     PlasticityParameter("tau_post", "ms", "postsynaptic trace time constant", "positive"),
     PlasticityParameter("d_pre", "w", "presynaptic trace increment"),
     PlasticityParameter("d_post", "w", "postsynaptic trace increment"),
     PlasticityParameter("w_max", "w", "largest weight", "positive")),
    (SynapseState("a_pre", "-a_pre/tau_pre"),), (SynapseState("a_post", "-a_post/tau_post"),),
    (("a_pre", "d_pre"), ("w", "a_post")), (("a_post", "d_post"), ("w", "a_pre")),
    ("0", "w_max"),
    "pair-based additive STDP with traces: a presynaptic spike adds d_pre to a_pre and "
    "a_post to w, a postsynaptic spike adds d_post to a_post and a_pre to w, w clipped to "
    "[0, w_max]")

_BUILTIN_PLASTICITY = {ADDITIVE_STDP.name: ADDITIVE_STDP}


class Plasticity:
    r"""A plasticity rule on a projection: a :class:`PlasticityModel` with parameter values
    (numbers in the parameters' units; ``'w'`` parameters in the weights' unit).

    The numbers the backends use: :meth:`decay` (:math:`e^{-\lambda\Delta t}` per trace,
    presynaptic then postsynaptic), :meth:`increments` (per statement), :meth:`bounds`.
    Parameter values read as attributes (``rule.tau_pre``)."""

    __slots__ = ("model", "_values")

    def __init__(self, model: PlasticityModel, **parameters):
        if not isinstance(model, PlasticityModel):
            raise TypeError(f"model must be a PlasticityModel, got {type(model).__name__}")
        unknown = set(parameters) - set(model.parameter_names)
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)} for plasticity model "
                            f"{model.name!r}; known: {list(model.parameter_names)}")
        values = {}
        for p in model.parameters:
            if p.name not in parameters and p.default is None:
                raise TypeError(f"plasticity model {model.name!r} needs parameter "
                                f"{p.name!r} ({p.description}, {p.unit})")
            given = parameters.get(p.name, p.default)
            value = (as_scalar(given, "ms", f"{model.name}.{p.name}") if p.unit == "ms"
                     else float(given) if isinstance(given, (int, float, np.floating))
                     and not isinstance(given, bool) else None)
            if value is None:
                raise ValueError(f"{model.name}.{p.name} must be a number, got {given!r}")
            if not math.isfinite(value):
                raise ValueError(f"{model.name}.{p.name} must be finite, got {value}")
            if p.constraint == "positive" and not value > 0:
                raise ValueError(f"{model.name}.{p.name} must be > 0, got {value}")
            if p.constraint == "nonnegative" and not value >= 0:
                raise ValueError(f"{model.name}.{p.name} must be >= 0, got {value}")
            values[p.name] = value
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "_values", values)
        lo, hi = self.bounds()
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"{model.name}: the bounds {model.bounds} give [{lo}, {hi}], "
                             f"not a finite interval")
        for rate in self._numbers("rates"):
            if not (math.isfinite(rate) and rate >= 0):
                raise ValueError(f"{model.name}: a trace's decay rate is {rate}, not a finite "
                                 f"number >= 0 (the traces must decay)")

    def _numbers(self, key):
        compiled = self.model._compiled
        args = [sympy.Symbol(n, real=True) for n in compiled["parameters"]]
        subs = dict(zip(args, self.parameter_values))
        if key == "rates":
            return [float(-r.xreplace(subs)) for r in compiled["rates"]]
        if key == "bounds":
            return [float(b.xreplace(subs)) for b in compiled["bounds"]]
        return [(index, float(expr.xreplace(subs)) if index is not None else None)
                for index, expr in compiled[key]]

    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    @property
    def parameters(self) -> Dict[str, float]:
        return dict(self._values)

    @property
    def parameter_values(self) -> Tuple[float, ...]:
        return tuple(self._values[n] for n in self.model.parameter_names)

    def trace_decay(self, dt: float) -> Tuple[float, ...]:
        r""":math:`e^{-\lambda\Delta t}` of every trace (presynaptic, then postsynaptic)."""
        return tuple(math.exp(-rate * dt) for rate in self._numbers("rates"))

    def statements(self, key: str):
        """``[(trace index or None for w, increment or None)]`` of ``on_pre``/``on_post``."""
        return self._numbers(key)

    def bounds(self) -> Tuple[float, float]:
        lo, hi = self._numbers("bounds")
        return lo, hi

    def to_dict(self) -> Dict:
        out = {"model": self.model.name, "parameters": dict(self._values)}
        if _BUILTIN_PLASTICITY.get(self.model.name) != self.model:
            out["definition"] = self.model.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "Plasticity":
        """Inverse of :meth:`to_dict`; also reads the :class:`STDP` form (its five
        values). A ``definition`` is checked as any definition and may not redefine a
        built-in model."""
        if isinstance(data, Mapping) and set(data) == set(STDP._FIELDS):
            return STDP.from_dict(data)
        if not isinstance(data, Mapping):
            raise ValueError(f"plasticity: expected a mapping, got {type(data).__name__}")
        extra = set(data) - {"model", "parameters", "definition"}
        if extra:
            raise ValueError(f"unknown key(s) in plasticity: {sorted(extra)}")
        parameters = data.get("parameters", {})
        if not isinstance(parameters, Mapping):
            raise ValueError("plasticity: parameters must be a mapping")
        if "definition" in data:
            model = _carried_definition(data, PlasticityModel, _BUILTIN_PLASTICITY,
                                        "plasticity", "rule's")
        else:
            model = _BUILTIN_PLASTICITY.get(data.get("model"))
            if model is None:
                raise ValueError(f"unknown plasticity model {data.get('model')!r} (and no "
                                 f"definition); known: {sorted(_BUILTIN_PLASTICITY)}")
        return cls(model, **{str(k): v for k, v in parameters.items()})

    def __eq__(self, other):
        if not isinstance(other, Plasticity):
            return NotImplemented
        return self.model == other.model and self._values == other._values

    def __hash__(self):
        return hash((self.model.name, tuple(sorted(self._values.items()))))

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Plasticity({self.model.name}, {params})"


class STDP(Plasticity):
    r"""Pair-based additive spike-timing-dependent plasticity with traces, on a
    projection's weights (Song, Miller and Abbott 2000, as Brian2's
    ``examples/synapses/STDP.py`` writes it): the :data:`ADDITIVE_STDP` definition with
    its five values.

    A presynaptic trace :math:`a_{pre}` per source neuron and a postsynaptic trace
    :math:`a_{post}` per target neuron (both in the weight's unit) decay as
    :math:`\dot a_{pre} = -a_{pre}/\tau_{pre}`, :math:`\dot a_{post} = -a_{post}/
    \tau_{post}` (exactly). A presynaptic spike arriving at synapse :math:`(i \to j)`
    (after the projection's delay; it is transmitted with the weight it had before)
    does :math:`a_{pre,i} \mathrel{+}= \Delta_{pre}`,
    :math:`w_{ij} \leftarrow \operatorname{clip}(w_{ij} + a_{post,j}, 0, w_{max})`;
    a postsynaptic spike of :math:`j` does :math:`a_{post,j} \mathrel{+}= \Delta_{post}`,
    :math:`w_{ij} \leftarrow \operatorname{clip}(w_{ij} + a_{pre,i}, 0, w_{max})`.

    Brian2's example: ``tau_pre = tau_post = 20`` ms, ``w_max = 0.01`` (its ``gmax``),
    ``d_pre = 0.01 w_max``, ``d_post = -1.05 d_pre tau_pre/tau_post``
    (:meth:`brian2_example`). Times in ms, the rest in the synapse model's unit. The
    projection's delay must be one value >= 1 (a spike's arrival and the postsynaptic
    spikes are then ordered as in Brian2's ``synapses`` slot: post before pre within one
    step). The weights change in the forward pass (``NetworkState.plasticity``) and are
    not differentiated.
    """

    _FIELDS = ("tau_pre", "tau_post", "d_pre", "d_post", "w_max")

    def __init__(self, tau_pre, tau_post, d_pre, d_post, w_max):
        super().__init__(ADDITIVE_STDP, tau_pre=tau_pre, tau_post=tau_post, d_pre=d_pre,
                         d_post=d_post, w_max=w_max)

    @classmethod
    def brian2_example(cls, w_max: float = 0.01) -> "STDP":
        """The parameters of Brian2's ``examples/synapses/STDP.py``."""
        d_pre = 0.01 * w_max
        return cls(20.0, 20.0, d_pre, -d_pre * 1.05, w_max)

    def decay(self, dt: float) -> Tuple[float, float]:
        return math.exp(-dt / self.tau_pre), math.exp(-dt / self.tau_post)

    def to_dict(self) -> Dict[str, float]:
        return {k: self._values[k] for k in self._FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping) -> "STDP":
        if not isinstance(data, Mapping) or set(data) != set(cls._FIELDS):
            raise ValueError(f"stdp: expected {list(cls._FIELDS)}, got {data!r}")
        return cls(**{k: data[k] for k in cls._FIELDS})

    def __repr__(self):
        return "STDP(" + ", ".join(f"{k}={v}" for k, v in self.to_dict().items()) + ")"
