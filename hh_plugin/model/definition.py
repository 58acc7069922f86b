r"""Declarative description of a conductance-based (Hodgkin-Huxley type) neuron model.

A :class:`ModelDefinition` lists parameters (with units and defaults), gating
variables (as rate expressions :math:`\alpha_x(V), \beta_x(V)` in 1/ms with V in mV)
and ionic channels (a conductance expression and a reversal potential). Every
backend is generated from it, so a new model (Wang-Buzsaki, Traub-Miles) is a new
``ModelDefinition``, not new backend code.

The membrane equation is always

.. math::
    C \frac{dV}{dt} = -\sum_c g_c(x)\,(V - E_c) + I,

and each gate obeys :math:`\dot x = \alpha_x(V)(1-x) - \beta_x(V)\,x`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Tuple

import sympy

from .expressions import VOLTAGE_SYMBOL, parse, to_callable

#: Units a parameter may carry; the plugin's unit system is mV, ms, mS, uF, uA.
PARAMETER_UNITS = ("mV", "mS", "uF", "1")


@dataclass(frozen=True)
class ParameterDefinition:
    """One model parameter: name, default, unit (one of :data:`PARAMETER_UNITS`), meaning.

    ``constraint`` is ``'positive'`` (> 0), ``'nonnegative'`` (>= 0), ``'nonzero'`` or ``None``.
    """

    name: str
    default: float
    unit: str
    description: str
    constraint: str | None = None

    def __post_init__(self):
        if self.unit not in PARAMETER_UNITS:
            raise ValueError(f"parameter {self.name!r}: unit {self.unit!r} not in {PARAMETER_UNITS}")


@dataclass(frozen=True)
class GateDefinition:
    r"""A gating variable :math:`x` with opening and closing rates in 1/ms of ``V`` (mV)."""

    name: str
    alpha: str
    beta: str

    @classmethod
    def from_steady_state(cls, name: str, x_inf: str, tau: str) -> "GateDefinition":
        r"""Build from :math:`x_\infty(V)` and :math:`\tau_x(V)` (ms):
        :math:`\alpha = x_\infty/\tau,\ \beta = (1-x_\infty)/\tau`."""
        return cls(name, f"({x_inf})/({tau})", f"(1 - ({x_inf}))/({tau})")


@dataclass(frozen=True)
class ChannelDefinition:
    """An ionic current :math:`g(x)\\,(V - E)`: conductance expression (mS) and reversal parameter."""

    name: str
    conductance: str
    reversal: str


@dataclass(frozen=True, repr=False)
class ModelDefinition:
    """A complete HH-type model. See the module docstring for the equations.

    ``threshold`` and ``capacitance`` name the parameters used as spike threshold and
    membrane capacitance; ``initial_voltage_range`` (mV) is the uniform distribution
    the membrane potential is drawn from when no initial value is given; ``max_dt`` (ms)
    is the longest step for which the model's exponential Euler step is accurate (a
    longer step is refused by every backend, naming the accuracy problem).
    """

    name: str
    parameters: Tuple[ParameterDefinition, ...]
    gates: Tuple[GateDefinition, ...]
    channels: Tuple[ChannelDefinition, ...]
    threshold: str = "V_th"
    capacitance: str = "C"
    initial_voltage_range: Tuple[float, float] = (-70.0, -60.0)
    max_dt: float = 0.1
    reference: str = ""
    _cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self):
        names = self.parameter_names
        if len(set(names)) != len(names):
            raise ValueError(f"model {self.name!r}: duplicate parameter names")
        for key in (self.threshold, self.capacitance):
            if key not in names:
                raise ValueError(f"model {self.name!r}: {key!r} is not a parameter")
        gate_names = self.gate_names
        if VOLTAGE_SYMBOL in gate_names or set(gate_names) & set(names):
            raise ValueError(f"model {self.name!r}: gate names clash with parameters or V")
        for ch in self.channels:
            if ch.reversal not in names:
                raise ValueError(f"channel {ch.name!r}: reversal {ch.reversal!r} is not a parameter")
        if not (isinstance(self.max_dt, (int, float)) and 0 < self.max_dt < float("inf")):
            raise ValueError(f"model {self.name!r}: max_dt must be a positive finite number "
                             f"of ms, got {self.max_dt!r}")
        # Parse everything once so a broken definition fails at import, not mid-run.
        self.rate_expressions
        self.conductance_expressions

    def __repr__(self):
        # short: it is the default of HHSpec's ``model`` and shows in every signature
        return (f"<ModelDefinition {self.name!r}: gates {', '.join(self.gate_names)}; "
                f"channels {', '.join(c.name for c in self.channels)}>")

    # ------------------------------------------------------------------ names
    @property
    def parameter_names(self) -> Tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def gate_names(self) -> Tuple[str, ...]:
        return tuple(g.name for g in self.gates)

    @property
    def state_names(self) -> Tuple[str, ...]:
        """State variables in order: ``V`` then the gates."""
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

    # ------------------------------------------------------------ expressions
    @property
    def rate_expressions(self) -> Dict[str, Tuple[sympy.Expr, sympy.Expr]]:
        """``{gate: (alpha, beta)}`` as sympy expressions of ``V`` (mV), in 1/ms."""
        if "rates" not in self._cache:
            allowed = {VOLTAGE_SYMBOL}
            self._cache["rates"] = {
                g.name: (parse(g.alpha, allowed), parse(g.beta, allowed)) for g in self.gates}
        return self._cache["rates"]

    @property
    def conductance_expressions(self) -> Dict[str, sympy.Expr]:
        """``{channel: g}`` as sympy expressions of gates and parameters, in mS."""
        if "conductances" not in self._cache:
            allowed = set(self.gate_names) | set(self.parameter_names) | {VOLTAGE_SYMBOL}
            self._cache["conductances"] = {
                c.name: parse(c.conductance, allowed) for c in self.channels}
        return self._cache["conductances"]

    def compiled(self, backend: str) -> "CompiledModel":
        """Callables of this model for ``'numpy'`` or ``'torch'`` (cached)."""
        key = ("compiled", backend)
        if key not in self._cache:
            self._cache[key] = CompiledModel.build(self, backend)
        return self._cache[key]


@dataclass(frozen=True)
class CompiledModel:
    """Backend callables: ``rates[gate](V) -> (alpha, beta)`` and ``conductances[c](**kw)``.

    ``conductance_args[c]`` lists the keyword names each conductance function takes.
    """

    rates: Mapping[str, Tuple[Callable, Callable]]
    conductances: Mapping[str, Callable]
    conductance_args: Mapping[str, Tuple[str, ...]]

    @classmethod
    def build(cls, model: ModelDefinition, backend: str) -> "CompiledModel":
        rates = {
            gate: tuple(to_callable(e, (VOLTAGE_SYMBOL,), backend) for e in pair)
            for gate, pair in model.rate_expressions.items()}
        conductances, args = {}, {}
        for name, expr in model.conductance_expressions.items():
            names = tuple(sorted(s.name for s in expr.free_symbols))
            args[name] = names
            conductances[name] = to_callable(expr, names, backend)
        return cls(rates, conductances, args)


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
