r"""Sub-step spike times of the Brian2 backend (:mod:`hh_plugin.model.spike_times`).

A group made with ``neuron_group(..., spike_times=True)`` has a variable ``V_before``
(volt), set to ``V`` at the start of every step (``run_regularly``, slot
``before_groups``). :func:`spike_time_monitor` records ``V`` (after the update, before
any reset: the ``thresholds`` slot) and ``V_before`` at each spike; :func:`spike_times`
turns them into each spike's time inside its step by the linear interpolation of the
threshold crossing that every backend uses
(:func:`hh_plugin.model.spike_times.crossing_times`).

Brian2 stamps a spike with the start :math:`t_k` of the step in which :math:`V` crosses
:math:`V_{th}` (the torch backend's step :math:`k`); the sub-step time is
:math:`t_k + \theta\,\Delta t`.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from hh_plugin.model.spike_times import crossing_times

#: The group variable holding the potential at the start of the step.
BEFORE = "V_before"
#: The equation ``neuron_group(..., spike_times=True)`` adds.
EQUATION = f"{BEFORE} : volt"


def add_recording(group) -> None:
    """Store ``V`` in ``V_before`` at the start of every step (used by ``neuron_group``)."""
    group.run_regularly(f"{BEFORE} = V", when="before_groups",
                        name=f"{group.name}_{BEFORE}")


def spike_time_monitor(group, **kwargs):
    """A ``brian2.SpikeMonitor`` of ``group`` recording what :func:`spike_times` needs
    (``V`` and ``V_before`` at each spike). ``group`` must come from
    ``neuron_group(..., spike_times=True)``; ``kwargs`` go to ``SpikeMonitor``."""
    import brian2

    if BEFORE not in getattr(group, "variables", {}):
        raise TypeError("spike_time_monitor needs a group made by neuron_group(..., "
                        "spike_times=True), which keeps V at the start of each step")
    monitor = brian2.SpikeMonitor(group, variables=["V", BEFORE], **kwargs)
    monitor._hh_group = group
    return monitor


def spike_times(monitor) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""``(i, step, times)`` of every recorded spike: the neuron index (int64), the step
    index (int64, the step's start time over ``dt``) and the spike time in **ms** (float64)
    :math:`t_k + \theta \Delta t`, linear interpolation of the threshold crossing."""
    import brian2

    group = getattr(monitor, "_hh_group", None)
    if group is None:
        raise TypeError("spike_times takes a monitor from spike_time_monitor(group)")
    dt = float(group.clock.dt_) * 1e3
    i = np.asarray(monitor.i[:], dtype=np.int64)
    start = np.asarray(monitor.t[:] / brian2.ms, dtype=np.float64)
    step = np.round(start / dt).astype(np.int64)
    threshold = group._hh_model.threshold
    V_th = np.broadcast_to(np.asarray(getattr(group, threshold)[:] / brian2.mV,
                                      dtype=np.float64), (len(group),))[i]
    V_after = np.asarray(monitor.V[:] / brian2.mV, dtype=np.float64)
    V_before = np.asarray(getattr(monitor, BEFORE)[:] / brian2.mV, dtype=np.float64)
    return i, step, crossing_times(step, V_before, V_after, V_th, dt)
