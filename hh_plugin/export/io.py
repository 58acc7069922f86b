"""`save` and `load`: HHSpec, state, input and traces to and from an HDF5 file (format 1.0).

Writes are atomic: the file is written to a temporary file in the same directory, flushed
and renamed over the target, so an interrupted save leaves any old file intact and no
half-written file behind. Nothing is overwritten unless ``overwrite=True``.
Every problem with a file read back raises :class:`~hh_plugin.export.errors.FormatError`
with a one-line message naming the file and the offending field.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np

from ..model import HHSpec, get_model
from . import format as fmt
from .errors import FormatError
from .record import HHRecord
from .schema import FORMAT_NAME, FORMAT_VERSION, validate
from .units import convert

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
        "spec": {"model": model.name, "integrator": fmt.INTEGRATOR,
                 "dt": None if dt is None else {"value": _finite_float(dt, "dt (ms)", True),
                                                "unit": "ms"},
                 "spike_rule": fmt.SPIKE_RULE,
                 "reset_rule": "none" if spec.V_reset is None else spec.spk_reset,
                 "spk_reset": spec.spk_reset,
                 "surrogate": {"kind": "relu", "alpha": float(spec.alpha),
                               "width": float(spec.width)}},
        "state": state_meta, "input": input_meta, "traces": traces_meta,
        "provenance": prov,
    }
    problems = validate(metadata)
    if problems:
        raise ValueError(problems[0])
    return metadata, arrays


def _write(path: str, metadata: dict, arrays: dict, compression) -> None:
    import h5py

    with h5py.File(path, "w", libver="earliest") as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["metadata"] = json.dumps(metadata, allow_nan=False, sort_keys=True)
        for name, (array, unit) in arrays.items():
            options = {}
            if compression and array.ndim >= 1 and array.size:
                options = {"compression": compression, "shuffle": True}
            dataset = f.create_dataset(name, data=array, **options)
            dataset.attrs["unit"] = unit
        f.flush()


def _atomic_write(path: Path, metadata: dict, arrays: dict, overwrite: bool,
                  compression) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; use overwrite=True (--force) to replace it")
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        _write(tmp, metadata, arrays, compression)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic and never clobbers
            except FileExistsError:
                raise FileExistsError(f"{path} exists; use overwrite=True (--force) to replace "
                                      f"it") from None
            except OSError:  # file systems without hard links
                if path.exists():
                    raise FileExistsError(f"{path} exists; use overwrite=True (--force) to "
                                          f"replace it") from None
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
        compression: an h5py filter for the arrays, e.g. ``'gzip'`` (default: none).

    Returns:
        the path written. Raises ``FileExistsError``, ``TypeError`` or ``ValueError`` (with a
        one-line message) before touching the disk when an argument is invalid.
    """
    path = Path(path)
    metadata, arrays = _prepare(spec, state, time, dt, input, input_t_start, traces,
                                backend, provenance)
    _atomic_write(path, metadata, arrays, overwrite, compression)
    return path


# ============================================================================ load
def _members(group, allowed, required, where: str, path) -> None:
    names = set(group.keys())
    extra = names - set(allowed)
    if extra:
        raise FormatError(f"unexpected field {where}/{sorted(extra)[0]} (not in format "
                          f"{FORMAT_VERSION})", path)
    missing = set(required) - names
    if missing:
        raise FormatError(f"missing field {where}/{sorted(missing)[0]}", path)


def _dataset(group, name: str, where: str, path):
    import h5py

    item = group.get(name)
    if not isinstance(item, h5py.Dataset):
        raise FormatError(f"{where} must be a dataset", path)
    if "unit" not in item.attrs:
        raise FormatError(f"{where} has no 'unit' attribute", path)
    return item[()], item.attrs["unit"]


def _float_dataset(group, name, where, unit, path, shape=None) -> np.ndarray:
    raw, stored_unit = _dataset(group, name, where, path)
    array = fmt.float_array(raw, where, path)
    if shape is not None:
        fmt.check_shape(array, shape, where, path)
    return convert(array, stored_unit, unit, where, path)


