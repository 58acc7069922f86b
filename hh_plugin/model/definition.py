r"""Declarative description of a conductance-based (Hodgkin-Huxley type) neuron model.

A :class:`ModelDefinition` lists parameters (with units and defaults), gating
variables and ionic channels (a conductance expression and a reversal potential).
Every backend is generated from it, so a new model (Wang-Buzsaki, Morris-Lecar,
Traub-Miles, a user's own) is a new ``ModelDefinition``, not new backend code.

The membrane equation is always

.. math::
    C \frac{dV}{dt} = -\sum_c g_c(x)\,(V - E_c) + I.

A gate :math:`x` (:class:`GateDefinition`) is one of

* **kinetic**, from opening and closing rates (1/ms) and an optional rate factor
  :math:`\phi` (Wang-Buzsaki's ``phi``, a temperature factor
  :math:`Q_{10}^{(T - T_{ref})/10}`):
  :math:`\dot x = \phi\,(\alpha_x(V)(1-x) - \beta_x(V)\,x)`;
* **relaxing** to a steady state with a time constant (ms):
  :math:`\dot x = \phi\,(x_\infty(V) - x)/\tau_x(V)` (Morris-Lecar's ``W``);
* **instantaneous**, no state variable: :math:`x = x_\infty(V)` or
  :math:`x = \alpha_x/(\alpha_x + \beta_x)` (Wang-Buzsaki's ``m``, Morris-Lecar's
  ``M``), evaluated at the old :math:`V` of each step and held fixed during it.

Rate expressions use ``V`` (mV), the model's parameters (in their units) and the
functions ``exp``, ``exprel``, ``tanh``, ``cosh``, ``log``, ``sqrt``.

Each dynamic gate is advanced by the exponential Euler step with the decay rate
:math:`\lambda_x` of its linear part (:math:`\phi(\alpha_x+\beta_x)` or
:math:`\phi/\tau_x`): :math:`x' = x + \Delta t\,\operatorname{exprel}(-\lambda_x
\Delta t)\,\dot x`. See :mod:`hh_plugin.torch.functional.hh` for the whole step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np
import sympy

from .expressions import VOLTAGE_SYMBOL, evaluate, parse, to_callable
from .integrators import DEFAULT_METHOD, check_method

#: Units a parameter may carry; the plugin's unit system is mV, ms, mS, uF, uA.
PARAMETER_UNITS = ("mV", "mS", "uF", "uA", "ms", "1/ms", "1")
#: Parameter constraints a definition may declare.
CONSTRAINTS = (None, "positive", "nonnegative", "nonzero")
#: Names the backends reserve (input current, spike options, time).
RESERVED_NAMES = ("I", "t", "dt", "i", "alpha", "width", "V_reset", "V_scale", "spk_reset",
                  "z", "method")
#: Range of V (mV) over which every rate must be finite (checked when a model is defined).
VOLTAGE_CHECK_RANGE = (-100.0, 60.0)

GATE_KINDS = ("kinetic", "relaxing", "instantaneous")


def _is_identifier(name) -> bool:
    """An ASCII identifier not starting with ``_`` (Python folds other letters by NFKC:
    ``'Ｖ'`` and ``'𝐕'`` would be read as ``'V'``)."""
    return (isinstance(name, str) and name.isascii() and name.isidentifier()
            and not name.startswith("_"))


@dataclass(frozen=True)
class ParameterDefinition:
    """One model parameter: name, default, unit (one of :data:`PARAMETER_UNITS`), meaning.

    ``constraint`` is ``'positive'`` (> 0), ``'nonnegative'`` (>= 0), ``'nonzero'`` or ``None``.
    """

    name: str
    default: float
    unit: str
    description: str = ""
    constraint: Optional[str] = None

    def __post_init__(self):
        if not _is_identifier(self.name):
            raise ValueError(f"parameter name {self.name!r} is not a valid identifier "
                             f"(ASCII letters, digits and _)")
        if self.unit not in PARAMETER_UNITS:
            raise ValueError(f"parameter {self.name!r}: unit {self.unit!r} not in {PARAMETER_UNITS}")
        if self.constraint not in CONSTRAINTS:
            raise ValueError(f"parameter {self.name!r}: constraint {self.constraint!r} not in "
                             f"{CONSTRAINTS}")
        if isinstance(self.default, bool) or not isinstance(self.default, (int, float)):
            raise ValueError(f"parameter {self.name!r}: default must be a number, "
                             f"got {self.default!r}")
        if not math.isfinite(self.default):
            raise ValueError(f"parameter {self.name!r}: default {self.default!r} is not finite")
        object.__setattr__(self, "default", float(self.default))


@dataclass(frozen=True)
class GateDefinition:
    r"""A gating variable (see the module docstring for the three kinds).

    Give either ``alpha`` and ``beta`` (1/ms) or ``x_inf`` (and ``tau`` in ms for a
    dynamic gate); ``instantaneous=True`` makes the gate a function of ``V`` without a
    state variable; ``rate_factor`` (dimensionless, of parameters only) multiplies the
    derivative of a dynamic gate.

    Examples:
        >>> GateDefinition("h", alpha="0.07*exp(-(V + 65)/20)", beta="1/(1 + exp(-(V + 35)/10))")
        >>> GateDefinition.relaxing("W", x_inf="0.5*(1 + tanh((V - V3)/V4))",
        ...                         tau="1/(phi*cosh((V - V3)/(2*V4)))")
        >>> GateDefinition.instantaneous("M", x_inf="0.5*(1 + tanh((V - V1)/V2))")
    """

    name: str
    alpha: Optional[str] = None
    beta: Optional[str] = None
    x_inf: Optional[str] = None
    tau: Optional[str] = None
    is_instantaneous: bool = False
    rate_factor: Optional[str] = None

    def __post_init__(self):
        if not _is_identifier(self.name):
            raise ValueError(f"gate name {self.name!r} is not a valid identifier "
                             f"(ASCII letters, digits and _)")
        rates = (self.alpha is not None, self.beta is not None)
        if rates[0] != rates[1]:
            raise ValueError(f"gate {self.name!r}: give both alpha and beta, or neither")
        has_rates, has_inf = rates[0], self.x_inf is not None
        if has_rates == has_inf:
            raise ValueError(f"gate {self.name!r}: give either alpha and beta, or x_inf "
                             f"(with tau for a dynamic gate)")
        if self.is_instantaneous:
            if self.tau is not None or self.rate_factor is not None:
                raise ValueError(f"instantaneous gate {self.name!r} takes no tau or rate_factor")
        elif has_inf and self.tau is None:
            raise ValueError(f"gate {self.name!r}: x_inf needs tau (or instantaneous=True)")
        elif has_rates and self.tau is not None:
            raise ValueError(f"gate {self.name!r}: tau goes with x_inf, not with alpha and beta")

    @property
    def kind(self) -> str:
        """``'kinetic'`` (alpha, beta), ``'relaxing'`` (x_inf, tau) or ``'instantaneous'``."""
        if self.is_instantaneous:
            return "instantaneous"
        return "kinetic" if self.alpha is not None else "relaxing"

    @classmethod
    def relaxing(cls, name: str, x_inf: str, tau: str,
                 rate_factor: Optional[str] = None) -> "GateDefinition":
        r"""A gate :math:`\dot x = \phi (x_\infty(V) - x)/\tau_x(V)` (``tau`` in ms)."""
        return cls(name, x_inf=x_inf, tau=tau, rate_factor=rate_factor)

    #: Former name of :meth:`relaxing`.
    from_steady_state = relaxing

    @classmethod
    def instantaneous(cls, name: str, x_inf: Optional[str] = None, alpha: Optional[str] = None,
                      beta: Optional[str] = None) -> "GateDefinition":
        r"""A gate without state: :math:`x = x_\infty(V)` or :math:`\alpha/(\alpha+\beta)`."""
        return cls(name, alpha=alpha, beta=beta, x_inf=x_inf, is_instantaneous=True)

    def to_dict(self) -> Dict[str, Any]:
        out = {"name": self.name, "kind": self.kind}
        for key in ("alpha", "beta", "x_inf", "tau", "rate_factor"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class ChannelDefinition:
    """An ionic current :math:`g(x)\\,(V - E)`: conductance expression (mS) and reversal parameter."""

    name: str
    conductance: str
    reversal: str

    def __post_init__(self):
        if not _is_identifier(self.name):
            raise ValueError(f"channel name {self.name!r} is not a valid identifier "
                             f"(ASCII letters, digits and _)")


@dataclass(frozen=True)
class VoltageDistribution:
    r"""How the membrane potential (mV) starts by default.

    ``kind`` is ``'constant'`` (``values = (V0,)``), ``'uniform'`` (``(low, high)``)
    or ``'normal'`` (``(mean, std)``). Build with :meth:`constant`, :meth:`uniform`,
    :meth:`normal`.
    """

    kind: str
    values: Tuple[float, ...]

    def __post_init__(self):
        expected = {"constant": 1, "uniform": 2, "normal": 2}
        if self.kind not in expected:
            raise ValueError(f"initial voltage kind {self.kind!r} not in {sorted(expected)}")
        values = tuple(float(v) for v in self.values)
        if len(values) != expected[self.kind] or not all(map(math.isfinite, values)):
            raise ValueError(f"initial voltage {self.kind}: expected {expected[self.kind]} "
                             f"finite value(s), got {self.values!r}")
        if self.kind == "uniform" and not values[0] < values[1]:
            raise ValueError(f"initial voltage uniform: low < high needed, got {values}")
        if self.kind == "normal" and not values[1] >= 0:
            raise ValueError(f"initial voltage normal: std >= 0 needed, got {values[1]}")
        object.__setattr__(self, "values", values)

    @classmethod
    def constant(cls, V0: float) -> "VoltageDistribution":
        return cls("constant", (V0,))

    @classmethod
    def uniform(cls, low: float, high: float) -> "VoltageDistribution":
        return cls("uniform", (low, high))

    @classmethod
    def normal(cls, mean: float, std: float) -> "VoltageDistribution":
        return cls("normal", (mean, std))

    @classmethod
    def coerce(cls, value) -> "VoltageDistribution":
        """Accept a distribution, a number (constant) or a ``(low, high)`` pair (uniform)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls.constant(value)
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls.uniform(*value)
        raise ValueError(f"initial voltage must be a VoltageDistribution, a number (mV) or a "
                         f"(low, high) pair, got {value!r}")

    def draw(self, shape, rng: np.random.Generator) -> np.ndarray:
        """Values of the given shape, drawn with ``rng`` (numpy, float64)."""
        if self.kind == "constant":
            return np.full(shape, self.values[0])
        if self.kind == "uniform":
            return rng.uniform(self.values[0], self.values[1], size=shape)
        return rng.normal(self.values[0], self.values[1], size=shape)


