"""`save`: HHSpec, state, input and traces to an HDF5 file (format 1.0); `load` is in :mod:`.reader`.

Writes are atomic (:mod:`.atomic`): the file is written to a hidden temporary file in the
same directory, given a content checksum (:mod:`.checksum`), flushed and renamed over the
target, so an interrupted or killed save leaves any old file intact and no half-written
file behind. Nothing is overwritten unless ``overwrite=True``.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np

from ..model import HHSpec
from . import checksum
from . import format as fmt
from .atomic import atomic_create
from .errors import FormatError
from .schema import FORMAT_NAME, FORMAT_VERSION, validate

_VERSION_PACKAGES = ("numpy", "h5py", "torch", "norse", "brian2")


# ============================================================================ helpers
def _to_numpy(value, where: str) -> np.ndarray:
    """numpy view of an array, tensor (any device, detached) or sequence; dtype kept."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            raise ValueError(f"{where}: bfloat16 has no numpy/HDF5 equivalent; "
                             f"convert to float32 first")
        value = value.numpy()
    return np.asarray(value)


def _as_mapping(value, where: str) -> Dict[str, Any]:
    if hasattr(value, "_asdict"):
        return dict(value._asdict())
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{where} must be a mapping or a NamedTuple such as HHState, "
                    f"got {type(value).__name__}")


def _finite_float(value, where: str, positive: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where} must be a number, got {value!r}") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise ValueError(f"{where} must be a {'positive ' if positive else ''}finite number, "
                         f"got {value!r}")
    return number


def _versions() -> Dict[str, str]:
    from .. import __version__

    versions = {"hh_plugin": __version__, "python": platform.python_version()}
    for name in _VERSION_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return versions


def _check(problem: Optional[str]):
    if problem:
        raise ValueError(problem)


# ============================================================================ save
def _surrogate(spec) -> dict:
    """``spec.surrogate`` of the metadata; ``scale`` (``V_scale``, mV) only when set, so
    that a file without it reads as before (scale :math:`|V_{th}|`, 1 mV at 0 mV)."""
    out = {"kind": "relu", "alpha": float(spec.alpha), "width": float(spec.width)}
    if spec.V_scale is not None:
        out["scale"] = {"value": float(spec.V_scale), "unit": "mV"}
    return out