def _read_spec(f, meta: dict, path):
    spec_meta = meta["spec"]
    try:
        model = get_model(spec_meta["model"])
    except ValueError as exc:
        raise FormatError(str(exc), path) from None
    has_reset = spec_meta["reset_rule"] != "none"
    _members(f["spec"], ("parameters", "V_reset") if has_reset else ("parameters",),
             ("parameters", "V_reset") if has_reset else ("parameters",), "/spec", path)
    if has_reset and spec_meta["reset_rule"] != spec_meta["spk_reset"]:
        raise FormatError(f"spec.reset_rule {spec_meta['reset_rule']!r} contradicts "
                          f"spec.spk_reset {spec_meta['spk_reset']!r}", path)
    group = f["spec/parameters"]
    _members(group, model.parameter_names, model.parameter_names, "/spec/parameters", path)
    params = {}
    for name in model.parameter_names:
        where = f"/spec/parameters/{name}"
        array = _float_dataset(group, name, where, model.units[name], path)
        if array.ndim > 1:
            raise FormatError(f"{where} has shape {array.shape}, expected () or (neurons,)",
                              path)
        params[name] = array.astype(np.float64)
    V_reset = None
    if has_reset:
        V_reset = _float_dataset(f["spec"], "V_reset", "/spec/V_reset", "mV", path)
        V_reset = V_reset.astype(np.float64)
    try:
        return HHSpec(model=model, spk_reset=spec_meta["spk_reset"],
                      alpha=spec_meta["surrogate"]["alpha"],
                      width=spec_meta["surrogate"]["width"], V_reset=V_reset, **params)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"invalid specification: {exc}", path) from None


def _quantity(q: Optional[dict], where: str, path) -> Optional[float]:
    if q is None:
        return None
    return convert(q["value"], q["unit"], "ms", where, path)