def steady_state(intermediates: Mapping[str, Any]):
    r""":math:`x_\infty` of a gate from its (evaluated or symbolic) intermediates:
    ``x_inf`` itself, or :math:`\alpha/(\alpha+\beta)`. Numbers, arrays, tensors and sympy
    expressions alike; the one place every backend takes a steady state or an
    instantaneous gate's value from."""
    if "x_inf" in intermediates:
        return intermediates["x_inf"]
    return intermediates["alpha"] / (intermediates["alpha"] + intermediates["beta"])


@dataclass(frozen=True)
class GateTerms:
    r"""Symbolic pieces of one gate, in plugin units (V in mV, t in ms).

    ``intermediates``: named expressions of ``V`` and parameters (the rates
    ``alpha``/``beta`` or ``x_inf``/``tau``), in order. ``derivative``: :math:`\dot x`
    and ``decay``: :math:`\lambda_x`, written with those intermediates' symbols
    (``<gate>__<name>``), ``x`` and parameters; ``value`` for an instantaneous gate;
    ``factor``: the parsed rate factor (of parameters only) or ``None``.
    """

    gate: GateDefinition
    intermediates: Tuple[Tuple[str, sympy.Expr], ...]
    derivative: Optional[sympy.Expr] = None
    decay: Optional[sympy.Expr] = None
    value: Optional[sympy.Expr] = None
    factor: Optional[sympy.Expr] = None

    def intermediate_symbol(self, name: str) -> sympy.Symbol:
        return sympy.Symbol(f"{self.gate.name}__{name}", real=True)


