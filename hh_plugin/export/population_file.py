"""Population files (format 1.0): one :class:`~hh_plugin.HHSpec` with, optionally, a state,
an input current and the traces of a run (``export/FORMAT.md`` sections 2-6).

This record kind sits on the container layer (:mod:`.container`): :func:`save` hands it
the metadata and arrays to write; reading, :func:`record_from_raw` checks the
container's content against what the metadata declares (schema, the exact groups and
datasets of :func:`expected_tree`), then every array in plain numpy: dtypes, shapes,
NaN/inf, units, gate values in [0, 1], model parameters. The model a file carries is
checked before any symbolic computation (:func:`hh_plugin.model.expressions.check`) and
used for this record only, never registered.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ..model import HHSpec, get_model
from ..model.spec import model_from_definition
from . import format as fmt
from .container.atomic import atomic_create
from .container.hdf5 import (RawFile, check_compression, check_members, filler, text,
                             writer_versions)
from .container.members import DATASET, GROUP
from .errors import FormatError
from .schema import FORMAT_NAME, FORMAT_VERSION, validate
from .units import convert

# ============================================================================ record
@dataclass(frozen=True, eq=False)
class HHRecord:
    """What :func:`hh_plugin.export.load` returns and :meth:`save` writes.

    Attributes:
        spec: the :class:`~hh_plugin.HHSpec` (parameters in mV, mS, uF).
        dt: integration step in ms, or ``None`` when the file does not fix one.
        state: ``{'V': mV, 'm': 1, 'h': 1, 'n': 1}`` arrays of one shape ``S`` (batch
            dimensions first, neurons last) and one float dtype, or ``None``.
        time: the time (ms) ``state`` belongs to.
        input: input current in uA, shape ``(T, *S)``; row ``k`` is applied during the
            step from ``input_t_start + k dt`` to ``input_t_start + (k+1) dt``.
        input_t_start: start (ms) of the step that uses input row 0.
        traces: ``{'time': (T,) ms, 'V'/'m'/'h'/'n': (T, *S), 'spikes': (T, *S) uint8}``;
            row ``k`` is the state after a step, at ``traces['time'][k]``, and
            ``spikes[k] = 1`` iff that step crossed ``V_th`` upwards.
        provenance: ``backend``, ``created`` (ISO 8601, UTC), ``versions`` and optional
            ``device``, ``source``, ``notes``.
        format_version: version of the file this was read from.
        path: the file this was read from (``None`` for a record made in memory).
    """

    spec: HHSpec
    dt: Optional[float] = None
    state: Optional[Dict[str, np.ndarray]] = None
    time: Optional[float] = None
    input: Optional[np.ndarray] = None
    input_t_start: Optional[float] = None
    traces: Optional[Dict[str, np.ndarray]] = None
    provenance: Dict[str, Any] = field(default_factory=dict)
    format_version: str = FORMAT_VERSION
    path: Optional[str] = None

    @property
    def shape(self) -> Optional[Tuple[int, ...]]:
        """Population shape ``S`` (batch dimensions, then neurons)."""
        if self.state is not None:
            return tuple(self.state["V"].shape)
        if self.traces is not None:
            name = next(k for k in self.traces if k != "time")
            return tuple(self.traces[name].shape[1:])
        if self.input is not None:
            return tuple(self.input.shape[1:])
        return None

    @property
    def dtype(self) -> Optional[np.dtype]:
        """Float dtype of the state (else of the traces, else of the input)."""
        if self.state is not None:
            return self.state["V"].dtype
        if self.traces is not None:
            for name, values in self.traces.items():
                if name not in ("time", "spikes"):
                    return values.dtype
        if self.input is not None:
            return self.input.dtype
        return None

    @property
    def n_steps(self) -> Optional[int]:
        """Number of trace rows (else input rows), or ``None``."""
        if self.traces is not None:
            return len(self.traces["time"])
        if self.input is not None:
            return len(self.input)
        return None

    @property
    def backend(self) -> str:
        return self.provenance.get("backend", "none")

    def save(self, path, *, overwrite: bool = False, **provenance) -> "Path":
        """Write this record with :func:`hh_plugin.export.save` (provenance kept unless given)."""
        prov = {k: v for k, v in self.provenance.items()
                if k in ("device", "source", "notes")}
        prov.update({k: v for k, v in provenance.items() if k != "backend"})
        return save(path, self.spec, self.state, time=self.time, dt=self.dt, input=self.input,
                    input_t_start=self.input_t_start, traces=self.traces,
                    backend=provenance.get("backend", self.backend), overwrite=overwrite,
                    provenance=prov)


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
            "versions": writer_versions()}
    for key, value in (provenance or {}).items():
        prov[key] = str(value)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "spec": {"model": model.name, "definition": model.to_dict(),
                 "integrator": fmt.INTEGRATORS[spec.method],
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


# ============================================================================ save
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

    The file carries a content checksum (:mod:`.container.checksum`); its mode is that of the file
    it replaces, else ``0o666`` minus the umask. Ctrl-C (or SIGTERM) during the save stops
    it at the next 16 MB, removes the temporary file and raises ``KeyboardInterrupt``
    (or terminates); a temporary file left by a killed process is removed by the next
    save into the same directory (:mod:`.container.atomic`).
    """
    path = Path(path)
    compression = check_compression(compression)
    metadata, arrays = _prepare(spec, state, time, dt, input, input_t_start, traces,
                                backend, provenance)
    return atomic_create(path, filler(metadata, arrays, compression), overwrite=overwrite)