def _read(f, path) -> HHRecord:
    if "format" not in f.attrs:
        raise FormatError("not an hh_plugin file (no 'format' attribute on the root group)",
                          path)
    name = f.attrs["format"]
    name = name.decode() if isinstance(name, bytes) else name
    if name != FORMAT_NAME:
        raise FormatError(f"not an hh_plugin file (format {name!r})", path)
    if "format_version" not in f.attrs:
        raise FormatError("missing root attribute 'format_version'", path)
    version = fmt.check_version(f.attrs["format_version"], path)
    if "metadata" not in f.attrs:
        raise FormatError("missing root attribute 'metadata'", path)
    text = f.attrs["metadata"]
    text = text.decode("utf-8") if isinstance(text, bytes) else text

    def no_constants(token):
        raise FormatError(f"metadata contains {token}, which is not valid JSON", path)

    try:
        meta = json.loads(text, parse_constant=no_constants)
    except (json.JSONDecodeError, TypeError) as exc:
        raise FormatError(f"metadata is not valid JSON: {exc}", path) from None
    problems = validate(meta)
    if problems:
        raise FormatError(f"invalid metadata: {problems[0]}", path)
    if meta["format_version"] != version:
        raise FormatError(f"metadata format_version {meta['format_version']!r} differs from "
                          f"the root attribute {version!r}", path)

    present = [g for g in fmt.ROOT_GROUPS if g == "spec" or meta[g] is not None]
    _members(f, present, present, "", path)
    spec = _read_spec(f, meta, path)
    model = spec.model
    shape = None

    state = time = None
    if meta["state"] is not None:
        group = f["state"]
        _members(group, model.state_names, model.state_names, "/state", path)
        state, units = {}, fmt.state_units(model)
        for name in model.state_names:
            where = f"/state/{name}"
            array = _float_dataset(group, name, where, units[name], path, shape)
            if shape is None:
                if array.ndim < 1 or array.size == 0:
                    raise FormatError(f"{where} has shape {array.shape}; expected at least "
                                      f"one dimension (neurons) and one element", path)
                shape = array.shape
            elif array.dtype != state["V"].dtype:
                raise FormatError(f"{where} is {array.dtype}, /state/V is "
                                  f"{state['V'].dtype}", path)
            state[name] = array
        time = _quantity(meta["state"]["time"], "metadata.state.time", path)

    traces = None
    if meta["traces"] is not None:
        variables = meta["traces"]["variables"]
        allowed = set(model.state_names) | {fmt.SPIKES}
        unknown = set(variables) - allowed
        if unknown:
            raise FormatError(f"unknown trace variable {sorted(unknown)[0]!r}; allowed: "
                              f"{sorted(allowed)}", path)
        group = f["traces"]
        expected = list(variables) + [fmt.TIME]
        _members(group, expected, expected, "/traces", path)
        t = _float_dataset(group, fmt.TIME, "/traces/time", "ms", path, (None,))
        if len(t) == 0 or np.any(np.diff(t) <= 0):
            raise FormatError("/traces/time must be non-empty and increasing", path)
        traces = {fmt.TIME: t}
        units = fmt.trace_units(model)
        for name in variables:
            where = f"/traces/{name}"
            rows = (len(t),) + (tuple(shape) if shape is not None else ())
            if name == fmt.SPIKES:
                raw, unit = _dataset(group, name, where, path)
                array = fmt.spike_array(raw, where, path)
                convert(1.0, unit, "1", where, path)
            else:
                array = _float_dataset(group, name, where, units[name], path)
            if shape is None:
                if array.ndim < 2:
                    raise FormatError(f"{where} has shape {array.shape}, expected "
                                      f"(time, ..., neurons)", path)
                shape = array.shape[1:]
                rows = (len(t),) + tuple(shape)
            fmt.check_shape(array, rows, where, path)
            traces[name] = array

    input_ = t_start = None
    if meta["input"] is not None:
        group = f["input"]
        _members(group, ("I",), ("I",), "/input", path)
        expected = (None,) + (tuple(shape) if shape is not None else (None,))
        input_ = _float_dataset(group, "I", "/input/I", "uA", path, None)
        if shape is None and input_.ndim >= 2:
            expected = (None,) * input_.ndim
        fmt.check_shape(input_, expected, "/input/I", path)
        if len(input_) == 0:
            raise FormatError("/input/I has no rows", path)
        shape = shape if shape is not None else input_.shape[1:]
        t_start = _quantity(meta["input"]["t_start"], "metadata.input.t_start", path)

    if shape is not None:
        for name, value in list(spec.parameters.items()) + [("V_reset", spec.V_reset)]:
            if isinstance(value, np.ndarray) and len(value) != shape[-1]:
                where = "/spec/V_reset" if name == "V_reset" else f"/spec/parameters/{name}"
                raise FormatError(f"{where} has shape {value.shape}, expected () or "
                                  f"({shape[-1]},) for {shape[-1]} neurons", path)

    dt = _quantity(meta["spec"]["dt"], "metadata.spec.dt", path)
    return HHRecord(spec=spec, dt=dt, state=state, time=time, input=input_,
                    input_t_start=t_start, traces=traces, provenance=meta["provenance"],
                    format_version=version, path=str(path))


def load(path) -> HHRecord:
    """Read an hh_plugin file into an :class:`HHRecord` (values in mV, ms, uA, mS, uF).

    Units other than the canonical ones are converted when known (e.g. V in volt) and
    refused otherwise; dtypes of state, input and traces are kept. Any problem raises
    :class:`FormatError` with a one-line message: missing or non-HDF5 or truncated file,
    another format, a newer format version, invalid metadata, missing or extra fields,
    wrong shapes or dtypes, NaN or infinite values, unknown or mismatched units.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FormatError("no such file", path)
    try:
        is_hdf5 = h5py.is_hdf5(str(path))
    except OSError:
        is_hdf5 = False
    if not is_hdf5:
        raise FormatError("not an HDF5 file", path)
    try:
        with h5py.File(path, "r") as f:
            return _read(f, path)
    except FormatError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FormatError(f"cannot read the file (truncated or corrupt?): {detail}",
                          path) from None
