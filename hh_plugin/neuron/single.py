r"""Uncoupled neurons of one :class:`~hh_plugin.HHSpec` in NEURON, driven by constant currents.

:func:`run_neurons` builds ``n`` cells (:class:`~.cell.HHCell`), starts them from the
plugin's initial state (:func:`hh_plugin.model.initial_state`: the same ``V`` and gates,
drawn with the same seed, as the torch and Brian2 backends), injects a constant current
:math:`I` (uA, one value or one per neuron; an ``IClamp`` of :math:`10^3 I` nA) and
returns each neuron's spike times (ms): the upward crossings of :math:`V_{th}` located by
NEURON's threshold detection (interpolated, ``condition_order(2)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..model.initial import DEFAULT, initial_state
from ..model.spec import HHSpec
from .build import ensure_mechanisms
from .cell import HHCell, check_initial_voltage, check_spec, current_nA, mechanism_for
from .integration import Integration, restore


@dataclass
class NeuronRun:
    """``spike_times[i]``: neuron ``i``'s spike times (ms, float64); ``t``, ``V``: the
    sampled time (ms) and membrane potential (mV, ``(len(t), n)``) when recorded."""

    spike_times: List[np.ndarray]
    t: Optional[np.ndarray] = None
    V: Optional[np.ndarray] = None


def initializer(cells, states):
    """``FInitializeHandler`` callbacks that start ``cells`` from ``states`` (a list of
    ``{'V': mV, gate: value}``): ``V`` before the mechanisms' ``INITIAL`` blocks (type 0,
    so that threshold detection starts from it), the gates after them (type 1, before
    CVODE is initialised). Keep the returned handlers alive while the run lasts."""
    from neuron import h

    def set_v():
        for cell, state in zip(cells, states):
            cell.seg.v = float(state["V"])

    def set_gates():
        for cell, state in zip(cells, states):
            cell.set_state({k: v for k, v in state.items() if k != "V"})

    return [h.FInitializeHandler(0, set_v), h.FInitializeHandler(1, set_gates)]


def run_neurons(spec: HHSpec, duration: float, current=0.0, n: Optional[int] = None,
                V=DEFAULT, seed: Optional[int] = None, integration=None,
                record_dt: Optional[float] = None, **gates) -> NeuronRun:
    """Run ``n`` neurons of ``spec`` (default: ``spec.size`` or 1) for ``duration`` ms.

    ``current``: uA, a number or one per neuron. ``V``, ``seed``, ``gates``: the initial
    state as :func:`hh_plugin.model.initial_state` takes it. ``integration``: an
    :class:`~.integration.Integration` (default CVODE, ``atol = 1e-6``); a fixed step
    defaults to ``record_dt`` or 0.025 ms. ``record_dt`` (ms): also sample ``V`` every
    ``record_dt``."""
    from neuron import h

    check_spec(spec)
    n = int(n if n is not None else (spec.size or 1))
    spec.check_size(n)
    if not duration > 0:
        raise ValueError(f"duration must be > 0 ms, got {duration}")
    integration = Integration.coerce(integration)
    mechanism = mechanism_for(spec)
    ensure_mechanisms({mechanism.suffix: mechanism.source})
    currents = np.broadcast_to(np.asarray(current, dtype=np.float64), (n,))
    start = initial_state(spec.model, (n,), V=V, seed=seed, parameters=spec.parameters,
                          **gates)
    check_initial_voltage(start["V"], spec.parameters[spec.model.threshold], "run_neurons")
    cells = [HHCell(spec, mechanism, i) for i in range(n)]
    states = [{k: float(v[i]) for k, v in start.items()} for i in range(n)]
    clamps, detectors, times = [], [], []
    for cell, amp in zip(cells, currents):
        if amp != 0:
            stim = cell.current_clamp()
            stim.amp = current_nA(amp)
            clamps.append(stim)
        nc = cell.spike_detector()
        vec = h.Vector()
        nc.record(vec)
        detectors.append(nc)
        times.append(vec)
    handlers = initializer(cells, states)
    previous = integration.apply(record_dt or 0.025)
    try:
        traces = []
        if record_dt is not None:
            t_vec = h.Vector().record(h._ref_t, record_dt)
            traces = [h.Vector().record(cell.seg._ref_v, record_dt, sec=cell.sec)
                      for cell in cells]
        pc = h.ParallelContext()
        pc.set_maxstep(10)
        h.finitialize()
        pc.psolve(float(duration))
    finally:
        restore(previous)
    # to_python: numpy cannot convert an empty NEURON Vector (a neuron that never spiked)
    out = NeuronRun([np.array(v.to_python(), dtype=np.float64) for v in times])
    if record_dt is not None:
        out.t = np.array(t_vec.to_python())
        out.V = np.stack([np.array(v.to_python()) for v in traces], axis=1)
    del handlers, clamps, detectors
    return out