# ============================================================================ read
def expected_tree(meta: dict, model) -> Dict[str, Dict[str, str]]:
    """``{group path: {member name: 'group' | 'dataset'}}``: every member a file with this
    (validated) metadata has, and nothing else (format 1.0, section 2)."""
    root = {"spec": GROUP}
    tree = {"/": root,
            "/spec": {"parameters": GROUP},
            "/spec/parameters": {name: DATASET for name in model.parameter_names}}
    if meta["spec"]["reset_rule"] != "none":
        tree["/spec"]["V_reset"] = DATASET
    if meta["state"] is not None:
        root["state"] = GROUP
        tree["/state"] = {name: DATASET for name in model.state_names}
    if meta["input"] is not None:
        root["input"] = GROUP
        tree["/input"] = {"I": DATASET}
    if meta["traces"] is not None:
        root["traces"] = GROUP
        tree["/traces"] = {name: DATASET for name in list(meta["traces"]["variables"]) + ["time"]}
    return tree


def _model(meta: dict, path):
    """The file's model: its carried definition (parsed, never evaluated; it must equal a
    registered model of the same name) or, in files without one, the registered name."""
    spec = meta["spec"]
    try:
        if "definition" in spec:
            definition = spec["definition"]
            if not isinstance(definition, dict) or definition.get("name") != spec["model"]:
                raise ValueError(f"the file names model {spec['model']!r} but carries the "
                                 f"definition of another model")
            return model_from_definition(definition)
        return get_model(spec["model"])
    except (ValueError, TypeError) as exc:
        raise FormatError(f"model: {exc}", path) from None


# ============================================================================ step 3
def _float(raw: RawFile, where, unit, path, shape=None) -> np.ndarray:
    values, stored_unit = raw.arrays[where]
    array = fmt.float_array(values, where, path)
    if shape is not None:
        fmt.check_shape(array, shape, where, path)
    stored_unit = text(stored_unit, f"{where} unit attribute", path)
    array = convert(array, stored_unit, unit, where, path)
    if not np.all(np.isfinite(array)):
        raise FormatError(f"{where} overflows when converted from {stored_unit} to {unit}",
                          path)
    return array


def _quantity(q: Optional[dict], where: str, path) -> Optional[float]:
    if q is None:
        return None
    value = convert(q["value"], q["unit"], "ms", where, path)
    if not math.isfinite(value):
        raise FormatError(f"{where} is out of range in ms", path)
    return value


def _voltage(q: dict, where: str, path) -> float:
    value = convert(q["value"], q["unit"], "mV", where, path)
    if not math.isfinite(value):
        raise FormatError(f"{where} is out of range in mV", path)
    return value