def _prepare(spec, state, time, dt, input, input_t_start, traces, backend, provenance):
    """Validate everything in memory; return ``(metadata, {path: (array, unit)})``."""
    if hasattr(spec, "to_spec") and not isinstance(spec, HHSpec):
        spec = spec.to_spec()
    if not isinstance(spec, HHSpec):
        raise TypeError(f"spec must be an HHSpec (or HHParameters), got {type(spec).__name__}")
    model = spec.model
    arrays: Dict[str, tuple] = {}
    shape = None

    state_meta = None
    if state is not None:
        values = _as_mapping(state, "state")
        if set(values) != set(model.state_names):
            raise ValueError(f"state must have exactly {list(model.state_names)}, "
                             f"got {sorted(values)}")
        units = fmt.state_units(model)
        first = None
        for name in model.state_names:
            array = _to_numpy(values[name], f"state {name}")
            try:
                array = fmt.float_array(array, f"state {name}")
                if name in model.gate_names:
                    fmt.check_gates(array, f"state {name}")
            except FormatError as exc:
                raise ValueError(str(exc)) from None
            if first is None:
                first = array
                if array.ndim < 1 or array.size == 0:
                    raise ValueError(f"state V must have at least one dimension (neurons) and "
                                     f"one element, got shape {array.shape}")
            elif array.shape != first.shape or array.dtype != first.dtype:
                raise ValueError(f"state {name} is {array.dtype}{list(array.shape)}, but V is "
                                 f"{first.dtype}{list(first.shape)}")
            arrays[f"state/{name}"] = (array, units[name])
        shape = first.shape
        time = 0.0 if time is None else _finite_float(time, "time (ms)")
        state_meta = {"time": {"value": time, "unit": "ms"}}
    elif time is not None:
        raise ValueError("time (ms) is the time of the state; it needs a state")

    traces_meta = None
    if traces is not None:
        values = _as_mapping(traces, "traces")
        if fmt.TIME not in values:
            raise ValueError("traces need a 'time' array (ms, the time of each row)")
        allowed = set(model.state_names) | {fmt.SPIKES}
        names = [k for k in values if k != fmt.TIME]
        unknown = set(names) - allowed
        if unknown or not names:
            raise ValueError(f"traces may hold {sorted(allowed)} (at least one) and 'time', "
                             f"got {sorted(values)}")
        t = fmt.float_array(_to_numpy(values[fmt.TIME], "traces time").astype(np.float64),
                            "traces time")
        if t.ndim != 1 or len(t) == 0 or np.any(np.diff(t) <= 0):
            raise ValueError("traces time must be a non-empty, increasing 1-D array (ms)")
        arrays["traces/time"] = (t, "ms")
        units = fmt.trace_units(model)
        for name in sorted(names, key=lambda n: (n == fmt.SPIKES, n)):
            array = _to_numpy(values[name], f"traces {name}")
            try:
                array = (fmt.spike_array(array, "traces spikes") if name == fmt.SPIKES
                         else fmt.float_array(array, f"traces {name}"))
                if name in model.gate_names:
                    fmt.check_gates(array, f"traces {name}")
            except FormatError as exc:
                raise ValueError(str(exc)) from None
            if shape is None:
                shape = array.shape[1:]
            if array.shape != (len(t),) + tuple(shape):
                raise ValueError(f"traces {name} has shape {array.shape}, expected "
                                 f"{(len(t),) + tuple(shape)}")
            arrays[f"traces/{name}"] = (array, units[name])
        traces_meta = {"variables": sorted(names, key=lambda n: (n == fmt.SPIKES, n))}

    input_meta = None
    if input is not None:
        array = _to_numpy(input, "input")
        try:
            array = fmt.float_array(array, "input")
        except FormatError as exc:
            raise ValueError(str(exc)) from None
        if shape is None:
            shape = array.shape[1:]
        if array.ndim != 1 + len(shape) or array.shape[1:] != tuple(shape) or len(array) == 0:
            raise ValueError(f"input has shape {array.shape}, expected (T, *{tuple(shape)}) "
                             f"with T >= 1")
        arrays["input/I"] = (array, "uA")
        if input_t_start is None:
            input_t_start = time if time is not None else 0.0
        input_meta = {"t_start": {"value": _finite_float(input_t_start, "input_t_start"),
                                  "unit": "ms"}}

    if shape is not None and len(shape) >= 1:
        try:
            spec.check_size(shape[-1])
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    for name, value in spec.parameters.items():
        arrays[f"spec/parameters/{name}"] = (np.asarray(value, dtype=np.float64),
                                             model.units[name])
    if spec.V_reset is not None:
        arrays["spec/V_reset"] = (np.asarray(spec.V_reset, dtype=np.float64), "mV")

    prov = {"backend": backend or "none",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "versions": _versions()}
    for key, value in (provenance or {}).items():
        prov[key] = str(value)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "spec": {"model": model.name, "definition": model.to_dict(),
                 "integrator": fmt.INTEGRATOR,
                 "dt": None if dt is None else {"value": _finite_float(dt, "dt (ms)", True),
                                                "unit": "ms"},
                 "spike_rule": fmt.SPIKE_RULE,
                 "reset_rule": "none" if spec.V_reset is None else spec.spk_reset,
                 "spk_reset": spec.spk_reset,
                 "surrogate": _surrogate(spec)},
        "state": state_meta, "input": input_meta, "traces": traces_meta,
        "provenance": prov,
    }
    problems = validate(metadata)
    if problems:
        raise ValueError(problems[0])
    return metadata, arrays


#: Arrays larger than this are written in slices along their first axis, so that an
#: interrupt is acted on between slices.
_SLICE_BYTES = 16 << 20


