"""Run a case (specification, initial state, input current) on a backend; return the result.

A result record holds the same specification and ``dt``, the **final** state (at the time
of the last step) and the traces of every step: ``V``, ``m``, ``h``, ``n`` (or those named
by ``record``, ``V`` always among them) and ``spikes``.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

from ..model.limits import ImplausibleInputWarning, step_problem, warn_if_implausible
from .errors import FormatError, SimulationError
from .population_file import HHRecord

BACKENDS = ("torch", "brian2")


def check_case(case: HHRecord) -> None:
    """Raise :class:`FormatError` unless ``case`` can be run: a state, an input and ``dt``
    within the model's ``max_dt``, on a time axis that float64 can represent. Warns
    (:class:`~hh_plugin.model.limits.ImplausibleInputWarning`) about an implausible input."""
    missing = [name for name in ("state", "input", "dt") if getattr(case, name) is None]
    if missing:
        raise FormatError(f"not a runnable case: no {', no '.join(missing)} "
                          f"(a case needs a state, an input and dt)", case.path)
    if abs(case.input_t_start - case.time) > 1e-9 * max(1.0, abs(case.time)):
        raise FormatError(f"input starts at {case.input_t_start} ms but the state is at "
                          f"{case.time} ms", case.path)
    model = case.spec.model
    problem = step_problem(case.dt, model)
    if problem:
        raise FormatError(f"cannot run this case: {problem}", case.path)
    steps = len(case.input)
    end = case.time + steps * case.dt
    if not np.isfinite(end) or (end - case.time) / steps < 0.5 * case.dt \
            or np.spacing(abs(end)) > 1e-6 * case.dt:
        raise FormatError(f"cannot run this case: at t = {case.time:g} ms a step of "
                          f"{case.dt:g} ms is below float64 resolution", case.path)
    peak = np.abs(case.input).reshape(steps, -1, case.input.shape[-1]).max(axis=(0, 1))
    warn_if_implausible(peak, case.spec.parameters[model.capacitance], model, stacklevel=3)


def _check_finite(values: np.ndarray, start: int, dt: float, t0: float, path) -> None:
    """Raise :class:`SimulationError` at the first row of ``values`` with NaN or inf."""
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not finite.all():
        row = start + int(np.argmin(finite))
        raise SimulationError(f"{path or 'case'}: the membrane potential became NaN or "
                              f"infinite in step {row} (t = {t0 + (row + 1) * dt:g} ms); "
                              f"the input current is too large for the model")


def record_variables(case: HHRecord, record=None) -> tuple:
    """The state variables a run of ``case`` records: all (``None``) or those named, which
    must include ``V`` (the result's NaN check and the crosscheck read it)."""
    from ..torch.fused.sequence import record_names

    model = case.spec.model
    names = record_names(True if record is None else tuple(record), model)
    if "V" not in names:
        raise ValueError(f"record must include V (the result's check and the crosscheck "
                         f"read it), got {tuple(record)}")
    return names


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return contextlib.nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)


def run_torch(case: HHRecord, *, progress: bool = False, device: str = "cpu",
              dtype=None, chunk: int = 200, record=None) -> HHRecord:
    """Run ``case`` with :class:`hh_plugin.torch.HH`'s sequence (in the case's dtype unless
    ``dtype``), recording ``record`` (:func:`record_variables`; default: all)."""
    import torch

    from ..torch.functional import as_parameters
    from ..torch.fused.sequence import hh_sequence
    from .torch_adapter import input_tensor, state_from_record, traces_from_run

    check_case(case)
    names = record_variables(case, record)
    state = state_from_record(case, dtype=dtype, device=device)
    current = input_tensor(case, dtype=state.V.dtype, device=device)
    p = as_parameters(case.spec).to(dtype=state.V.dtype, device=current.device)
    steps = current.shape[0]
    spikes, rows = [], []
    with torch.no_grad(), _progress(steps, progress, "torch") as bar, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", ImplausibleInputWarning)  # check_case warned once
        for start in range(0, steps, chunk):
            z, states, state = hh_sequence(current[start:start + chunk], state, p,
                                           case.dt * 1e-3, record_states=names,
                                           return_final=True)
            _check_finite(states.V.cpu().numpy(), start, case.dt, case.time, case.path)
            spikes.append(z)
            rows.append(states)
            if bar is not None:
                bar.update(z.shape[0])
    spikes = torch.cat(spikes)
    stacked = type(rows[0])(*(None if rows[0][i] is None else torch.cat([r[i] for r in rows])
                              for i in range(len(rows[0]))))
    traces = traces_from_run(spikes, stacked, case.dt * 1e-3, t_start=case.time)
    final = {name: getattr(state, name).cpu().numpy().copy()
             for name in case.spec.model.state_names}
    return HHRecord(spec=case.spec, dt=case.dt, state=final, time=float(traces["time"][-1]),
                    traces=traces,
                    provenance={"backend": "torch", "device": str(state.V.device),
                                "source": str(case.path or "")})


def run_brian2(case: HHRecord, *, progress: bool = False, target: str = "numpy",
               record=None) -> HHRecord:
    """Run ``case`` with a Brian2 ``NeuronGroup`` (runtime mode, ``target`` code generation),
    recording ``record`` (:func:`record_variables`; default: all).

    Brian2 computes in float64 whatever the case's dtype.
    """
    import brian2

    from .brian2_adapter import group_from_record, state_from_group, traces_from_monitors

    check_case(case)
    names = record_variables(case, record)
    shape = case.shape
    steps = len(case.input)
    flat = np.ascontiguousarray(case.input, dtype=np.float64).reshape(steps, -1)
    old_target = brian2.prefs.codegen.target
    brian2.prefs.codegen.target = target
    try:
        stimulus = brian2.TimedArray(flat * brian2.uA, dt=case.dt * brian2.ms)
        group = group_from_record(case, current="hh_export_I(t, i)",
                                  namespace={"hh_export_I": stimulus})
        variables = list(names)
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
            if float(net.t / brian2.ms) < (steps - 0.5) * case.dt:
                # Brian2 turns Ctrl-C during a run into a stop at the current step
                raise KeyboardInterrupt("the Brian2 run was stopped before its end")
            if bar is not None:
                bar.n = steps
                bar.refresh()
    finally:
        brian2.prefs.codegen.target = old_target
    traces = traces_from_monitors(state_monitor, spike_monitor, dt=case.dt, n_steps=steps,
                                  t_start=case.time, shape=shape)
    _check_finite(traces["V"], 0, case.dt, case.time, case.path)
    final = state_from_group(group, case.spec, shape)
    return HHRecord(spec=case.spec, dt=case.dt, state=final, time=float(traces["time"][-1]),
                    traces=traces,
                    provenance={"backend": "brian2", "device": f"brian2 runtime ({target})",
                                "source": str(case.path or "")})


def run_case(case: HHRecord, backend: str, *, progress: bool = False, **options) -> HHRecord:
    """Run ``case`` on ``'torch'`` (options: ``device``, ``dtype``, ``chunk``) or ``'brian2'``
    (option: ``target``, default ``'numpy'``); both take ``record`` (the state variables to
    trace, ``V`` among them; default all). Returns the result record (not saved)."""
    if backend == "torch":
        return run_torch(case, progress=progress, **options)
    if backend == "brian2":
        return run_brian2(case, progress=progress, **options)
    raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")
