"""The hh_plugin container: an HDF5 file with a checksum block, three root attributes and
numeric datasets, read and written without knowing which record kind it holds.

Reading goes in this order, each step refusing the file with a one-line
:class:`~hh_plugin.export.errors.FormatError` before the next runs:

1. **Without HDF5** (:func:`probe_file`, :mod:`.checksum`): the path must be a regular,
   non-empty file no larger than the limit (a directory, pipe or device is named as such
   and never opened by HDF5); the recorded content checksum, when the file has one, must
   match.
2. **Root attributes** (:func:`decode_root`): ``format = 'hh_plugin'``, a
   ``format_version`` this reader knows (``MAJOR.MINOR``, at most the newest), and
   ``metadata``, a JSON object with finite numbers only, integers within
   :math:`\\pm 2^{53}`, whose own ``format_version`` agrees.
3. **HDF5 headers** (:mod:`.members`): every group and dataset, before any data is read.
4. **Data**: each dataset read whole, with its ``unit`` attribute.

What comes out is a :class:`RawFile`: the record kinds check it against their metadata.
Steps 2-4 run in the process :mod:`.trust` chooses (a sandboxed child by default).
"""

from __future__ import annotations

import json
import math
import os
import platform
import stat
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from ...formats import FORMAT_NAME, NETWORK_FORMAT_VERSION
from ..errors import FormatError
from . import checksum
from .limits import Limits
from .members import DATASET, GROUP, walk

#: The newest format version this reader reads (1.0: one population, 1.1: networks).
NEWEST_VERSION = NETWORK_FORMAT_VERSION
#: Largest integer accepted in the metadata (integers are exact in float64 up to this).
MAX_METADATA_INT = 2 ** 53
#: Arrays larger than this are written in slices along their first axis, so that an
#: interrupt is acted on between slices.
SLICE_BYTES = 16 << 20

#: Errors that the HDF5 library and h5py raise on damaged files.
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError,
                IndexError, OverflowError, UnicodeError, RecursionError)
_VERSION_PACKAGES = ("numpy", "h5py", "torch", "norse", "brian2")


@dataclass
class RawFile:
    """A container's undecoded content: the root attributes as stored, the groups below
    the root and ``{dataset path: (array, unit attribute)}``."""

    format: object
    format_version: object
    metadata: object
    arrays: Dict[str, Tuple[np.ndarray, object]]
    groups: Tuple[str, ...] = field(default_factory=tuple)


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
def text(value, where: str, path, limit: int = Limits.max_attribute_bytes) -> str:
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


def parse_version(value) -> Tuple[int, int]:
    """``'1.0'`` -> ``(1, 0)``; FormatError for anything else."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        major, minor = str(value).split(".")
        return int(major), int(minor)
    except ValueError:
        raise FormatError(f"format_version {value!r} is not of the form MAJOR.MINOR") from None


def check_version(value, path=None) -> str:
    """The version as ``'MAJOR.MINOR'``; refuses one newer than :data:`NEWEST_VERSION`
    (or malformed, or older than 1.0)."""
    try:
        version = parse_version(value)
    except FormatError as exc:
        raise FormatError(str(exc), path) from None
    if version > parse_version(NEWEST_VERSION):
        raise FormatError(f"format version {value} is newer than the newest this reader "
                          f"supports ({NEWEST_VERSION}); upgrade hh_plugin", path)
    if version < (1, 0):
        raise FormatError(f"format version {value} is not supported", path)
    return f"{version[0]}.{version[1]}"


def parse_metadata(source: str, path) -> dict:
    """The metadata JSON: an object, finite numbers only, integers within +-2**53."""

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
        meta = json.loads(source, parse_constant=no_constants, parse_float=finite_float,
                          parse_int=bounded_int)
    except (json.JSONDecodeError, TypeError) as exc:
        raise FormatError(f"metadata is not valid JSON: {exc}", path) from None
    except RecursionError:
        raise FormatError("metadata is nested too deeply", path) from None
    if not isinstance(meta, dict):
        raise FormatError("invalid metadata: metadata must be an object", path)
    return meta


def decode_root(raw: RawFile, path) -> Tuple[dict, str]:
    """Step 2 on the root attributes: ``(metadata, version)``. The metadata is a JSON
    object whose ``format_version`` equals the root attribute; its content is the record
    kind's to check."""
    name = text(raw.format, "root attribute 'format'", path)
    if name != FORMAT_NAME:
        raise FormatError(f"not an hh_plugin file (format {name[:40]!r})", path)
    version = check_version(text(raw.format_version, "root attribute 'format_version'",
                                 path), path)
    meta = parse_metadata(text(raw.metadata, "root attribute 'metadata'", path,
                               Limits.max_metadata_bytes), path)
    if meta.get("format_version") != version:
        stated = meta.get("format_version")
        raise FormatError(f"metadata format_version {stated!r} differs from the root "
                          f"attribute {version!r}", path)
    return meta, version


