"""Which process parses a file: the caller's, or a sandboxed child (:mod:`.sandbox`).

A checksum protects against damage, not against a file crafted to carry a valid one, so
by default (untrusted) HDF5 always parses the file in a child process with a time and
memory limit: a hang, crash or huge allocation inside HDF5 cannot take the caller down,
whatever the file's checksum. ``trusted=True`` (files this program or a trusted
colleague wrote) parses a file whose checksum verified in this process, which saves the
child's start (measured in ``docs/export.md``), and any other file in the child.
``isolate=True`` / ``False`` forces either. The record kinds validate what comes back
the same way in both cases.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

from . import sandbox
from .hdf5 import RawFile, probe_file, read_file
from .limits import Limits


def read(path, *, trusted: bool = False, isolate: Optional[bool] = None,
         verify: bool = True, max_bytes=None, timeout: Optional[float] = None
         ) -> Tuple[RawFile, Path, Limits]:
    """Probe ``path`` without HDF5, then parse it in this process or a child as
    ``isolate`` and ``trusted`` say: ``(raw content, path, limits)``. The options are
    those of :func:`hh_plugin.export.load`."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    limits = Limits.default(max_bytes)
    kind = probe_file(path, verify, limits)
    if isolate is None:
        isolate = not (trusted and kind == "checksummed")
    if isolate:
        return sandbox.read_isolated(path, limits, timeout=timeout), path, limits
    return read_file(path, limits), path, limits
