"""Run a case (specification, initial state, input current) on a backend; return the result.

A result record holds the same specification and ``dt``, the **final** state (at the time
of the last step) and the traces of every step: ``V``, ``m``, ``h``, ``n`` and ``spikes``.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .errors import FormatError
from .record import HHRecord

BACKENDS = ("torch", "brian2")


def check_case(case: HHRecord) -> None:
    """Raise :class:`FormatError` unless ``case`` holds a state, an input and ``dt``."""
    missing = [name for name in ("state", "input", "dt") if getattr(case, name) is None]
    if missing:
        raise FormatError(f"not a runnable case: no {', no '.join(missing)} "
                          f"(a case needs a state, an input and dt)", case.path)
    if abs(case.input_t_start - case.time) > 1e-9 * max(1.0, abs(case.time)):
        raise FormatError(f"input starts at {case.input_t_start} ms but the state is at "
                          f"{case.time} ms", case.path)


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return contextlib.nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)


def run_torch(case: HHRecord, *, progress: bool = False, device: str = "cpu",
              dtype=None, chunk: int = 200) -> HHRecord:
    """Run ``case`` with :class:`hh_plugin.torch.HH` (in the case's dtype unless ``dtype``)."""
    import torch

    from ..torch import HH
    from .torch_adapter import input_tensor, state_from_record, traces_from_run

    check_case(case)
    state = state_from_record(case, dtype=dtype, device=device)
    current = input_tensor(case, dtype=state.V.dtype, device=device)
    module = HH(p=case.spec, dt=case.dt * 1e-3, record_states=True)
    steps = current.shape[0]
    spikes, rows = [], []
    with torch.no_grad(), _progress(steps, progress, "torch") as bar:
        for start in range(0, steps, chunk):
            z, states = module(current[start:start + chunk], state)
            state = type(states)(*(s[-1] for s in states))
            spikes.append(z)
            rows.append(states)
            if bar is not None:
                bar.update(z.shape[0])
    spikes = torch.cat(spikes)
    stacked = type(rows[0])(*(torch.cat([r[i] for r in rows]) for i in range(len(rows[0]))))
    traces = traces_from_run(spikes, stacked, case.dt * 1e-3, t_start=case.time)
    final = {name: traces[name][-1].copy() for name in case.spec.model.state_names}
    return HHRecord(spec=case.spec, dt=case.dt, state=final, time=float(traces["time"][-1]),
                    traces=traces,
                    provenance={"backend": "torch", "device": str(state.V.device),
                                "source": str(case.path or "")})


def run_brian2(case: HHRecord, *, progress: bool = False, target: str = "numpy") -> HHRecord:
    """Run ``case`` with a Brian2 ``NeuronGroup`` (runtime mode, ``target`` code generation).

    Brian2 computes in float64 whatever the case's dtype.
    """
    import brian2

    from .brian2_adapter import group_from_record, state_from_group, traces_from_monitors

    check_case(case)
    shape = case.shape
    steps = len(case.input)
    flat = np.ascontiguousarray(case.input, dtype=np.float64).reshape(steps, -1)
    old_target = brian2.prefs.codegen.target
    brian2.prefs.codegen.target = target
    try:
        stimulus = brian2.TimedArray(flat * brian2.uA, dt=case.dt * brian2.ms)
        group = group_from_record(case, current="hh_export_I(t, i)",
                                  namespace={"hh_export_I": stimulus})
        variables = list(case.spec.model.state_names)
        state_monitor = brian2.StateMonitor(group, variables, record=True, when="end")
        spike_monitor = brian2.SpikeMonitor(group)
        net = brian2.Network(group, state_monitor, spike_monitor)
        with _progress(steps, progress, "brian2") as bar:
            report = None
            if bar is not None:
                def report(elapsed, completed, start, duration):
                    bar.n = int(round(completed * steps))
                    bar.refresh()
            net.run(steps * case.dt * brian2.ms, report=report, report_period=1 * brian2.second)
            if bar is not None:
                bar.n = steps
                bar.refresh()
    finally:
        brian2.prefs.codegen.target = old_target
    traces = traces_from_monitors(state_monitor, spike_monitor, dt=case.dt, n_steps=steps,
                                  t_start=case.time, shape=shape)
    final = state_from_group(group, case.spec, shape)
    return HHRecord(spec=case.spec, dt=case.dt, state=final, time=float(traces["time"][-1]),
                    traces=traces,
                    provenance={"backend": "brian2", "device": f"brian2 runtime ({target})",
                                "source": str(case.path or "")})


def run_case(case: HHRecord, backend: str, *, progress: bool = False, **options) -> HHRecord:
    """Run ``case`` on ``'torch'`` (options: ``device``, ``dtype``, ``chunk``) or ``'brian2'``
    (option: ``target``, default ``'numpy'``). Returns the result record (not saved)."""
    if backend == "torch":
        return run_torch(case, progress=progress, **options)
    if backend == "brian2":
        return run_brian2(case, progress=progress, **options)
    raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")
