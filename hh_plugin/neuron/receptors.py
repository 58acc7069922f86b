r"""The network's receptors (:class:`~hh_plugin.network.synapses.Synapse`) as NEURON point
processes, chosen by the synapse model's properties.

One point process per receptor and target cell; every projection onto that receptor
sends its spikes to it through ``NetCon`` objects, so its variable is the sum of the
receptor's inputs, as in the other backends. By the model's ``is_conductance``,
``is_pulse``, ``time_constant`` and ``reversal`` (weights :math:`w` in the plugin's
units, mS or uA of the whole patch):

- conductance, exponential (``exponential_conductance``, COBAHH's ``ge``, ``gi``):
  NEURON's own ``ExpSyn``, :math:`g' = -g/\tau`, current :math:`g (v - E)` (nA, g in
  uS), ``tau`` = :math:`\tau`, ``e`` = :math:`E_{rev}`, ``NetCon`` weight
  :math:`10^3 w` uS;
- current, exponential (``exponential_current``): the generated ``hhp_ExpCurrent``,
  :math:`I_s' = -I_s/\tau`, injected current :math:`I_s` (nA, ``ELECTRODE_CURRENT``),
  weight :math:`10^3 w` nA;
- current pulse (``current_pulse``): the generated ``hhp_CurrentPulse``, which adds the
  weight :math:`10^3 w` nA to its injected current when a spike arrives and takes it
  away ``duration`` ms later (a self-event), ``duration`` = the network's :math:`\Delta t`:
  the plugin's "current of one step".

The time constant and the reversal are ``RANGE`` parameters of each point process (set
from the receptor). Any other synapse model, and a conductance that lasts one step, is
refused with an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

#: Synapse models this backend maps (by name; each is checked against its properties).
KNOWN_MODELS = ("current_pulse", "exponential_current", "exponential_conductance")

EXP_CURRENT = "hhp_ExpCurrent"
CURRENT_PULSE = "hhp_CurrentPulse"

EXP_CURRENT_SOURCE = f"""TITLE hh_plugin exponential current synapse (generated; do not edit)
COMMENT
dI/dt = -I/tau (nA); each spike adds the NetCon weight (nA); injected current I.
ENDCOMMENT
NEURON {{
    POINT_PROCESS {EXP_CURRENT}
    ELECTRODE_CURRENT i
    RANGE tau, i
    THREADSAFE
}}
UNITS {{
    (nA) = (nanoamp)
}}
PARAMETER {{
    tau = 1 (ms)
}}
ASSIGNED {{
    i (nA)
}}
STATE {{
    I (nA)
}}
INITIAL {{
    I = 0
}}
BREAKPOINT {{
    SOLVE decay METHOD cnexp
    i = I
}}
DERIVATIVE decay {{
    I' = -I/tau
}}
NET_RECEIVE(weight (nA)) {{
    I = I + weight
}}
"""

CURRENT_PULSE_SOURCE = f"""TITLE hh_plugin current pulse synapse (generated; do not edit)
COMMENT
Each spike injects the NetCon weight (nA) for duration ms (one step of the network):
the weight is added on arrival (flag 0) and taken away by a self-event (flag 1).
ENDCOMMENT
NEURON {{
    POINT_PROCESS {CURRENT_PULSE}
    ELECTRODE_CURRENT i
    RANGE duration, i
    THREADSAFE
}}
UNITS {{
    (nA) = (nanoamp)
}}
PARAMETER {{
    duration = 0.1 (ms)
}}
ASSIGNED {{
    i (nA)
    I (nA)
}}
INITIAL {{
    I = 0
}}
BREAKPOINT {{
    i = I
}}
NET_RECEIVE(weight (nA)) {{
    if (flag == 0) {{
        I = I + weight
        net_send(duration, 1)
    }} else {{
        I = I - weight
    }}
}}
"""

#: The generated point processes, ``{name: NMODL source}``.
SOURCES: Dict[str, str] = {EXP_CURRENT: EXP_CURRENT_SOURCE,
                           CURRENT_PULSE: CURRENT_PULSE_SOURCE}


@dataclass(frozen=True)
class ReceptorMap:
    """How one receptor is made in NEURON: ``mechanism`` (point process name),
    ``weight_scale`` (NetCon weight per plugin weight unit), ``parameters`` (point process
    ``RANGE`` values), ``state`` (the variable holding the receptor's value, with
    ``state_scale`` per plugin unit; ``None``: not settable)."""

    mechanism: str
    weight_scale: float
    parameters: Dict[str, float]
    state: Optional[str]
    state_scale: float = 1e3


def receptor_map(synapse, dt: float) -> ReceptorMap:
    """The :class:`ReceptorMap` of ``synapse`` (a network receptor) in a network of step
    ``dt`` ms; a synapse model outside :data:`KNOWN_MODELS`, or one whose properties do
    not match its name, is refused with an error naming it."""
    model = synapse.model
    if model.name not in KNOWN_MODELS:
        raise ValueError(f"receptor {synapse.receptor!r}: the synapse model {model.name!r} "
                         f"has no NEURON mapping (the NEURON backend maps "
                         f"{', '.join(KNOWN_MODELS)})")
    conductance, pulse = bool(model.is_conductance), bool(model.is_pulse)
    if conductance and not pulse:
        return ReceptorMap("ExpSyn", 1e3, {"tau": float(synapse.time_constant),
                                           "e": float(synapse.reversal_potential)}, "g")
    if not conductance and not pulse:
        return ReceptorMap(EXP_CURRENT, 1e3, {"tau": float(synapse.time_constant)}, "I")
    if not conductance and pulse:
        return ReceptorMap(CURRENT_PULSE, 1e3, {"duration": float(dt)}, None)
    raise ValueError(f"receptor {synapse.receptor!r}: synapse model {model.name!r} is a "
                     f"conductance that lasts one step, which the NEURON backend does not "
                     f"map")
