"""`load`: read an hh_plugin file (format 1.0) that may come from anyone.

Every file is treated as hostile. Reading goes in this order, and each step refuses the
file with a one-line :class:`~hh_plugin.export.errors.FormatError` before the next runs:

1. **Without HDF5** (:mod:`.checksum`): the path must be a regular, non-empty file no
   larger than the limit (a directory, pipe or device is named as such and never opened
   for reading by HDF5); the recorded content checksum, when the file has one, must match.
2. **HDF5 headers only** (:mod:`.layout`): root attributes, then the metadata (JSON with
   finite numbers only, valid against the schema), then the tree of groups and datasets
   against the table the metadata implies; storage, filters, types and declared sizes.
3. **Data**: the arrays are read, then checked in plain numpy (:func:`build_record`):
   dtypes, shapes, NaN/inf, units, gate values in [0, 1], model parameters.

Where HDF5 parses the file: by default (untrusted) always in a child process with a time
and memory limit (:mod:`.sandbox`), so that a hang, crash or huge allocation inside HDF5
cannot take the caller down, whatever the file's checksum (a checksum protects against
damage, not against a file crafted to carry a valid one). ``trusted=True`` (files this
program or a trusted colleague wrote) parses a file whose checksum verified in this
process, which saves the child's start (about 1 s, measured in ``docs/export.md``), and
any other file in the child. ``isolate=True`` / ``False`` forces either. The model a
file carries is checked before any symbolic computation in every case
(:func:`hh_plugin.model.expressions.check`).
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ..model import HHSpec, get_model
from ..model.spec import model_from_definition
from . import checksum
from . import format as fmt
from .errors import FormatError
from .layout import DATASET, ROOT_ATTRIBUTES, Limits, check_attributes, expected_tree, walk
from .network_file import check_memory as check_network_memory
from .network_file import check_metadata as check_network_metadata
from .network_file import expected_network_tree, is_network_version
from .record import HHRecord
from .schema import FORMAT_NAME, validate
from .units import convert

#: Largest integer accepted in the metadata (integers are exact in float64 up to this).
MAX_METADATA_INT = 2 ** 53

#: Errors that the HDF5 library and h5py raise on damaged files.
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError,
                IndexError, OverflowError, UnicodeError, RecursionError)


@dataclass
class RawFile:
    """The undecoded content of a file: root attributes and ``{dataset path: (array,
    unit)}``. What the HDF5 part of the reader hands to :func:`build_record`."""

    format: object
    format_version: object
    metadata: object
    arrays: Dict[str, Tuple[np.ndarray, object]]


# ============================================================================ step 1
def probe_file(path: Path, verify: bool, limits: Limits) -> str:
    """Step 1: ``'checksummed'`` or ``'hdf5'``; FormatError for anything else."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # non-blocking: opening a FIFO must not wait for a writer
    except FileNotFoundError:
        raise FormatError("no such file", path) from None
    except IsADirectoryError:
        raise FormatError("is a directory, not a file", path) from None
    except PermissionError:
        raise FormatError("permission denied", path) from None
    except OSError as exc:
        raise FormatError(f"cannot open the file: {exc.strerror or exc}", path) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FormatError("is a directory, not a file", path)
        if not stat.S_ISREG(info.st_mode):
            raise FormatError("is not a regular file (a device, pipe or socket)", path)
        if info.st_size == 0:
            raise FormatError("is empty (0 bytes), not an HDF5 file", path)
        if info.st_size > limits.max_file_bytes:
            raise FormatError(f"is {info.st_size} bytes, larger than the reader's limit of "
                              f"{limits.max_file_bytes} (HH_PLUGIN_MAX_READ_BYTES)", path)
        result = checksum.probe(fd, verify=verify)
    except checksum.ChecksumError as exc:
        raise FormatError(str(exc), path) from None
    except OSError as exc:
        raise FormatError(f"cannot read the file: {exc.strerror or exc}", path) from None
    finally:
        os.close(fd)
    if result.kind == "other":
        raise FormatError("not an HDF5 file", path)
    return result.kind


