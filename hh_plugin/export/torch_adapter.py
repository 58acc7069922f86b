"""Torch backend <-> records: ``HHState`` tensors (any device, any float dtype), parameters.

Time units: the torch backend takes ``dt`` in **seconds**; files and records use ms.
Functions here say which they take. Dtypes are kept: a float32 state is written as
float32 and read back bit-exactly (likewise float64).
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from ..model import HHSpec
from ..torch.functional.parameters import as_parameters, parameters_type, state_type
from .errors import FormatError
from .population_file import HHRecord, save

_TORCH_DTYPES = {np.dtype("float16"): torch.float16, np.dtype("float32"): torch.float32,
                 np.dtype("float64"): torch.float64}


def state_to_arrays(state) -> Dict[str, np.ndarray]:
    """``{'V': mV, 'm', 'h', 'n'}`` numpy arrays (CPU copies, same dtype) of an ``HHState``
    (fields that are ``None``, not recorded, are left out)."""
    out = {}
    for name, tensor in state._asdict().items():
        if tensor is None:
            continue
        if tensor.dtype == torch.bfloat16:
            raise ValueError("bfloat16 states have no HDF5 equivalent; convert to float32")
        out[name] = tensor.detach().cpu().numpy().copy()
    return out


def state_from_record(record: HHRecord, dtype: Optional[torch.dtype] = None, device=None):
    """The record's state as an ``HHState`` (tensors in the stored dtype unless ``dtype``)."""
    if record.state is None:
        raise FormatError("the file holds no state", record.path)
    cls = state_type(record.spec.model)
    tensors = []
    for name in record.spec.model.state_names:
        array = record.state[name]
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        tensors.append(tensor.to(dtype=dtype or _TORCH_DTYPES[array.dtype], device=device))
    return cls(*tensors)


def parameters_from_record(record: HHRecord, dtype: torch.dtype = torch.float64, device=None):
    """``HHParameters`` (tensors of ``dtype`` on ``device``) of the record's specification."""
    return parameters_type(record.spec.model).from_spec(record.spec, dtype=dtype, device=device)


def dt_seconds(record: HHRecord) -> float:
    """The record's ``dt`` (stored in ms) in seconds, as the torch backend takes it."""
    if record.dt is None:
        raise FormatError("the file does not fix dt", record.path)
    return record.dt * 1e-3


def input_tensor(record: HHRecord, dtype: Optional[torch.dtype] = None, device=None):
    """The input current (uA) as a ``(T, *S)`` tensor (stored dtype unless ``dtype``)."""
    if record.input is None:
        raise FormatError("the file holds no input current", record.path)
    array = np.ascontiguousarray(record.input)
    return torch.from_numpy(array).to(dtype=dtype or _TORCH_DTYPES[array.dtype], device=device)


def traces_from_run(spikes: torch.Tensor, states, dt: float, t_start: float = 0.0) -> dict:
    """Traces from ``HH(record_states=True)`` output: ``spikes`` and stacked ``states`` (T, ...).

    ``dt`` in **seconds** (torch convention), ``t_start`` in ms: the time of the state
    before row 0; row ``k`` gets time ``t_start + (k+1) dt``.
    """
    steps = spikes.shape[0]
    traces = state_to_arrays(states)
    traces["spikes"] = spikes.detach().cpu().numpy().astype(np.uint8)
    traces["time"] = t_start + np.arange(1, steps + 1, dtype=np.float64) * (dt * 1e3)
    return traces


def save_torch(path, p, state=None, *, dt: float, time: float = 0.0, input=None,
               spikes=None, states=None, overwrite: bool = False, **provenance):
    """Save torch objects: parameters ``p`` (``HHSpec``/``HHParameters``), ``HHState``.

    Args:
        dt: step in **seconds** (torch convention); stored in ms.
        time: time of ``state`` in **ms**; ``spikes``/``states`` (from
            ``HH(record_states=True)``) become traces of the steps that ended at ``state``
            when ``state`` is the final state: their last row has time ``time``.
        input: current (uA) tensor ``(T, *S)`` for the steps after ``state`` (a case file).
    """
    spec = p if isinstance(p, HHSpec) else as_parameters(p).to_spec()
    traces = None
    if spikes is not None and states is not None:
        traces = traces_from_run(spikes, states, dt)
        steps = spikes.shape[0]  # last row at exactly `time`
        traces["time"] = time - (steps - np.arange(1, steps + 1, dtype=np.float64)) * dt * 1e3
    device = None
    if state is not None:
        device = str(state.V.device)
    prov = {"device": device} if device else {}
    prov.update(provenance)
    return save(path, spec, None if state is None else state_to_arrays(state), time=time,
                dt=dt * 1e3, input=input, traces=traces, backend="torch",
                overwrite=overwrite, provenance=prov)