@dataclass(frozen=True, repr=False)
class ModelDefinition:
    """A complete HH-type model. See the module docstring for the equations.

    ``threshold`` and ``capacitance`` name the parameters used as spike threshold and
    membrane capacitance. ``initial_voltage`` (a :class:`VoltageDistribution`, a number
    or a ``(low, high)`` pair) and ``initial_gates`` (constants by gate name; other
    gates start at their steady state) give the default initial state;
    ``initial_voltage_range`` is the range that ``V_init='uniform'`` draws from.
    ``max_dt`` (ms) is the longest step for which the model's exponential Euler step is
    accurate (a longer step is refused by every backend, naming the accuracy problem);
    ``max_dt_by_method`` (``{method: ms}``) the same for other integration methods
    (:mod:`hh_plugin.model.integrators`), where it was measured (:meth:`max_step`). It is
    a property of the code that ships the model, not of its equations: it is not part of
    :meth:`to_dict` and not compared by ``==``.
    ``area`` (um², or ``None``) is the membrane patch the parameters are written for
    (1 cm² = 1e8 um² for values per cm²): per-area quantities (``35*msiemens/cm**2``)
    are converted with it (:mod:`hh_plugin.model.quantities`). It changes no equation and
    no value, so two definitions that differ only in ``area`` compare equal.
    """

    name: str
    parameters: Tuple[ParameterDefinition, ...]
    gates: Tuple[GateDefinition, ...]
    channels: Tuple[ChannelDefinition, ...]
    threshold: str = "V_th"
    capacitance: str = "C"
    initial_voltage: Any = None
    initial_gates: Any = ()
    initial_voltage_range: Tuple[float, float] = (-70.0, -60.0)
    max_dt: float = 0.1
    reference: str = ""
    description: str = ""
    max_dt_by_method: Any = field(default=(), compare=False, hash=False)
    area: Optional[float] = field(default=None, compare=False)
    # not an __init__ argument: dataclasses.replace(model, ...) gets a fresh cache, never the
    # compiled functions and torch types of the model it was derived from
    _cache: dict = field(default_factory=dict, init=False, compare=False, repr=False,
                         hash=False)

    def __post_init__(self):
        set_ = object.__setattr__
        if not _is_identifier(self.name):
            raise ValueError(f"model name {self.name!r} is not a valid identifier "
                             f"(ASCII letters, digits and _)")
        for attr, kind in (("parameters", ParameterDefinition), ("gates", GateDefinition),
                           ("channels", ChannelDefinition)):
            items = tuple(getattr(self, attr))
            if not all(isinstance(x, kind) for x in items):
                raise TypeError(f"model {self.name!r}: {attr} must be {kind.__name__}s")
            set_(self, attr, items)
        names = self.parameter_names
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"model {self.name!r}: duplicate parameter names {sorted(duplicates)}")
        for key, role in ((self.threshold, "threshold"), (self.capacitance, "capacitance")):
            if key not in names:
                raise ValueError(f"model {self.name!r}: the {role} parameter {key!r} is not "
                                 f"a parameter (parameters: {list(names)})")
        if self.parameter(self.capacitance).unit != "uF":
            raise ValueError(f"model {self.name!r}: capacitance {self.capacitance!r} must be in uF")
        if self.parameter(self.threshold).unit != "mV":
            raise ValueError(f"model {self.name!r}: threshold {self.threshold!r} must be in mV")
        all_gates = tuple(g.name for g in self.gates)
        taken = {VOLTAGE_SYMBOL, *names}
        for gate in all_gates:
            if gate in taken:
                raise ValueError(f"model {self.name!r}: gate name {gate!r} clashes with a "
                                 f"parameter, another gate or V")
            taken.add(gate)
        reserved = set(RESERVED_NAMES) & taken
        if reserved:
            raise ValueError(f"model {self.name!r}: names {sorted(reserved)} are reserved "
                             f"(input current, time, spike options)")
        channel_names = [c.name for c in self.channels]
        if len(set(channel_names)) != len(channel_names):
            raise ValueError(f"model {self.name!r}: duplicate channel names")
        if not self.channels:
            raise ValueError(f"model {self.name!r}: at least one channel is needed")
        for ch in self.channels:
            if ch.reversal not in names or self.parameter(ch.reversal).unit != "mV":
                raise ValueError(f"channel {ch.name!r}: reversal {ch.reversal!r} is not a "
                                 f"parameter in mV")
        if not (isinstance(self.max_dt, (int, float)) and 0 < self.max_dt < float("inf")):
            raise ValueError(f"model {self.name!r}: max_dt must be a positive finite number "
                             f"of ms, got {self.max_dt!r}")
        by_method = dict(self.max_dt_by_method)
        for method, limit in by_method.items():
            check_method(method)
            if isinstance(limit, bool) or not isinstance(limit, (int, float)) \
                    or not 0 < limit < float("inf"):
                raise ValueError(f"model {self.name!r}: max_dt_by_method[{method!r}] must be "
                                 f"a positive finite number of ms, got {limit!r}")
        set_(self, "max_dt_by_method", tuple((m, float(v)) for m, v in by_method.items()))
        if self.area is not None:
            if isinstance(self.area, bool) or not isinstance(self.area, (int, float)) or \
                    not 0 < self.area < float("inf"):
                raise ValueError(f"model {self.name!r}: area must be a positive finite "
                                 f"number of um2 (or None), got {self.area!r}")
            set_(self, "area", float(self.area))
        low_high = tuple(float(v) for v in self.initial_voltage_range)
        VoltageDistribution.uniform(*low_high)  # validates
        set_(self, "initial_voltage_range", low_high)
        set_(self, "initial_voltage", VoltageDistribution.coerce(
            low_high if self.initial_voltage is None else self.initial_voltage))
        initial_gates = dict(self.initial_gates)
        for gate, value in initial_gates.items():
            if gate not in self.gate_names:
                raise ValueError(f"model {self.name!r}: initial value for {gate!r}, which is "
                                 f"not a dynamic gate ({list(self.gate_names)})")
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"model {self.name!r}: initial {gate} = {value!r} is not "
                                 f"a number in [0, 1]")
        set_(self, "initial_gates", tuple((g, float(v)) for g, v in initial_gates.items()))
        # Check every expression in plain floating point before sympy sees it, then parse
        # and check everything once, so a broken definition fails when it is made.
        self._check_rates_in_floating_point()
        self.gate_terms
        self.conductance_expressions
        self._check_finite_rates()

    def max_step(self, method: str = DEFAULT_METHOD) -> float:
        """The longest accurate step (ms) of ``method``: ``max_dt_by_method[method]`` where
        given, else ``max_dt`` (the exponential Euler bound)."""
        return dict(self.max_dt_by_method).get(check_method(method), self.max_dt)

    # ------------------------------------------------------------------ names
    @property
    def parameter_names(self) -> Tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def gate_names(self) -> Tuple[str, ...]:
        """Names of the dynamic gates, which are state variables."""
        return tuple(g.name for g in self.gates if not g.is_instantaneous)

    @property
    def instantaneous_gate_names(self) -> Tuple[str, ...]:
        return tuple(g.name for g in self.gates if g.is_instantaneous)

    @property
    def state_names(self) -> Tuple[str, ...]:
        """State variables in order: ``V`` then the dynamic gates."""
        return (VOLTAGE_SYMBOL,) + self.gate_names

    @property
    def defaults(self) -> Dict[str, float]:
        return {p.name: p.default for p in self.parameters}

    @property
    def units(self) -> Dict[str, str]:
        return {p.name: p.unit for p in self.parameters}

    def parameter(self, name: str) -> ParameterDefinition:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"model {self.name!r} has no parameter {name!r}")

    def gate(self, name: str) -> GateDefinition:
        for g in self.gates:
            if g.name == name:
                return g
        raise KeyError(f"model {self.name!r} has no gate {name!r}")

    # ------------------------------------------------------------ expressions
    @property
    def gate_terms(self) -> Dict[str, GateTerms]:
        """``{gate: GateTerms}`` for every gate, in declaration order (see :class:`GateTerms`)."""
        if "gate_terms" not in self._cache:
            params = set(self.parameter_names)
            of_v = params | {VOLTAGE_SYMBOL}
            terms = {}
            for g in self.gates:
                if g.alpha is not None:
                    inter = (("alpha", parse(g.alpha, of_v)), ("beta", parse(g.beta, of_v)))
                elif g.is_instantaneous:
                    inter = (("x_inf", parse(g.x_inf, of_v)),)
                else:
                    inter = (("x_inf", parse(g.x_inf, of_v)), ("tau", parse(g.tau, of_v)))
                base = GateTerms(g, inter)
                sym = {name: base.intermediate_symbol(name) for name, _ in inter}
                if g.is_instantaneous:
                    terms[g.name] = GateTerms(g, inter, value=steady_state(sym))
                    continue
                x = sympy.Symbol(g.name, real=True)
                if g.alpha is not None:
                    derivative = sym["alpha"] * (1 - x) - sym["beta"] * x
                    decay = sym["alpha"] + sym["beta"]
                else:
                    derivative = (sym["x_inf"] - x) / sym["tau"]
                    decay = 1 / sym["tau"]
                factor = None if g.rate_factor is None else parse(g.rate_factor, params)
                if factor is not None:
                    derivative, decay = factor * derivative, factor * decay
                terms[g.name] = GateTerms(g, inter, derivative, decay, factor=factor)
            self._cache["gate_terms"] = terms
        return self._cache["gate_terms"]

    @property
    def steady_state_expressions(self) -> Dict[str, sympy.Expr]:
        r"""``{gate: x_inf}`` for every gate as expressions of ``V`` and parameters."""
        out = {}
        for name, t in self.gate_terms.items():
            out[name] = steady_state(dict(t.intermediates))
        return out

    @property
    def conductance_expressions(self) -> Dict[str, sympy.Expr]:
        """``{channel: g}`` as sympy expressions of gates and parameters, in mS."""
        if "conductances" not in self._cache:
            allowed = {g.name for g in self.gates} | set(self.parameter_names) | {VOLTAGE_SYMBOL}
            self._cache["conductances"] = {
                c.name: parse(c.conductance, allowed) for c in self.channels}
        return self._cache["conductances"]

    def compiled(self, backend: str) -> "CompiledModel":
        """Callables of this model for ``'numpy'`` or ``'torch'`` (cached)."""
        key = ("compiled", backend)
        if key not in self._cache:
            self._cache[key] = CompiledModel.build(self, backend)
        return self._cache[key]

    def _check_rates_in_floating_point(self) -> None:
        r"""Every expression checked before any symbolic computation
        (:func:`~hh_plugin.model.expressions.check`: ASCII, syntax, names, bounded numbers
        and exponents), then evaluated in plain float64 numpy arithmetic with the default
        parameters over :data:`VOLTAGE_CHECK_RANGE` (mV, 1601 points): rates (1/ms),
        steady states and time constants (ms, also > 0) finite and real, rate factors
        finite and > 0, conductances (mS) finite and real for gate values 0, 0.5 and 1.
        A failure is a ``ValueError`` naming the model, the expression and the reason."""
        V = np.linspace(*VOLTAGE_CHECK_RANGE, 1601)
        params = self.defaults
        of_v = {**params, VOLTAGE_SYMBOL: V}
        span = f"{VOLTAGE_CHECK_RANGE[0]:g}..{VOLTAGE_CHECK_RANGE[1]:g} mV"
        for g in self.gates:
            for name in ("alpha", "beta", "x_inf", "tau"):
                text = getattr(g, name)
                if text is None:
                    continue
                value = np.broadcast_to(evaluate(text, of_v), V.shape)
                bad = ~np.isfinite(value)
                if name == "tau":
                    bad |= ~(value > 0)
                if bad.any():
                    raise ValueError(
                        f"model {self.name!r}: {name} of gate {g.name!r} is not "
                        f"{'positive and ' if name == 'tau' else ''}finite at "
                        f"V = {V[bad][0]:g} mV with the default parameters (NaN, infinite "
                        f"or not real: {text!r}); rates must be finite real numbers over "
                        f"{span} (write removable singularities with exprel)")
            if g.rate_factor is not None:
                value = float(evaluate(g.rate_factor, params))
                if not (math.isfinite(value) and value > 0):
                    raise ValueError(f"model {self.name!r}: rate factor of gate {g.name!r} "
                                     f"({g.rate_factor!r}) is {value} with the default "
                                     f"parameters (must be > 0)")
        for gate_value in (0.0, 0.5, 1.0):
            values = {**of_v, **{g.name: gate_value for g in self.gates}}
            for c in self.channels:
                value = np.broadcast_to(evaluate(c.conductance, values), V.shape)
                bad = ~np.isfinite(value)
                if bad.any():
                    raise ValueError(
                        f"model {self.name!r}: conductance of channel {c.name!r} "
                        f"({c.conductance!r}) is not finite at V = {V[bad][0]:g} mV with "
                        f"gate values {gate_value:g} and the default parameters (NaN, "
                        f"infinite or not real)")

    def _check_finite_rates(self) -> None:
        """Every rate, steady state and time constant finite over -100..+60 mV (defaults)."""
        V = np.linspace(*VOLTAGE_CHECK_RANGE, 1601)
        compiled = self.compiled("numpy")
        defaults = self.defaults
        with np.errstate(all="ignore"):
            for gate, funcs in compiled.intermediates.items():
                for name, (fn, args) in funcs.items():
                    kw = {a: (V if a == VOLTAGE_SYMBOL else defaults[a]) for a in args}
                    value = np.broadcast_to(np.asarray(fn(**kw), dtype=float), V.shape)
                    bad = ~np.isfinite(value)
                    if name == "tau":
                        bad |= ~(value > 0)
                    if bad.any():
                        raise ValueError(
                            f"model {self.name!r}: {name} of gate {gate!r} is not "
                            f"{'positive and ' if name == 'tau' else ''}finite at "
                            f"V = {V[bad][0]:g} mV (with the default parameters); rates must "
                            f"be finite over {VOLTAGE_CHECK_RANGE[0]:g}..{VOLTAGE_CHECK_RANGE[1]:g}"
                            f" mV (write removable singularities with exprel)")
            for gate, (fn, args) in compiled.factors.items():
                kw = {a: defaults[a] for a in args}
                value = float(fn(**kw))
                if not (math.isfinite(value) and value > 0):
                    raise ValueError(f"model {self.name!r}: rate factor of gate {gate!r} is "
                                     f"{value} with the default parameters (must be > 0)")

    # ------------------------------------------------------------- conversion
    def to_dict(self) -> Dict[str, Any]:
        """A JSON-compatible description from which :meth:`from_dict` rebuilds the model
        (``area``, in um², only when the model declares one)."""
        out = {
            "name": self.name,
            "parameters": [{"name": p.name, "default": p.default, "unit": p.unit,
                            "description": p.description, "constraint": p.constraint}
                           for p in self.parameters],
            "gates": [g.to_dict() for g in self.gates],
            "channels": [{"name": c.name, "conductance": c.conductance, "reversal": c.reversal}
                         for c in self.channels],
            "threshold": self.threshold, "capacitance": self.capacitance,
            "initial_voltage": {"kind": self.initial_voltage.kind,
                                "values": list(self.initial_voltage.values)},
            "initial_gates": dict(self.initial_gates),
            "initial_voltage_range": list(self.initial_voltage_range),
            "max_dt": self.max_dt, "reference": self.reference,
            "description": self.description,
        }
        if self.area is not None:
            out["area"] = self.area
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelDefinition":
        """Rebuild (and fully validate) a model from :meth:`to_dict`'s output.

        The data may come from an untrusted file: expressions are parsed without
        evaluation (:func:`hh_plugin.model.expressions.parse`), and every field is checked.
        """
        def need(mapping, key, types, where):
            if not isinstance(mapping, Mapping) or key not in mapping:
                raise ValueError(f"model definition: {where} lacks {key!r}")
            value = mapping[key]
            if isinstance(value, bool) or not isinstance(value, types):  # no field is a bool
                raise ValueError(f"model definition: {where}.{key} has the wrong type "
                                 f"({type(value).__name__})")
            return value

        def check_keys(mapping, allowed, where):
            if not isinstance(mapping, Mapping):
                raise ValueError(f"model definition: {where} must be a mapping")
            extra = set(mapping) - set(allowed)
            if extra:
                raise ValueError(f"model definition: unknown key(s) {sorted(extra)} in {where}")

        top = ("name", "parameters", "gates", "channels", "threshold", "capacitance",
               "initial_voltage", "initial_gates", "initial_voltage_range", "max_dt",
               "reference", "description", "area")
        check_keys(data, top, "the definition")
        limit = 256
        params, gates, channels = [], [], []
        for item in _bounded_list(need(data, "parameters", list, "definition"), limit):
            check_keys(item, ("name", "default", "unit", "description", "constraint"),
                       "a parameter")
            params.append(ParameterDefinition(
                need(item, "name", str, "parameter"), need(item, "default", (int, float),
                                                           "parameter"),
                need(item, "unit", str, "parameter"), str(item.get("description", "")),
                item.get("constraint")))
        for item in _bounded_list(need(data, "gates", list, "definition"), limit):
            check_keys(item, ("name", "kind", "alpha", "beta", "x_inf", "tau", "rate_factor"),
                       "a gate")
            kind = need(item, "kind", str, "gate")
            if kind not in GATE_KINDS:
                raise ValueError(f"model definition: gate kind {kind!r} not in {GATE_KINDS}")
            fields = {k: item[k] for k in ("alpha", "beta", "x_inf", "tau", "rate_factor")
                      if item.get(k) is not None}
            for k, v in fields.items():
                if not isinstance(v, str):
                    raise ValueError(f"model definition: gate {k} must be a string")
            gate = GateDefinition(need(item, "name", str, "gate"),
                                  is_instantaneous=kind == "instantaneous", **fields)
            if gate.kind != kind:
                raise ValueError(f"model definition: gate {gate.name!r} declared {kind!r} "
                                 f"but its fields make it {gate.kind!r}")
            gates.append(gate)
        for item in _bounded_list(need(data, "channels", list, "definition"), limit):
            check_keys(item, ("name", "conductance", "reversal"), "a channel")
            channels.append(ChannelDefinition(need(item, "name", str, "channel"),
                                              need(item, "conductance", str, "channel"),
                                              need(item, "reversal", str, "channel")))
        iv = data.get("initial_voltage")
        if iv is not None:
            check_keys(iv, ("kind", "values"), "initial_voltage")
            iv = VoltageDistribution(need(iv, "kind", str, "initial_voltage"),
                                     tuple(_bounded_list(need(iv, "values", list,
                                                              "initial_voltage"), 2)))
        initial_gates = data.get("initial_gates", {})
        if not isinstance(initial_gates, Mapping):
            raise ValueError("model definition: initial_gates must be a mapping")
        ivr = data.get("initial_voltage_range", [-70.0, -60.0])
        if not isinstance(ivr, list) or len(ivr) != 2:
            raise ValueError("model definition: initial_voltage_range must be [low, high]")
        max_dt = data.get("max_dt", 0.1)
        if isinstance(max_dt, bool) or not isinstance(max_dt, (int, float)):
            raise ValueError("model definition: max_dt must be a number")
        area = data.get("area")
        if area is not None and (isinstance(area, bool) or not isinstance(area, (int, float))):
            raise ValueError("model definition: area must be a number of um2")
        return cls(name=need(data, "name", str, "definition"), parameters=tuple(params),
                   gates=tuple(gates), channels=tuple(channels),
                   threshold=data.get("threshold", "V_th"),
                   capacitance=data.get("capacitance", "C"), initial_voltage=iv,
                   initial_gates=initial_gates, initial_voltage_range=tuple(ivr),
                   max_dt=float(max_dt), reference=str(data.get("reference", "")),
                   description=str(data.get("description", "")), area=area)

    def __repr__(self):
        # short: it is the default of HHSpec's ``model`` and shows in every signature
        return (f"<ModelDefinition {self.name!r}: gates "
                f"{', '.join(g.name for g in self.gates)}; "
                f"channels {', '.join(c.name for c in self.channels)}>")