# ============================================================================ step 2
def _text(value, where: str, path, limit: int = Limits.max_attribute_bytes) -> str:
    """A string attribute's value (variable-length strings are only measured once read)."""
    if isinstance(value, (bytes, np.bytes_)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{where} is not valid UTF-8", path) from None
    if not isinstance(value, str):
        raise FormatError(f"{where} must be a string", path)
    if len(value) > limit:
        raise FormatError(f"{where} is {len(value)} characters, over the limit of {limit}",
                          path)
    return value


def parse_metadata(text: str, path, network: bool = False) -> dict:
    """The metadata JSON: finite numbers only, integers within +-2**53, schema-valid
    (a network file's metadata is checked by :mod:`.network_file`)."""

    def no_constants(token):
        raise FormatError(f"metadata contains {token}, which is not valid JSON", path)

    def finite_float(token):
        value = float(token)
        if not math.isfinite(value):
            raise FormatError(f"metadata contains the number {token[:30]}, which is out of "
                              f"range (numbers must be finite)", path)
        return value

    def bounded_int(token):
        digits = token.lstrip("-")
        if len(digits) > 16 or abs(int(token)) > MAX_METADATA_INT:
            raise FormatError(f"metadata contains an integer of {len(digits)} digits, out of "
                              f"range (at most 2**53)", path)
        return int(token)

    try:
        meta = json.loads(text, parse_constant=no_constants, parse_float=finite_float,
                          parse_int=bounded_int)
    except (json.JSONDecodeError, TypeError) as exc:
        raise FormatError(f"metadata is not valid JSON: {exc}", path) from None
    except RecursionError:
        raise FormatError("metadata is nested too deeply", path) from None
    if network:
        if not isinstance(meta, dict):
            raise FormatError("invalid metadata: metadata must be an object", path)
        check_network_metadata(meta, path)
        return meta
    problems = validate(meta)
    if problems:
        raise FormatError(f"invalid metadata: {problems[0]}", path)
    return meta


def check_root(raw: RawFile, path) -> Tuple[dict, str]:
    """Root attributes: ``(metadata, version)``."""
    name = _text(raw.format, "root attribute 'format'", path)
    if name != FORMAT_NAME:
        raise FormatError(f"not an hh_plugin file (format {name[:40]!r})", path)
    version = fmt.check_version(_text(raw.format_version, "root attribute 'format_version'",
                                      path), path)
    meta = parse_metadata(_text(raw.metadata, "root attribute 'metadata'", path,
                                Limits.max_metadata_bytes), path,
                          network=is_network_version(version))
    if meta["format_version"] != version:
        raise FormatError(f"metadata format_version {meta['format_version']!r} differs from "
                          f"the root attribute {version!r}", path)
    return meta, version


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


def dataset_paths(tree) -> set:
    return {(f"/{name}" if group == "/" else f"{group}/{name}")
            for group, members in tree.items() for name, kind in members.items()
            if kind == DATASET}


def read_raw(f, path, limits: Limits) -> RawFile:
    """Steps 2 and 3 on an open ``h5py.File``: checks the headers, then reads the arrays."""
    if "format" not in f.attrs:
        raise FormatError("not an hh_plugin file (no 'format' attribute on the root group)",
                          path)
    check_attributes(f, ROOT_ATTRIBUTES, "the root group", limits, path,
                     required=ROOT_ATTRIBUTES)
    raw = RawFile(f.attrs["format"], f.attrs["format_version"], f.attrs["metadata"], {})
    meta, version = check_root(raw, path)
    if is_network_version(version):
        tree = expected_network_tree(meta, path)
    else:
        tree = expected_tree(meta, _model(meta, path))
    infos = walk(f, tree, limits, path)
    if is_network_version(version):
        check_network_memory(meta, infos, limits, path)  # from the shapes, before reading
    for where in sorted(dataset_paths(tree)):
        ds = f[where]
        raw.arrays[where] = (np.asarray(ds[()]), ds.attrs["unit"])
    return raw


# ============================================================================ step 3
def _float(raw: RawFile, where, unit, path, shape=None) -> np.ndarray:
    values, stored_unit = raw.arrays[where]
    array = fmt.float_array(values, where, path)
    if shape is not None:
        fmt.check_shape(array, shape, where, path)
    stored_unit = _text(stored_unit, f"{where} unit attribute", path)
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
    try:
        return HHSpec(model=model, spk_reset=spec_meta["spk_reset"],
                      alpha=spec_meta["surrogate"]["alpha"],
                      width=spec_meta["surrogate"]["width"], V_reset=V_reset,
                      V_scale=V_scale, **params)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"invalid specification: {exc}", path) from None


