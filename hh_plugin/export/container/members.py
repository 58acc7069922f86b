"""What an hh_plugin container may hold, checked from the HDF5 headers before any data is read.

The container layer knows no record kind: it checks every member of the file against the
rules both formats share, and hands the kinds (:mod:`hh_plugin.export.population_file`,
:mod:`hh_plugin.export.network_file`) the list of groups and datasets, which each kind
then compares with what its metadata declares. Refused here, before any array is read:

- soft or external links, named datatypes, groups nested deeper than
  :attr:`~.limits.Limits.max_depth` (a group hard-linked into itself included), more than
  :attr:`~.limits.Limits.max_members` members;
- attributes other than the root's ``format``, ``format_version``, ``metadata`` and each
  dataset's ``unit``; attributes that are not scalar strings or longer than the limits;
- datasets stored outside the file (HDF5 external storage, virtual datasets), filters other
  than deflate, shuffle and fletcher32 (no filter plugin is ever loaded), datatypes other
  than IEEE floats and integers, null dataspaces, more than
  :attr:`~.limits.Limits.max_rank` axes;
- more declared data (all datasets, uncompressed) than :attr:`~.limits.Limits.max_bytes`;
  an uncompressed dataset with less storage than its declared size (the rest would be
  read as fill values), or a compressed one declaring more than
  :attr:`~.limits.Limits.max_expansion` times its stored bytes (deflate cannot expand
  more than about 1032 times).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

from ..errors import FormatError
from .limits import Limits

#: Attributes of the root group (all required) and of every dataset.
ROOT_ATTRIBUTES = ("format", "format_version", "metadata")
DATASET_ATTRIBUTES = ("unit",)
#: HDF5 filters a dataset may use: deflate (1), shuffle (2), fletcher32 (3).
ALLOWED_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32"}
GROUP, DATASET = "group", "dataset"


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


def walk(f, limits: Limits, path) -> Tuple[Tuple[str, ...], Dict[str, DatasetInfo]]:
    """Every member of the open file ``f``, checked as the module docstring says:
    ``(group paths below the root, {dataset path: DatasetInfo})``. Reads no data."""
    import h5py

    check_attributes(f, ROOT_ATTRIBUTES, "the root group", limits, path,
                     required=ROOT_ATTRIBUTES)
    groups: List[str] = []
    infos: Dict[str, DatasetInfo] = {}
    total = members = 0
    pending = [("/", f, 0)]
    while pending:
        group_path, group, depth = pending.pop()
        members += len(group)
        if members > limits.max_members:
            _fail(f"the file has more than {limits.max_members} groups and datasets, the "
                  f"reader's limit", path)
        names = list(group)
        for name in names:
            if not isinstance(name, str):  # h5py hands back undecodable names as bytes
                _fail(f"{group_path} has a member whose name is not valid UTF-8: "
                      f"{name[:40]!r}", path)
        for name in sorted(names):
            where = _join(group_path, name)
            link = group.get(name, getlink=True)
            if link is None:
                _fail(f"the link {where} cannot be read (damaged file)", path)
            if isinstance(link, h5py.ExternalLink):
                _fail(f"{where} is an external link to {link.filename!r}; refused", path)
            if not isinstance(link, h5py.HardLink):
                _fail(f"{where} is a {type(link).__name__}, not a stored group or dataset",
                      path)
            cls = group.get(name, getclass=True)
            if cls is h5py.Group:
                if depth + 1 > limits.max_depth:
                    _fail(f"{where} is nested {depth + 1} groups deep, more than the "
                          f"reader's limit of {limits.max_depth}", path)
                child = group[name]
                check_attributes(child, (), where, limits, path)
                groups.append(where)
                pending.append((where, child, depth + 1))
            elif cls is h5py.Dataset:
                ds = group[name]
                # the unit is required of the datasets a record kind expects, checked once
                # the kind has named them (an unexpected dataset is refused as such)
                check_attributes(ds, DATASET_ATTRIBUTES, where, limits, path)
                info = check_dataset(ds, where, limits, path)
                total += info.nbytes
                if total > limits.max_bytes:
                    _fail(f"the datasets declare more than {limits.max_bytes} bytes of data "
                          f"together, the reader's limit (HH_PLUGIN_MAX_READ_BYTES)", path)
                infos[where] = info
            else:
                _fail(f"unexpected field {where} (a {_kind(cls)}, not in the format)", path)
    return tuple(sorted(groups)), infos


def _kind(cls) -> str:
    import h5py

    return {h5py.Group: "group", h5py.Dataset: "dataset",
            h5py.Datatype: "named datatype"}.get(cls, "non-data object")
