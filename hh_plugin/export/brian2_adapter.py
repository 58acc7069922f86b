r"""Brian2 backend <-> records: ``NeuronGroup`` state, ``StateMonitor``/``SpikeMonitor`` traces.

Brian2 keeps ``V`` in volt and ``I`` in amp; records use mV and uA. Row conventions
(see ``export/FORMAT.md``): a ``StateMonitor(..., when='end')`` sample at Brian2 time
:math:`t = t_0 + k\,dt` is the state after step ``k``, which the file stores at time
:math:`t_0 + (k+1)\,dt`; a ``SpikeMonitor`` time :math:`t_0 + k\,dt` is a spike in row ``k``.

A group is flat (``N`` neurons); a record of shape ``(batch..., n)`` maps to
``N = prod(shape)`` neurons in C order, per-neuron parameters tiled over the batch.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from ..model import HHSpec
from .errors import FormatError
from .population_file import HHRecord, save

_MV = 1e-3   # volt per mV
_UA = 1e-6   # amp per uA


def flat_spec(spec: HHSpec, shape) -> HHSpec:
    """``spec`` for a flat group of ``prod(shape)`` neurons (per-neuron arrays tiled)."""
    batch = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    if batch == 1 or not spec.is_heterogeneous:
        return spec
    changes = {k: np.tile(v, batch) for k, v in spec.parameters.items()
               if isinstance(v, np.ndarray)}
    if isinstance(spec.V_reset, np.ndarray):
        changes["V_reset"] = np.tile(spec.V_reset, batch)
    return spec.replace(**changes)


def state_from_group(group, spec: Optional[HHSpec] = None, shape=None) -> Dict[str, np.ndarray]:
    """``{'V': mV, gates}`` float64 arrays of a group's current state (reshaped to ``shape``).

    Gates are those of ``spec.model`` (default: the reference model's m, h, n).
    """
    gates = (spec or HHSpec()).model.gate_names
    out = {"V": np.asarray(group.V_[:], dtype=np.float64) / _MV}
    for name in gates:
        out[name] = np.array(getattr(group, name + "_")[:], dtype=np.float64)
    if shape is not None:
        out = {k: v.reshape(shape) for k, v in out.items()}
    return out


def state_to_group(group, state: Dict[str, np.ndarray], spec: HHSpec) -> None:
    """Set ``V`` (mV -> volt) and the gates of ``group`` from ``state`` (flattened).

    ``not_refractory`` is set to ``V < V_th`` so that a neuron saved above threshold does
    not spike again before it has gone below it (the rising-edge rule).
    """
    V = np.asarray(state["V"], dtype=np.float64).reshape(-1)
    if len(V) != len(group):
        raise ValueError(f"state has {len(V)} neurons, the group {len(group)}")
    group.V_[:] = V * _MV
    for gate in spec.model.gate_names:
        getattr(group, gate + "_")[:] = np.asarray(state[gate], dtype=np.float64).reshape(-1)
    V_th = np.broadcast_to(getattr(group, "V_th_")[:] / _MV if isinstance(spec.V_th, np.ndarray)
                           else spec.V_th, V.shape)
    group.not_refractory[:] = V < V_th


def group_from_record(record: HHRecord, current="parameter", **kwargs):
    """A ``NeuronGroup`` of the record's spec and state (``neuron_group`` kwargs pass through).

    ``dt`` defaults to the record's. The record's batch dimensions are flattened.
    """
    import brian2

    from ..brian2 import neuron_group

    if record.state is None:
        raise FormatError("the file holds no state", record.path)
    shape = record.shape
    N = int(np.prod(shape))
    if record.dt is not None:
        kwargs.setdefault("dt", record.dt * brian2.ms)
    spec = flat_spec(record.spec, shape)
    group = neuron_group(N, spec, current=current,
                         V_init=np.asarray(record.state["V"], np.float64).reshape(-1), **kwargs)
    state_to_group(group, record.state, spec)
    return group


def traces_from_monitors(state_monitor=None, spike_monitor=None, *, dt: float, n_steps: int,
                         t_start: float = 0.0, brian_t0: float = 0.0, shape=None) -> dict:
    r"""Traces (record layout) from Brian2 monitors.

    Args:
        state_monitor: ``StateMonitor(group, [...], record=True, when='end')`` or ``None``.
        spike_monitor: ``SpikeMonitor(group)`` or ``None``.
        dt: step in ms. n_steps: number of steps run (rows).
        t_start: time (ms, in the record's clock) of the state before the first step.
        brian_t0: Brian2 time (ms) of the first recorded step (``0`` for a fresh network).
        shape: population shape to reshape the flat group to (default ``(N,)``).
    """
    traces = {"time": t_start + np.arange(1, n_steps + 1, dtype=np.float64) * dt}
    N = None
    if state_monitor is not None:
        if len(state_monitor.t_) != n_steps:
            raise ValueError(f"the StateMonitor has {len(state_monitor.t_)} samples, "
                             f"expected {n_steps}")
        for name in state_monitor.record_variables:
            if name not in ("V", "m", "h", "n"):
                continue
            values = np.asarray(getattr(state_monitor, name + "_"), dtype=np.float64).T
            traces[name] = values / _MV if name == "V" else values.copy()
            N = values.shape[1]
    if spike_monitor is not None:
        N = len(spike_monitor.source) if N is None else N
        spikes = np.zeros((n_steps, N), dtype=np.uint8)
        rows = np.rint((np.asarray(spike_monitor.t_) * 1e3 - brian_t0) / dt).astype(np.int64)
        keep = (rows >= 0) & (rows < n_steps)
        spikes[rows[keep], np.asarray(spike_monitor.i)[keep]] = 1
        traces["spikes"] = spikes
    if shape is not None:
        traces = {k: (v if k == "time" else v.reshape((n_steps,) + tuple(shape)))
                  for k, v in traces.items()}
    return traces


def save_group(path, group, spec: HHSpec, *, time: float, dt: Optional[float] = None,
               state_monitor=None, spike_monitor=None, n_steps: Optional[int] = None,
               t_start: float = 0.0, overwrite: bool = False, **provenance):
    """Save a group's state at ``time`` (ms) and, optionally, its monitors as traces.

    ``dt`` in ms (default the group's clock). Traces need ``n_steps`` and ``t_start``
    (the record time, in ms, before the first recorded step; Brian2 time 0 assumed).
    """
    dt = float(group.clock.dt_) * 1e3 if dt is None else dt
    traces = None
    if state_monitor is not None or spike_monitor is not None:
        traces = traces_from_monitors(state_monitor, spike_monitor, dt=dt, n_steps=n_steps,
                                      t_start=t_start)
    return save(path, spec, state_from_group(group, spec), time=time, dt=dt, traces=traces,
                backend="brian2", overwrite=overwrite, provenance=provenance)
