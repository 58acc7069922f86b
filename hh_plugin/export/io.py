"""The public functions of the portable format: :func:`load`, :func:`load_network`,
:func:`load_any`, :func:`save` and :func:`save_network`.

The package is three layers, each importing only the ones below it:

1. the container (:mod:`.container`): atomic writes, the checksum, the members a file
   may hold, the reader's limits and the sandboxed read; it knows no record kind;
2. the record kinds: population files (format 1.0, :mod:`.population_file`) and
   network files (formats 1.1 and 1.2, :mod:`.network_file`), each checking the container's
   content against its own metadata;
3. this module, which reads a file through the container and hands it to the kind its
   version names.

Every file is treated as hostile; ``export/FORMAT.md`` section 5 lists the rules.
"""

from __future__ import annotations

from typing import Optional, Union

from . import network_file, population_file
from .container.hdf5 import decode_root
from .container.trust import read
from .errors import FormatError
from .network_file import NetworkRecord, is_network_version, save_network
from .population_file import HHRecord, save

__all__ = ["load", "load_network", "load_any", "save", "save_network"]


def load_any(path, *, trusted: bool = False, isolate: Optional[bool] = None,
             verify: bool = True, max_bytes=None, timeout: Optional[float] = None
             ) -> Union[HHRecord, NetworkRecord]:
    """An :class:`~hh_plugin.export.HHRecord` (format 1.0) or a :class:`NetworkRecord`
    (format 1.1 or 1.2), whichever the file is; options (untrusted by default: HDF5 parses the
    file in a child process) and checks as :func:`load`."""
    return _load(path, None, trusted=trusted, isolate=isolate, verify=verify,
                 max_bytes=max_bytes, timeout=timeout)


def _load(path, wanted: Optional[str], **options):
    """Read ``path`` and build the record of its kind; ``wanted`` (``'population'`` or
    ``'network'``) refuses the other kind before anything is built."""
    raw, path, limits = read(path, **options)
    meta, version = decode_root(raw, path)
    network = is_network_version(version)
    if wanted == "population" and network:
        raise FormatError("a network file (format 1.1 or 1.2): read it with "
                          "hh_plugin.export.load_network", path)
    if wanted == "network" and not network:
        raise FormatError("a single-population file (format 1.0), not a network file: read "
                          "it with hh_plugin.export.load", path)
    if network:
        return network_file.record_from_raw(raw, meta, version, path, limits)
    return population_file.record_from_raw(raw, meta, version, path)


def load(path, *, trusted: bool = False, isolate: Optional[bool] = None, verify: bool = True,
         max_bytes=None, timeout: Optional[float] = None) -> HHRecord:
    """Read an hh_plugin file into an :class:`HHRecord` (values in mV, ms, uA, mS, uF).

    Args:
        path: the file.
        trusted: ``False`` (default): the file may come from anyone; HDF5 parses it in a
            child process with a time and memory limit (measured in
            ``docs/export.md``). ``True``: a file whose content checksum verified is
            parsed in this process (files you or a trusted writer made), any other in the
            child.
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
    the rules. A network file (format 1.1 or 1.2) is refused with a hint to
    :func:`load_network`.
    """
    return _load(path, "population", trusted=trusted, isolate=isolate, verify=verify,
                 max_bytes=max_bytes, timeout=timeout)


def load_network(path, **options) -> NetworkRecord:
    """Read a network file (format 1.1 or 1.2) into a :class:`NetworkRecord`; the options
    (``trusted``, ``isolate``, ``verify``, ``max_bytes``, ``timeout``) and the checks are
    those of :func:`load` (untrusted by default: HDF5 parses the file in a child process;
    ``trusted=True`` for the in-process path). A single-population file is refused with
    a hint."""
    return _load(path, "network", **options)