# ============================================================================ steps 3, 4
def read_open(f, path, limits: Limits) -> RawFile:
    """Steps 2-4 on an open ``h5py.File``."""
    if "format" not in f.attrs:
        raise FormatError("not an hh_plugin file (no 'format' attribute on the root group)",
                          path)
    groups, infos = walk(f, limits, path)
    raw = RawFile(f.attrs["format"], f.attrs["format_version"], f.attrs["metadata"], {},
                  groups)
    decode_root(raw, path)
    for where in sorted(infos):
        ds = f[where]
        raw.arrays[where] = (np.asarray(ds[()]), ds.attrs.get("unit"))
    return raw


def read_file(path: Path, limits: Limits) -> RawFile:
    """Parse ``path`` with HDF5 in this process (steps 2-4); FormatError on anything
    wrong, including HDF5's own errors and running out of memory."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return read_open(f, path, limits)
    except FormatError:
        raise
    except MemoryError:
        raise FormatError("not enough memory to read the file", path) from None
    except _READ_ERRORS as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FormatError(f"cannot read the file (truncated or corrupt?): {detail}",
                          path) from None


# ============================================================================ writing
def writer_versions() -> Dict[str, str]:
    """The writer's provenance: hh_plugin's, Python's and the main packages' versions."""
    from ... import __version__

    versions = {"hh_plugin": __version__, "python": platform.python_version()}
    for name in _VERSION_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return versions


def check_compression(compression):
    """``None`` or a deflate setting h5py takes; ValueError for anything else."""
    if compression in (None, False, "gzip"):
        return compression or None
    if isinstance(compression, int) and not isinstance(compression, bool) \
            and 0 <= compression <= 9:
        return compression  # h5py: gzip at this level
    raise ValueError(f"compression {compression!r}: the format allows only deflate, "
                     f"compression='gzip' or a gzip level 0-9")


def write(path: str, metadata: dict, arrays: Dict[str, tuple], compression,
          check=lambda: None) -> None:
    """Write the container (with the 512-byte user block for the checksum) to ``path``:
    ``metadata`` as the root attributes, ``arrays`` ``{dataset path: (array, unit)}``.
    ``check`` is called between datasets and slices (it acts on a pending interrupt)."""
    import h5py

    with h5py.File(path, "w", libver="earliest", userblock_size=checksum.USERBLOCK_SIZE,
                   locking=False) as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = metadata["format_version"]
        f.attrs["metadata"] = json.dumps(metadata, allow_nan=False, sort_keys=True)
        for name, (array, unit) in arrays.items():
            check()
            options = {}
            if compression and array.ndim >= 1 and array.size:
                options = {"compression": compression, "shuffle": True}
            if array.nbytes <= SLICE_BYTES or array.ndim == 0:
                dataset = f.create_dataset(name, data=array, **options)
            else:
                dataset = f.create_dataset(name, shape=array.shape, dtype=array.dtype,
                                           **options)
                rows = max(1, SLICE_BYTES // max(1, array[0].nbytes))
                for start in range(0, len(array), rows):
                    dataset[start:start + rows] = array[start:start + rows]
                    check()
            dataset.attrs["unit"] = unit
        f.flush()


def filler(metadata: dict, arrays: Dict[str, tuple], compression):
    """The ``fill`` callback of :func:`.atomic.atomic_create`: the container, then its
    checksum."""
    def fill(tmp: str, fd: int, check) -> None:
        write(tmp, metadata, arrays, compression, check)
        checksum.stamp(fd, check)
    return fill


def dataset_paths(tree: Dict[str, Dict[str, str]]) -> set:
    """The dataset paths of a kind's expected tree ``{group: {member: kind}}``."""
    return {(f"/{name}" if group == "/" else f"{group}/{name}")
            for group, members in tree.items() for name, kind in members.items()
            if kind == DATASET}


def check_members(raw: RawFile, tree: Dict[str, Dict[str, str]], path,
                  version: str) -> None:
    """The groups and datasets read are exactly those of ``tree`` (a record kind's
    ``{group path: {member name: 'group' | 'dataset'}}``, built from its metadata)."""
    groups = {(f"/{name}" if group == "/" else f"{group}/{name}")
              for group, members in tree.items() for name, kind in members.items()
              if kind == GROUP}
    datasets = dataset_paths(tree)
    present = set(raw.arrays) | set(raw.groups)
    for where in sorted(groups & set(raw.arrays)):
        raise FormatError(f"{where} must be a group, found a dataset", path)
    for where in sorted(datasets & set(raw.groups)):
        raise FormatError(f"{where} must be a dataset, found a group", path)
    for where in sorted(present - groups - datasets):
        raise FormatError(f"unexpected field {where} (not in format {version})", path)
    for where in sorted((groups | datasets) - present):
        raise FormatError(f"missing field {where}", path)
    for where in sorted(datasets):
        if raw.arrays[where][1] is None:
            raise FormatError(f"{where} has no 'unit' attribute", path)