def _write(path: str, metadata: dict, arrays: dict, compression, check=lambda: None) -> None:
    """Write the HDF5 content (with the 512-byte user block for the checksum) to ``path``."""
    import h5py

    with h5py.File(path, "w", libver="earliest", userblock_size=checksum.USERBLOCK_SIZE,
                   locking=False) as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = metadata["format_version"]  # 1.0, or 1.1 for networks
        f.attrs["metadata"] = json.dumps(metadata, allow_nan=False, sort_keys=True)
        for name, (array, unit) in arrays.items():
            check()
            options = {}
            if compression and array.ndim >= 1 and array.size:
                options = {"compression": compression, "shuffle": True}
            if array.nbytes <= _SLICE_BYTES or array.ndim == 0:
                dataset = f.create_dataset(name, data=array, **options)
            else:
                dataset = f.create_dataset(name, shape=array.shape, dtype=array.dtype,
                                           **options)
                rows = max(1, _SLICE_BYTES // max(1, array[0].nbytes))
                for start in range(0, len(array), rows):
                    dataset[start:start + rows] = array[start:start + rows]
                    check()
            dataset.attrs["unit"] = unit
        f.flush()


def _fill(metadata: dict, arrays: dict, compression):
    def fill(tmp: str, fd: int, check) -> None:
        _write(tmp, metadata, arrays, compression, check)
        checksum.stamp(fd, check)
    return fill


def _check_compression(compression):
    if compression in (None, False, "gzip"):
        return compression or None
    if isinstance(compression, int) and not isinstance(compression, bool) \
            and 0 <= compression <= 9:
        return compression  # h5py: gzip at this level
    raise ValueError(f"compression {compression!r}: the format allows only deflate, "
                     f"compression='gzip' or a gzip level 0-9")


def save(path, spec, state=None, *, time: Optional[float] = None, dt: Optional[float] = None,
         input=None, input_t_start: Optional[float] = None, traces=None,
         backend: Optional[str] = None, overwrite: bool = False,
         provenance: Optional[Mapping[str, str]] = None, compression=None) -> Path:
    """Write an hh_plugin file (format 1.0) atomically.

    Args:
        path: target file; refused if it exists unless ``overwrite=True``.
        spec: the :class:`~hh_plugin.HHSpec` (or ``HHParameters``; its ``to_spec()`` is saved).
        state: ``{'V': mV, 'm', 'h', 'n'}`` arrays or an ``HHState`` of tensors (any device),
            one shape (batch..., neurons) and one float dtype, which is kept (float16/32/64).
        time: time (ms) the state belongs to (default 0 when a state is given).
        dt: integration step (ms), or ``None`` for a file that does not fix one.
        input: current in uA, shape ``(T, *S)``: row ``k`` drives the step starting at
            ``input_t_start + k dt`` (``input_t_start`` defaults to ``time``, else 0).
        traces: ``{'time': (T,) ms, 'V'/'m'/'h'/'n': (T, *S), 'spikes': (T, *S) 0/1}``,
            ``time[k]`` the time of the state in row ``k`` (after the step).
        backend: ``'torch'``, ``'brian2'`` or ``None`` (stored as ``'none'``).
        provenance: extra strings: ``device``, ``source``, ``notes``.
        compression: ``'gzip'`` or a gzip level 0-9 for the arrays (default: none; the
            format allows no other filter).

    Returns:
        the path written. Raises ``FileExistsError``, ``TypeError`` or ``ValueError`` (with a
        one-line message) before touching the disk when an argument is invalid.

    The file carries a content checksum (:mod:`.checksum`); its mode is that of the file
    it replaces, else ``0o666`` minus the umask. Ctrl-C (or SIGTERM) during the save stops
    it at the next 16 MB, removes the temporary file and raises ``KeyboardInterrupt``
    (or terminates); a temporary file left by a killed process is removed by the next
    save into the same directory (:mod:`.atomic`).
    """
    path = Path(path)
    compression = _check_compression(compression)
    metadata, arrays = _prepare(spec, state, time, dt, input, input_t_start, traces,
                                backend, provenance)
    return atomic_create(path, _fill(metadata, arrays, compression), overwrite=overwrite)


# ============================================================================ load
# The reader lives in .reader; ``io.load`` is kept for existing imports.
from .reader import load  # noqa: E402,F401
