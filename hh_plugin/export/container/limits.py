"""The reader's limits: how much a file may declare before anything is allocated for it.

Every size in bytes. ``max_bytes`` (default 1 GiB, or ``$HH_PLUGIN_MAX_READ_BYTES``) bounds
the data of all datasets together (uncompressed), the file's size (plus
:attr:`Limits.file_overhead`), the memory of the child process that parses a file
(:mod:`.sandbox`) and the memory a network file's declared sizes need to build
(:mod:`hh_plugin.export.network_file`). ``export/FORMAT.md`` section 5 lists them all.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

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
    #: Groups and datasets in the whole file; the formats use far fewer (a network file
    #: has one dataset per array it stores).
    max_members: int = 1 << 16
    #: Nesting of groups below the root (format 1.0 uses 2: ``/spec/parameters``).
    max_depth: int = 4
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