def build_record(raw: RawFile, path) -> HHRecord:
    """Step 3: validate the decoded content and build the :class:`HHRecord` (pure numpy)."""
    meta, version = check_root(raw, path)
    if is_network_version(version):
        raise FormatError("a network file (format 1.1): read it with "
                          "hh_plugin.export.load_network", path)
    model = _model(meta, path)
    expected = dataset_paths(expected_tree(meta, model))
    if set(raw.arrays) != expected:
        missing = sorted(expected - set(raw.arrays))
        if missing:
            raise FormatError(f"missing field {missing[0]}", path)
        raise FormatError(f"unexpected field {sorted(set(raw.arrays) - expected)[0]} (not in "
                          f"format 1.0)", path)
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
                convert(1.0, _text(unit, f"{where} unit attribute", path), "1", where, path)
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


# ============================================================================ in process
def read_file(path: Path, limits: Limits) -> RawFile:
    """Parse ``path`` with HDF5 in this process (steps 2 and 3's reads); FormatError on
    anything wrong."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return read_raw(f, path, limits)
    except FormatError:
        raise
    except MemoryError:
        raise FormatError("not enough memory to read the file", path) from None
    except _READ_ERRORS as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FormatError(f"cannot read the file (truncated or corrupt?): {detail}",
                          path) from None


def load(path, *, trusted: bool = False, isolate: Optional[bool] = None, verify: bool = True,
         max_bytes=None, timeout: Optional[float] = None) -> HHRecord:
    """Read an hh_plugin file into an :class:`HHRecord` (values in mV, ms, uA, mS, uF).

    Args:
        path: the file.
        trusted: ``False`` (default): the file may come from anyone; HDF5 parses it in a
            child process with a time and memory limit (about 1 s more per file).
            ``True``: a file whose content checksum verified is parsed in this process
            (files you or a trusted writer made), any other in the child.
        isolate: ``None`` (default): as ``trusted`` says; ``True``: always in a child
            process; ``False``: always in this process.
        verify: check the content checksum recorded in the file (default). ``False``
            ignores it (a file edited on purpose with another HDF5 tool), which makes the
            file count as unverified.
        max_bytes: limit on the data the file declares, all datasets together,
            uncompressed (default ``$HH_PLUGIN_MAX_READ_BYTES`` or 1 GiB).
        timeout: seconds the child process may take (default
            ``$HH_PLUGIN_READ_TIMEOUT`` or 120).

    Units other than the canonical ones are converted when known (e.g. V in volt) and
    refused otherwise; dtypes of state, input and traces are kept. Any problem raises
    :class:`FormatError` with a one-line message: missing, empty, non-regular, non-HDF5,
    damaged (checksum) or truncated file, another format, a newer format version, invalid
    metadata, missing or extra fields, links or attributes, data stored outside the file,
    declared sizes over the limit, wrong shapes or dtypes, NaN or infinite values, gate
    values outside [0, 1], unknown or mismatched units. ``export/FORMAT.md`` section 5 lists
    the rules.
    """
    raw, path, _ = read_checked(path, isolate, verify, max_bytes, timeout, trusted)
    return build_record(raw, path)


def read_checked(path, isolate: Optional[bool], verify: bool, max_bytes,
                 timeout: Optional[float], trusted: bool = False
                 ) -> Tuple[RawFile, Path, Limits]:
    """Steps 1 and 2 and the reads of :func:`load` (of any format version), in this
    process or a child process as ``isolate`` and ``trusted`` say: ``(raw content, path,
    limits)``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    limits = Limits.default(max_bytes)
    kind = probe_file(path, verify, limits)
    if isolate is None:
        isolate = not (trusted and kind == "checksummed")
    if isolate:
        from .sandbox import load_isolated_raw

        return load_isolated_raw(path, limits, timeout=timeout), path, limits
    return read_file(path, limits), path, limits