def _spec(raw: RawFile, meta: dict, model, path) -> HHSpec:
    spec_meta = meta["spec"]
    has_reset = spec_meta["reset_rule"] != "none"
    if has_reset and spec_meta["reset_rule"] != spec_meta["spk_reset"]:
        raise FormatError(f"spec.reset_rule {spec_meta['reset_rule']!r} contradicts "
                          f"spec.spk_reset {spec_meta['spk_reset']!r}", path)
    params = {}
    for name in model.parameter_names:
        where = f"/spec/parameters/{name}"
        array = _float(raw, where, model.units[name], path)
        if array.ndim > 1:
            raise FormatError(f"{where} has shape {array.shape}, expected () or (neurons,)",
                              path)
        params[name] = array.astype(np.float64)
    V_reset = None
    if has_reset:
        V_reset = _float(raw, "/spec/V_reset", "mV", path)
        if V_reset.ndim > 1:
            raise FormatError(f"/spec/V_reset has shape {V_reset.shape}, expected () or "
                              f"(neurons,)", path)
        V_reset = V_reset.astype(np.float64)
    scale = spec_meta["surrogate"].get("scale")
    V_scale = None if scale is None else _voltage(scale, "spec.surrogate.scale", path)
    method = {text: name for name, text in fmt.INTEGRATORS.items()}[spec_meta["integrator"]]
    try:
        return HHSpec(model=model, spk_reset=spec_meta["spk_reset"], method=method,
                      alpha=spec_meta["surrogate"]["alpha"],
                      width=spec_meta["surrogate"]["width"], V_reset=V_reset,
                      V_scale=V_scale, **params)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"invalid specification: {exc}", path) from None


def check_metadata(meta: dict, path) -> None:
    """The metadata against the format 1.0 schema (:mod:`.schema`)."""
    problems = validate(meta)
    if problems:
        raise FormatError(f"invalid metadata: {problems[0]}", path)


def record_from_raw(raw: RawFile, meta: dict, version: str, path) -> HHRecord:
    """A population file's container content (its root already decoded into ``meta``
    and ``version``) checked and built into an :class:`HHRecord`, in plain numpy."""
    check_metadata(meta, path)
    model = _model(meta, path)
    check_members(raw, expected_tree(meta, model), path, version)
    spec = _spec(raw, meta, model, path)
    gates = set(model.gate_names)
    shape = None

    state = time = None
    if meta["state"] is not None:
        state, units = {}, fmt.state_units(model)
        for name in model.state_names:
            where = f"/state/{name}"
            array = _float(raw, where, units[name], path, shape)
            if shape is None:
                if array.ndim < 1 or array.size == 0:
                    raise FormatError(f"{where} has shape {array.shape}; expected at least "
                                      f"one dimension (neurons) and one element", path)
                shape = array.shape
            elif array.dtype != state["V"].dtype:
                raise FormatError(f"{where} is {array.dtype}, /state/V is "
                                  f"{state['V'].dtype}", path)
            if name in gates:
                fmt.check_gates(array, where, path)
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
        t = _float(raw, "/traces/time", "ms", path, (None,))
        if len(t) == 0 or np.any(np.diff(t) <= 0):
            raise FormatError("/traces/time must be non-empty and increasing", path)
        traces = {fmt.TIME: t}
        units = fmt.trace_units(model)
        for name in variables:
            where = f"/traces/{name}"
            rows = (len(t),) + (tuple(shape) if shape is not None else ())
            if name == fmt.SPIKES:
                values, unit = raw.arrays[where]
                array = fmt.spike_array(values, where, path)
                convert(1.0, text(unit, f"{where} unit attribute", path), "1", where, path)
            else:
                array = _float(raw, where, units[name], path)
                if name in gates:
                    fmt.check_gates(array, where, path)
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
        input_ = _float(raw, "/input/I", "uA", path)
        expected_shape = (None,) + (tuple(shape) if shape is not None else (None,))
        if shape is None and input_.ndim >= 2:
            expected_shape = (None,) * input_.ndim
        fmt.check_shape(input_, expected_shape, "/input/I", path)
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


