r"""Sub-step spike times of the torch backend (:mod:`hh_plugin.model.spike_times`).

:func:`spike_times` turns the spikes ``z`` of a run and its recorded membrane potential
into each spike's time inside its step, by the linear interpolation of the threshold
crossing that every backend uses (:func:`hh_plugin.model.spike_times.crossing_times`).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from ..model.spike_times import trace_crossing_times
from .functional.parameters import as_parameters


def spike_times(z: torch.Tensor, V: torch.Tensor, V_initial, p, dt: float,
                t0: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    r"""Each spike's step and time inside it.

    Args:
        z: ``(T, ...)`` spikes of a run (:class:`~hh_plugin.torch.HH`, :func:`hh_sequence`).
        V: ``(T, ...)`` membrane potential (mV) after each step (``record_states=True``
            or ``('V',)``).
        V_initial: the potential before the first step (the initial state's ``V``),
            broadcastable to ``V.shape[1:]``.
        p: the :class:`~hh_plugin.HHSpec` or parameters of the run (threshold, reset).
        dt: the step in **seconds**, as the torch backend takes it.
        t0: time of the first step's start in ms.

    Returns:
        ``(index, times)``: ``index`` an ``(n_spikes, z.ndim)`` int64 array (step, then
        the neuron's index; :func:`numpy.argwhere` order, by step then neuron) and
        ``times`` the ``(n_spikes,)`` float64 spike times in **ms**:
        :math:`t_0 + (k + \theta)\Delta t` with :math:`\theta` the linear interpolation of
        :math:`V_{th}` between :math:`V_k` and :math:`V_{k+1}`.

    With ``V_reset`` and a soft reset the recorded potential of a spiking step is
    :math:`V_{k+1} - (V_{th} - V_{reset})`; the crossing uses :math:`V_{k+1}` before the
    reset. A hard reset loses :math:`V_{k+1}`: refused (``ValueError``).
    """
    p = as_parameters(p)
    model = type(p).model
    z_np = torch.as_tensor(z).detach().cpu().double().numpy()
    V_np = torch.as_tensor(V).detach().cpu().double().numpy()
    if z_np.shape != V_np.shape:
        raise ValueError(f"z {z_np.shape} and V {V_np.shape} must have the same (T, ...) shape")
    if p.V_reset is not None and p.spk_reset != "soft":
        raise ValueError("sub-step spike times need the potential at the end of a "
                         "spiking step, which a hard reset overwrites: use "
                         "V_reset=None or spk_reset='soft'")

    def numpy(value):
        return torch.as_tensor(value).detach().cpu().double().numpy()

    return trace_crossing_times(
        z_np, V_np, numpy(V_initial), numpy(getattr(p, model.threshold)), float(dt) * 1e3,
        t0, V_reset=None if p.V_reset is None else numpy(p.V_reset))