def _bounded_list(value, limit: int) -> list:
    if not isinstance(value, list) or len(value) > limit:
        raise ValueError(f"model definition: expected a list of at most {limit} items")
    return value


@dataclass(frozen=True)
class CompiledModel:
    """Backend callables of a model, each with the keyword names it takes.

    ``intermediates[gate][name] = (fn, args)``: the rates or ``x_inf``/``tau`` of a gate
    as functions of ``V`` and parameters; ``factors[gate] = (fn, args)``: the rate factor;
    ``conductances[c]`` with ``conductance_args[c]``.
    """

    intermediates: Mapping[str, Mapping[str, Tuple[Callable, Tuple[str, ...]]]]
    factors: Mapping[str, Tuple[Callable, Tuple[str, ...]]]
    conductances: Mapping[str, Callable]
    conductance_args: Mapping[str, Tuple[str, ...]]

    @staticmethod
    def _function(expr: sympy.Expr, backend: str):
        names = tuple(sorted(s.name for s in expr.free_symbols))
        return to_callable(expr, names, backend), names

    @classmethod
    def build(cls, model: ModelDefinition, backend: str) -> "CompiledModel":
        intermediates, factors = {}, {}
        for gate, terms in model.gate_terms.items():
            intermediates[gate] = {name: cls._function(expr, backend)
                                   for name, expr in terms.intermediates}
            if terms.factor is not None:
                factors[gate] = cls._function(terms.factor, backend)
        conductances, args = {}, {}
        for name, expr in model.conductance_expressions.items():
            conductances[name], args[name] = cls._function(expr, backend)
        return cls(intermediates, factors, conductances, args)

    def evaluate_intermediates(self, gate: str, symbols: Mapping[str, Any]) -> Dict[str, Any]:
        """The gate's rates (or ``x_inf``, ``tau``) from ``symbols`` (``V`` and parameters)."""
        return {name: fn(*(symbols[a] for a in args))
                for name, (fn, args) in self.intermediates[gate].items()}

    def factor(self, gate: str, symbols: Mapping[str, Any]):
        """The gate's rate factor, or ``None`` when it has none."""
        if gate not in self.factors:
            return None
        fn, args = self.factors[gate]
        return fn(*(symbols[a] for a in args))


_REGISTRY: Dict[str, ModelDefinition] = {}


def register_model(model: ModelDefinition) -> ModelDefinition:
    """Make a model known by name (used when reading a specification back from a dict or file)."""
    existing = _REGISTRY.get(model.name)
    if existing is not None and existing != model:
        raise ValueError(f"a different model named {model.name!r} is already registered")
    _REGISTRY[model.name] = model
    return model


def get_model(name: str) -> ModelDefinition:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(_REGISTRY)}") from None


def known_models() -> Tuple[str, ...]:
    """Names of the registered models."""
    return tuple(sorted(_REGISTRY))
