r"""Single-compartment NEURON cells of an :class:`~hh_plugin.HHSpec`.

One cell per neuron: a cylinder with :math:`L = d = \sqrt{A/\pi}` (one segment, no axial
current), whose membrane area :math:`\pi d L = A` is the specification's patch
(``spec.area``: 1 cm² = 1e8 um² for the Hodgkin-Huxley, Wang-Buzsaki and Morris-Lecar
definitions, 20,000 um² for Traub-Miles; 1 cm² for a model that declares none, whose
values are then read per cm²). With :math:`A` in um² (NEURON's own area of the segment,
``h.area``, which equals it to round-off), the plugin's absolute units map exactly:

.. math::
    c_m = C \cdot 10^8/A \ \ [\mathrm{uF/cm^2}], \qquad
    I_{\mathrm{IClamp}} = 10^3\, I \ \ [\mathrm{nA}],

.. math::
    i_{\mathrm{mech}} = \frac{10^5}{A}\sum_c g_c (v - E_c)\ \ [\mathrm{mA/cm^2}]

(C in uF, I in uA, g in mS; :mod:`.nmodl`). The model's parameters are the mechanism's
``RANGE`` variables of the cell (per-neuron values of a heterogeneous specification
allowed); the spike rule is a ``NetCon`` on ``v`` with the cell's threshold parameter
:math:`V_{th}`, which fires at each upward crossing (the plugin's rising-edge rule).

What NEURON cells do not take is refused by name: ``V_reset`` (a reset is not part of
the continuous model) and an initial :math:`V \ge V_{th}` (NEURON's threshold detection
counts it as a spike at :math:`t = 0`; the plugin's rule, :math:`V_k < V_{th} \le
V_{k+1}`, does not).
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional

import numpy as np

from ..model.quantities import UM2_PER_CM2
from ..model.spec import HHSpec
from .nmodl import Mechanism, generate_mechanism

#: The patch (um²) of a model that declares no area: 1 cm², values read per cm².
DEFAULT_AREA = UM2_PER_CM2


def check_spec(spec: HHSpec, what: str = "the specification") -> None:
    """Refuse, by name, what a NEURON cell cannot represent."""
    if not isinstance(spec, HHSpec):
        raise TypeError(f"{what}: NEURON cells are made from an HHSpec, got "
                        f"{type(spec).__name__}")
    if spec.V_reset is not None:
        raise ValueError(f"{what}: V_reset = {spec.V_reset} mV cannot be represented in "
                         f"NEURON (a reset after each spike is not part of the continuous "
                         f"model the NEURON backend integrates); leave V_reset=None")


def check_initial_voltage(V, thresholds, what: str) -> None:
    """Refuse initial potentials at or above threshold (see the module docstring)."""
    V = np.asarray(V, dtype=np.float64)
    above = np.nonzero(V >= np.broadcast_to(np.asarray(thresholds, dtype=np.float64),
                                             V.shape))[0]
    if len(above):
        i = int(above[0])
        raise ValueError(f"{what}: neuron {i} starts at V = {V[i]:g} mV, at or above its "
                         f"threshold V_th: NEURON's threshold detection counts that as a "
                         f"spike at t = 0, the plugin's rising-edge rule does not; start "
                         f"below threshold")


def patch_area(spec: HHSpec) -> float:
    """The cell's membrane area in um² (``spec.area`` or :data:`DEFAULT_AREA`)."""
    return float(spec.area) if spec.area is not None else DEFAULT_AREA


def value_of(values, index: int) -> float:
    """Neuron ``index``'s value of a scalar or per-neuron parameter."""
    array = np.asarray(values, dtype=np.float64)
    return float(array if array.ndim == 0 else array[index])


class HHCell:
    """One neuron of ``spec`` (index ``index`` of a heterogeneous specification) as a
    NEURON section with the model's mechanism. ``sec``: the section; ``seg``: its one
    segment; ``threshold``: :math:`V_{th}` in mV; ``area``: the segment's area in um²."""

    def __init__(self, spec: HHSpec, mechanism: Mechanism, index: int = 0,
                 name: Optional[str] = None):
        from neuron import h

        self.spec = spec
        self.mechanism = mechanism
        model = spec.model
        self.sec = h.Section(name=name or f"{model.name}_{index}")
        side = math.sqrt(patch_area(spec) / math.pi)
        self.sec.L = side
        self.sec.diam = side
        self.sec.nseg = 1
        self.sec.insert(mechanism.suffix)
        self.seg = self.sec(0.5)
        self.area = float(h.area(0.5, sec=self.sec))
        setattr(self.seg, f"patch_{mechanism.suffix}", self.area)
        params = spec.parameters
        for name in mechanism.parameters:
            setattr(self.seg, mechanism.range_name(name), value_of(params[name], index))
        self.sec.cm = value_of(params[model.capacitance], index) * UM2_PER_CM2 / self.area
        self.threshold = value_of(params[model.threshold], index)

    def set_state(self, values: Mapping[str, float]) -> None:
        """Set ``V`` (mV) and dynamic gates from ``values`` (plugin names)."""
        if "V" in values:
            self.seg.v = float(values["V"])
        for gate in self.spec.model.gate_names:
            if gate in values:
                setattr(self.seg, self.mechanism.range_name(gate), float(values[gate]))

    def state(self) -> Dict[str, float]:
        """``V`` and the dynamic gates now."""
        out = {"V": float(self.seg.v)}
        for gate in self.spec.model.gate_names:
            out[gate] = float(getattr(self.seg, self.mechanism.range_name(gate)))
        return out

    def spike_detector(self, target=None):
        """A ``NetCon`` from this cell's ``v`` with its threshold (to ``target``, or
        none: for recording or ``ParallelContext.cell``)."""
        from neuron import h

        nc = h.NetCon(self.seg._ref_v, target, sec=self.sec)
        nc.threshold = self.threshold
        return nc

    def current_clamp(self):
        """An ``IClamp`` at the cell (``delay`` 0, lasting for ever, ``amp`` 0 nA)."""
        from neuron import h

        stim = h.IClamp(self.seg)
        stim.delay = 0.0
        stim.dur = 1e9
        stim.amp = 0.0
        return stim


def mechanism_for(spec: HHSpec) -> Mechanism:
    """The generated mechanism of ``spec``'s model (cached on the model)."""
    cache = spec.model._cache
    if "neuron_mechanism" not in cache:
        cache["neuron_mechanism"] = generate_mechanism(spec.model)
    return cache["neuron_mechanism"]


def current_nA(current_uA) -> float:
    """An ``IClamp`` amplitude in nA of a current in uA."""
    return float(current_uA) * 1e3
