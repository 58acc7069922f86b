r"""Synapse models, declared once and generated for every backend.

A :class:`SynapseModel` says what a synapse does to its target neuron, not how a backend
does it. Each target population gets one postsynaptic variable :math:`x` per
*receptor* (a named :class:`Synapse`: a model with parameter values); every projection
onto that receptor adds its weights to the same :math:`x`, so the variable is the sum of
the receptor's synaptic inputs. The declaration has three parts:

**Unit** of :math:`x` and of the weights: ``'uA'`` (a current) or ``'mS'`` (a conductance).

**Dynamics** between spikes, ``time_constant``:

- ``None``: a *pulse*. :math:`x` holds the weights of the spikes that arrive for one
  step and is zero again after that step (the input of a ``torch.nn.Linear`` between two
  Norse layers: :math:`I_k = W z`).
- the name of a parameter :math:`\tau` (ms): exponential decay
  :math:`\dot x = -x/\tau`, integrated exactly over a step,

  .. math:: x_{k+1} = x_k\, e^{-\Delta t/\tau},

  which is also what Brian2's ``exponential_euler`` computes for this equation (both
  backends agree to round-off).

**Entry** into the membrane equation, ``reversal``:

- ``None``: a current, added to the input current: :math:`I \mathrel{+}= x`;
- the name of a parameter :math:`E` (mV): a conductance with reversal potential
  :math:`E`, adding :math:`x (E - V)` to :math:`C\,dV/dt`. Both backends treat it as
  part of the membrane conductance in the exponential Euler step,
  :math:`G = \sum_c g_c + \sum_s x_s` (see :func:`hh_plugin.torch.functional.hh.hh_step`).

On a presynaptic spike (after the projection's delay) each synapse adds its weight:
:math:`x_j \mathrel{+}= w_{ij}`. The step in which the variable is used, decays and
receives spikes is fixed by the network's schedule (:mod:`hh_plugin.network.spec`).

Three models ship: :data:`CURRENT_PULSE`, :data:`EXPONENTIAL_CURRENT` and
:data:`EXPONENTIAL_CONDUCTANCE` (COBAHH's ``ge``, ``gi``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

from .units import as_scalar, check_name

#: Units of a synapse parameter or a synaptic variable.
SYNAPSE_PARAMETER_UNITS = ("ms", "mV")
SYNAPSE_VARIABLE_UNITS = ("uA", "mS")


@dataclass(frozen=True)
class SynapseParameter:
    """A synapse model parameter: name, unit (``'ms'`` or ``'mV'``), meaning, constraint
    (``'positive'`` or ``None``) and default (``None``: must be given)."""

    name: str
    unit: str
    description: str
    constraint: Optional[str] = None
    default: Optional[float] = None

    def __post_init__(self):
        if self.unit not in SYNAPSE_PARAMETER_UNITS:
            raise ValueError(f"synapse parameter {self.name!r}: unit {self.unit!r} not in "
                             f"{SYNAPSE_PARAMETER_UNITS}")


@dataclass(frozen=True)
class SynapseModel:
    """A synapse model (see the module docstring for the meaning of the fields)."""

    name: str
    unit: str
    parameters: Tuple[SynapseParameter, ...] = ()
    time_constant: Optional[str] = None
    reversal: Optional[str] = None
    description: str = ""

    def __post_init__(self):
        if self.unit not in SYNAPSE_VARIABLE_UNITS:
            raise ValueError(f"synapse model {self.name!r}: unit {self.unit!r} not in "
                             f"{SYNAPSE_VARIABLE_UNITS}")
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"synapse model {self.name!r}: duplicate parameter names")
        units = {p.name: p.unit for p in self.parameters}
        if self.time_constant is not None and units.get(self.time_constant) != "ms":
            raise ValueError(f"synapse model {self.name!r}: time constant "
                             f"{self.time_constant!r} must be a parameter in ms")
        if self.reversal is not None:
            if units.get(self.reversal) != "mV":
                raise ValueError(f"synapse model {self.name!r}: reversal "
                                 f"{self.reversal!r} must be a parameter in mV")
            if self.unit != "mS":
                raise ValueError(f"synapse model {self.name!r}: a reversal potential needs "
                                 f"a conductance (unit 'mS')")
        elif self.unit != "uA":
            raise ValueError(f"synapse model {self.name!r}: a conductance needs a reversal "
                             f"potential parameter")

    @property
    def is_conductance(self) -> bool:
        return self.reversal is not None

    @property
    def is_pulse(self) -> bool:
        return self.time_constant is None

    @property
    def variable_prefix(self) -> str:
        """``'g'`` for conductances, ``'I'`` for currents (the variable is ``<prefix>_<receptor>``)."""
        return "g" if self.is_conductance else "I"

    @property
    def parameter_names(self) -> Tuple[str, ...]:
        return tuple(p.name for p in self.parameters)


_TAU = SynapseParameter("tau", "ms", "decay time constant", "positive")
_E_REV = SynapseParameter("E_rev", "mV", "reversal potential")

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
    except KeyError:
        raise ValueError(f"unknown synapse model {name!r}; known: "
                         f"{sorted(_SYNAPSE_MODELS)}") from None


for _m in (CURRENT_PULSE, EXPONENTIAL_CURRENT, EXPONENTIAL_CONDUCTANCE):
    register_synapse_model(_m)


class Synapse:
    """A receptor: a :class:`SynapseModel` with parameter values and a name.

    The receptor's postsynaptic variable is ``g_<receptor>`` (conductance, mS) or
    ``I_<receptor>`` (current, uA) on every target population it is used with.
    Parameters are numbers in the model's units (``tau`` in ms, ``E_rev`` in mV) or
    Brian2 quantities.

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
            value = as_scalar(parameters.get(p.name, p.default), p.unit,
                              f"{receptor}.{p.name}")
            if p.constraint == "positive" and not value > 0:
                raise ValueError(f"{receptor}.{p.name} must be > 0 (got {value} {p.unit})")
            values[p.name] = value
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "receptor", receptor)
        object.__setattr__(self, "_values", values)

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
    def variable(self) -> str:
        """Name of the postsynaptic variable (``g_e``, ``I_syn``)."""
        return f"{self.model.variable_prefix}_{self.receptor}"

    @property
    def unit(self) -> str:
        return self.model.unit

    @property
    def time_constant(self) -> Optional[float]:
        """:math:`\\tau` in ms, or ``None`` for a pulse."""
        tc = self.model.time_constant
        return None if tc is None else self._values[tc]

    @property
    def reversal_potential(self) -> Optional[float]:
        """:math:`E` in mV, or ``None`` for a current."""
        rv = self.model.reversal
        return None if rv is None else self._values[rv]

    def to_dict(self) -> Dict:
        return {"model": self.model.name, "receptor": self.receptor,
                "parameters": dict(self._values)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Synapse":
        if not isinstance(data, Mapping):
            raise TypeError(f"synapse: expected a mapping, got {type(data).__name__}")
        extra = set(data) - {"model", "receptor", "parameters"}
        if extra:
            raise ValueError(f"unknown key(s) in synapse: {sorted(extra)}")
        return cls(get_synapse_model(data["model"]), data["receptor"],
                   **dict(data.get("parameters", {})))

    def __eq__(self, other):
        if not isinstance(other, Synapse):
            return NotImplemented
        return self.to_dict() == other.to_dict()

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
