r"""Norse's leaky integrator as a population type (a readout such as ``norse.torch.LI``).

Both backends compute Norse's ``li_feed_forward_step`` with the same operations in the
same order, so a converted readout (:mod:`hh_plugin.convert`) gives Norse's numbers. With
:math:`x_k` the population's input in step :math:`k` (its synaptic pulses and external
current, in uA: the numbers a ``torch.nn.Linear`` writes), :math:`\Delta t` in seconds:

.. math::

    j_k &= i_k + x_k \\
    v_{k+1} &= v_k + \Delta t\, \tau_{mem}^{-1} \left( (v_{leak} - v_k) + j_k \right) \\
    i_{k+1} &= j_k + (-\Delta t\, \tau_{syn}^{-1})\, j_k

starting from :math:`v_0 = v_{leak}`, :math:`i_0 = 0` (Norse's initial state). The
population emits no spikes; its output is the trace of :math:`v`.

Only current synapses (``current_pulse``, ``exponential_current``) may target it: a
conductance needs a membrane potential in mV, which :math:`v` is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping

import numpy as np

#: The population kind's name in :meth:`LISpec.to_dict` (and in files).
KIND = "leaky_integrator"


@dataclass(frozen=True)
class LISpec:
    r"""Parameters of a leaky-integrator population, named and defaulted as Norse's
    ``LIParameters``: ``tau_syn_inv`` and ``tau_mem_inv`` in 1/s, ``v_leak`` (the unit of
    :math:`v`). NIR's ``LI`` node describes the continuous equation with
    :math:`\tau = 1/\tau_{mem}^{-1}`, :math:`r = 1`, ``v_leak``."""

    tau_syn_inv: float = 1.0 / 5e-3
    tau_mem_inv: float = 1.0 / 1e-2
    v_leak: float = 0.0

    #: what a population needs from its "model" (see :attr:`model`)
    name = KIND
    state_names = ("v", "i")
    gate_names = ()
    channels = ()
    max_dt = None
    parameter_names = ("tau_syn_inv", "tau_mem_inv", "v_leak")

    def __post_init__(self):
        for name in self.parameter_names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating,
                                                                  np.integer)):
                raise TypeError(f"leaky integrator {name} must be a number, got "
                                f"{type(value).__name__}")
            if not np.isfinite(value):
                raise ValueError(f"leaky integrator {name} must be finite, got {value}")
            object.__setattr__(self, name, float(value))
        for name in ("tau_syn_inv", "tau_mem_inv"):
            if getattr(self, name) < 0:
                raise ValueError(f"leaky integrator {name} must be >= 0 1/s")

    @property
    def model(self) -> "LISpec":
        """The population's model interface (state names, no gates, no channels)."""
        return self

    @property
    def parameters(self) -> Dict[str, float]:
        return {n: getattr(self, n) for n in self.parameter_names}

    def initial_state(self, size: int, initial: Mapping) -> Dict[str, np.ndarray]:
        unknown = set(initial) - set(self.state_names)
        if unknown:
            raise ValueError(f"a leaky integrator has the states {self.state_names}; got "
                             f"initial values for {sorted(unknown)}")
        state = {}
        for name, default in (("v", self.v_leak), ("i", 0.0)):
            value = np.broadcast_to(np.asarray(initial.get(name, default), dtype=np.float64),
                                    (size,)).copy()
            if not np.all(np.isfinite(value)):
                raise ValueError(f"initial {name} of a leaky integrator must be finite")
            state[name] = value
        return state

    def to_dict(self) -> Dict:
        return {"kind": KIND, **self.parameters}

    @classmethod
    def from_dict(cls, data: Mapping) -> "LISpec":
        if not isinstance(data, Mapping) or data.get("kind") != KIND:
            raise ValueError(f"not a leaky integrator description: {data!r}")
        extra = set(data) - {"kind", *cls.parameter_names}
        if extra:
            raise ValueError(f"unknown leaky integrator field(s) {sorted(extra)}")
        return cls(**{k: data[k] for k in cls.parameter_names if k in data})

    @classmethod
    def from_norse(cls, p) -> "LISpec":
        """From ``norse.torch.LIParameters`` (scalar tensors or numbers)."""
        values = {}
        for name in cls.parameter_names:
            value = np.asarray(getattr(p, name).detach().cpu() if hasattr(
                getattr(p, name), "detach") else getattr(p, name), dtype=np.float64)
            if value.size != 1:
                raise ValueError(f"LIParameters.{name} has shape {value.shape}; the "
                                 f"converter supports one value per population")
            values[name] = float(value.reshape(()))
        return cls(**values)


def is_leaky_integrator(spec) -> bool:
    return isinstance(spec, LISpec)
