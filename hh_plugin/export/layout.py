"""What a format 1.0 file may contain, and the reader's size limits, checked before any data is read.

The reader never follows the file: it walks the table :func:`expected_tree` built from the
(validated) metadata, and refuses everything else **before reading a single array**:

- a member the format does not define (group, dataset, named datatype), soft or external
  links, a dataset where a group belongs and vice versa;
- attributes other than the root's ``format``, ``format_version``, ``metadata`` and each
  dataset's ``unit``; attributes that are not scalar strings or longer than the limits;
- datasets stored outside the file (HDF5 external storage, virtual datasets), filters other
  than deflate, shuffle and fletcher32 (no filter plugin is ever loaded), datatypes other
  than IEEE floats and integers, null dataspaces, more than :attr:`Limits.max_rank` axes;
- more declared data (all datasets, uncompressed) than :attr:`Limits.max_bytes`; an
  uncompressed dataset with less storage than its declared size (the rest would be read as
  fill values), or a compressed one declaring more than :attr:`Limits.max_expansion` times
  its stored bytes (deflate cannot expand more than about 1032 times).

A later format version extends :func:`expected_tree` (e.g. a ``/network`` group) and, where
needed, :data:`ROOT_ATTRIBUTES`; nothing else here knows the layout.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Dict, List, Tuple

from .errors import FormatError

#: Attributes of the root group (all required) and of every dataset.
ROOT_ATTRIBUTES = ("format", "format_version", "metadata")
DATASET_ATTRIBUTES = ("unit",)
#: HDF5 filters a dataset may use: deflate (1), shuffle (2), fletcher32 (3).
ALLOWED_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32"}
GROUP, DATASET = "group", "dataset"

_ENV_MAX_BYTES = "HH_PLUGIN_MAX_READ_BYTES"
#: Largest reader limit a caller may set (bytes): 8 PiB, far beyond any machine.
MAX_LIMIT_BYTES = 2 ** 53


@dataclass(frozen=True)
class Limits:
    """Reader limits (``export/FORMAT.md`` section 5). All sizes in bytes.

    ``max_bytes`` (default 1 GiB, or ``$HH_PLUGIN_MAX_READ_BYTES``; at most 2**53):
    declared data of all datasets together, uncompressed; it also bounds the file size
    (plus 64 MiB) and the memory a network file's declared sizes need to build.
    """

    max_bytes: int = 1 << 30
    max_metadata_bytes: int = 1 << 20
    max_attribute_bytes: int = 256
    max_rank: int = 8
    max_expansion: int = 1100
    expansion_slack: int = 1 << 16
    file_overhead: int = 64 << 20

    @classmethod
    def default(cls, max_bytes=None) -> "Limits":
        """Limits with ``max_bytes`` from the argument, else the environment, else 1 GiB."""
        if max_bytes is None:
            text = os.environ.get(_ENV_MAX_BYTES)
            if text:
                try:
                    value = float(text)
                except ValueError:
                    raise ValueError(f"{_ENV_MAX_BYTES}={text!r} is not a number of "
                                     f"bytes") from None
                if not (math.isfinite(value) and 1 <= value <= MAX_LIMIT_BYTES):
                    raise ValueError(f"{_ENV_MAX_BYTES}={text!r} is not a number of bytes "
                                     f"in 1..2**53")
                max_bytes = int(value)
        if max_bytes is None:
            return cls()
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, float)) \
                or not math.isfinite(max_bytes) or not 1 <= max_bytes <= MAX_LIMIT_BYTES:
            raise ValueError(f"max_bytes must be a number of bytes in 1..2**53, got "
                             f"{max_bytes!r}")
        return cls(max_bytes=int(max_bytes))

    @property
    def max_file_bytes(self) -> int:
        return self.max_bytes + self.file_overhead


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


def _join(group: str, name: str) -> str:
    return f"/{name}" if group == "/" else f"{group}/{name}"


def _fail(message: str, path) -> None:
    raise FormatError(message, path)


def check_attributes(obj, allowed, where: str, limits: Limits, path, required=()) -> None:
    """Attribute names of ``obj`` within ``allowed`` (``required`` present); each a scalar
    string of bounded size. Reads no attribute value."""
    import h5py

    count = len(obj.attrs)
    if count > len(allowed):
        names = [name for _, name in zip(range(len(allowed) + 1), obj.attrs)]
        extra = [n for n in names if n not in allowed] or names
        _fail(f"unexpected attribute {extra[0]!r} on {where} (not in the format)", path)
    names = list(obj.attrs)
    for name in names:
        if name not in allowed:
            _fail(f"unexpected attribute {name!r} on {where} (not in the format)", path)
    for name in required:
        if name not in names:
            _fail(f"{where} has no {name!r} attribute", path)
    for name in names:
        attr = h5py.h5a.open(obj.id, name.encode("utf-8"))
        label = f"attribute {name!r} of {where}"
        if attr.shape != ():
            _fail(f"{label} must be a scalar string, has shape {attr.shape}", path)
        if attr.get_type().get_class() != h5py.h5t.STRING:
            _fail(f"{label} must be a string", path)
        limit = limits.max_metadata_bytes if name == "metadata" else limits.max_attribute_bytes
        if attr.get_storage_size() > limit:
            _fail(f"{label} is {attr.get_storage_size()} bytes, over the limit of {limit}",
                  path)


@dataclass(frozen=True)
class DatasetInfo:
    shape: Tuple[int, ...]
    nbytes: int


_IEEE_FLOATS = ("IEEE_F16LE", "IEEE_F16BE", "IEEE_F32LE", "IEEE_F32BE", "IEEE_F64LE",
                "IEEE_F64BE")


def check_dataset(ds, where: str, limits: Limits, path) -> DatasetInfo:
    """Storage, filters, datatype, dataspace and declared size of ``ds``; reads no data."""
    from h5py import h5d, h5s, h5t

    dcpl = ds.id.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5d.VIRTUAL:
        _fail(f"{where} is a virtual dataset (its data would come from other files); "
              f"refused", path)
    if dcpl.get_external_count():
        _fail(f"{where} uses HDF5 external storage (its data would be read from another "
              f"file); refused", path)
    filters = []
    for index in range(dcpl.get_nfilters()):
        code = dcpl.get_filter(index)[0]
        if code not in ALLOWED_FILTERS:
            _fail(f"{where} uses HDF5 filter {code}; only deflate, shuffle and fletcher32 "
                  f"are allowed", path)
        filters.append(code)
    space = ds.id.get_space()
    if space.get_simple_extent_type() != h5s.SIMPLE and space.get_simple_extent_type() \
            != h5s.SCALAR:
        _fail(f"{where} has an empty (null) dataspace", path)
    shape = tuple(int(n) for n in space.shape)
    if len(shape) > limits.max_rank:
        _fail(f"{where} has {len(shape)} dimensions, more than the limit of "
              f"{limits.max_rank}", path)
    tid = ds.id.get_type()
    kind = tid.get_class()
    if kind == h5t.FLOAT:
        if not any(tid.equal(getattr(h5t, name)) for name in _IEEE_FLOATS
                   if hasattr(h5t, name)):
            _fail(f"{where} has a non-IEEE float type; expected float16, float32 or "
                  f"float64", path)
    elif kind == h5t.ENUM:
        try:
            dtype = ds.dtype
        except (TypeError, ValueError):
            dtype = None
        if dtype is None or dtype.kind != "b":
            _fail(f"{where} has an enumerated type; expected a float or integer type", path)
    elif kind != h5t.INTEGER:
        names = {h5t.STRING: "string", h5t.COMPOUND: "compound", h5t.VLEN: "variable-length",
                 h5t.REFERENCE: "reference", h5t.OPAQUE: "opaque", h5t.ARRAY: "array",
                 h5t.BITFIELD: "bitfield", h5t.TIME: "time"}
        _fail(f"{where} has {names.get(kind, 'an unsupported')} type; expected float or "
              f"integer numbers", path)
    itemsize = tid.get_size()
    if itemsize not in (1, 2, 4, 8):
        _fail(f"{where} has {itemsize}-byte elements; expected 1, 2, 4 or 8", path)
    nbytes = math.prod(shape) * itemsize
    if nbytes > limits.max_bytes:
        _fail(f"{where} declares {nbytes} bytes of data, over the reader's limit of "
              f"{limits.max_bytes} (HH_PLUGIN_MAX_READ_BYTES)", path)
    stored = ds.id.get_storage_size()
    compressed = any(code == 1 for code in filters)
    if not compressed and layout != h5d.COMPACT and stored < nbytes:
        _fail(f"{where} declares {nbytes} bytes but stores only {stored} (data missing)",
              path)
    if compressed and nbytes > limits.max_expansion * stored + limits.expansion_slack:
        _fail(f"{where} declares {nbytes} bytes but stores only {stored} compressed, more "
              f"expansion than deflate can produce", path)
    return DatasetInfo(shape, nbytes)


def walk(f, tree: Dict[str, Dict[str, str]], limits: Limits, path) -> Dict[str, DatasetInfo]:
    """Check every group of ``tree`` holds exactly its members, as hard links of the right
    kind, and every dataset with :func:`check_dataset` and its ``unit`` attribute; also the
    declared total. Returns ``{dataset path: DatasetInfo}``. Reads no data."""
    import h5py

    infos: Dict[str, DatasetInfo] = {}
    total = 0
    for group_path, members in tree.items():
        group = f if group_path == "/" else f[group_path]
        if group_path != "/":
            check_attributes(group, (), group_path, limits, path)
        count = len(group)
        if count > len(members):
            names: List[str] = [n for _, n in zip(range(len(members) + 1), group)]
            extra = [n for n in names if n not in members]
            _fail(f"unexpected field {_join(group_path, extra[0])} (not in the format)", path)
        present = set(group)
        for name in present:
            if not isinstance(name, str):  # h5py hands back undecodable names as bytes
                _fail(f"{group_path} has a member whose name is not valid UTF-8: {name[:40]!r}",
                      path)
        for name in sorted(present):
            if name not in members:
                _fail(f"unexpected field {_join(group_path, name)} (not in the format)", path)
        for name in sorted(members):
            where = _join(group_path, name)
            if name not in present:
                _fail(f"missing field {where}", path)
            link = group.get(name, getlink=True)
            if link is None:
                _fail(f"the link {where} cannot be read (damaged file)", path)
            if isinstance(link, h5py.ExternalLink):
                _fail(f"{where} is an external link to {link.filename!r}; refused", path)
            if not isinstance(link, h5py.HardLink):
                _fail(f"{where} is a {type(link).__name__}, not a stored "
                      f"{members[name]}", path)
            cls = group.get(name, getclass=True)
            if members[name] == GROUP:
                if cls is not h5py.Group:
                    _fail(f"{where} must be a group, found a {_kind(cls)}", path)
            else:
                if cls is not h5py.Dataset:
                    _fail(f"{where} must be a dataset, found a {_kind(cls)}", path)
                ds = group[name]
                check_attributes(ds, DATASET_ATTRIBUTES, where, limits, path,
                                 required=DATASET_ATTRIBUTES)
                info = check_dataset(ds, where, limits, path)
                total += info.nbytes
                if total > limits.max_bytes:
                    _fail(f"the datasets declare more than {limits.max_bytes} bytes of data "
                          f"together, the reader's limit (HH_PLUGIN_MAX_READ_BYTES)", path)
                infos[where] = info
    return infos


def _kind(cls) -> str:
    import h5py

    return {h5py.Group: "group", h5py.Dataset: "dataset",
            h5py.Datatype: "named datatype"}.get(cls, "non-data object")
