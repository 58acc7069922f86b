r"""Spike times below the step: the one formula every backend reports spike times with.

A spike of step :math:`k` (from :math:`t_k = t_0 + k\,\Delta t` to :math:`t_{k+1}`) is an
upward crossing of the threshold :math:`V_{th}` between the potentials
:math:`V_k < V_{th} \le V_{k+1}` at the two ends of the step (before any reset). Its time
is the crossing of the straight line through the two samples:

.. math::
    t_{spike} = t_k + \Delta t\,\theta, \qquad
    \theta = \frac{V_{th} - V_k}{V_{k+1} - V_k} \in [0, 1]

(clipped to :math:`[0, 1]`; :math:`\theta = 1` where :math:`V_{k+1} = V_k`). This linear
interpolation is exact to :math:`O(\Delta t^2)` in time for exact samples (the error is
about :math:`\Delta t^2 \ddot V / (8 \dot V)` at the crossing): measured against a
converged solution with the RK4 method at :math:`\Delta t = 0.025` ms, it adds at most
0.0007 ms on the reference HH model and 0.0013 ms on Wang-Buzsaki (docs/accuracy.md),
below the 0.005 ms goal; the step index alone is off by up to :math:`\Delta t`.

The backends: :func:`hh_plugin.torch.spike_times` (from the spikes and the recorded
``V``) and :func:`hh_plugin.brian2.spike_times` (from a
:func:`~hh_plugin.brian2.spike_time_monitor`), both calling :func:`crossing_times`.
"""

from __future__ import annotations

import numpy as np

#: How the backends interpolate a spike's time inside its step (documented above).
INTERPOLATION = "linear"


def crossing_times(step, V_before, V_after, V_th, dt: float, t0: float = 0.0) -> np.ndarray:
    r"""Spike times (float64, in the unit of ``dt`` and ``t0``) of spikes in steps
    ``step`` (integers) with ``V_before`` :math:`= V_k` and ``V_after`` :math:`= V_{k+1}`
    (mV, before any reset) and threshold ``V_th`` (mV, scalar or per spike):
    :math:`t_0 + (k + \theta)\Delta t` with :math:`\theta` of the module docs."""
    step = np.asarray(step, dtype=np.float64)
    before = np.asarray(V_before, dtype=np.float64)
    after = np.asarray(V_after, dtype=np.float64)
    rise = after - before
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(rise > 0, (np.asarray(V_th, dtype=np.float64) - before) / rise, 1.0)
    return t0 + (step + np.clip(theta, 0.0, 1.0)) * float(dt)


def trace_crossing_times(z, V, V_initial, V_th, dt: float, t0: float = 0.0, V_reset=None):
    r"""Each spike's step and time from a run's spikes and recorded potential (numpy).

    ``z`` and ``V``: ``(T, ...)`` spikes and :math:`V` (mV) after each step;
    ``V_initial``: :math:`V` before the first step, ``V_th`` and ``V_reset`` (a soft
    reset's level, or ``None`` for no reset): broadcastable to ``V.shape[1:]``. With a soft
    reset the recorded :math:`V` of a spiking step is :math:`V_{k+1} - (V_{th} - V_{reset})`,
    and the crossing uses :math:`V_{k+1}` before the reset (a hard reset loses it: callers
    refuse it). Returns ``(index, times)``: the ``(n_spikes, z.ndim)`` indices of
    :func:`numpy.argwhere` (step, then neuron) and the times :func:`crossing_times` gives.
    """
    z = np.asarray(z)
    V = np.asarray(V, dtype=np.float64)
    cell = V.shape[1:]
    before = np.concatenate([np.broadcast_to(np.asarray(V_initial, np.float64), cell)[None],
                             V[:-1]])
    V_th = np.broadcast_to(np.asarray(V_th, dtype=np.float64), cell)
    after = V
    if V_reset is not None:
        after = V + (z > 0) * (V_th - np.broadcast_to(np.asarray(V_reset, np.float64), cell))
    index = np.argwhere(z > 0)
    where = tuple(index.T)
    return index, crossing_times(index[:, 0], before[where], after[where],
                                 V_th[tuple(index[:, 1:].T)], dt, t0)
