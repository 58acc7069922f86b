r"""Content checksum of an hh_plugin file, kept in the HDF5 user block (``export/FORMAT.md`` 2.1).

A file written by :func:`hh_plugin.export.save` starts with a 512-byte HDF5 *user block*
(bytes HDF5 itself ignores; the HDF5 superblock follows at offset 512) holding ASCII text:

.. code-block:: text

    hh_plugin file
    sha256 <64 hex digits: SHA-256 of bytes 512 .. end of file>
    size <decimal: the file's total size in bytes>

padded with NUL bytes. The reader checks the size and the hash **before the HDF5 library
parses the file**, so a file damaged in transit (flipped, zeroed or cut bytes: the cases
that made HDF5 hang or crash) is refused without HDF5 ever seeing it. The checksum is an
integrity check, not a signature: anyone can compute it, so a deliberately crafted file
can carry a valid one (see :func:`hh_plugin.export.load` for how those are read).

This module only reads and writes raw bytes; it never imports h5py.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from typing import Optional

#: Size of the HDF5 user block that holds the checksum (HDF5 needs a power of 2 >= 512).
USERBLOCK_SIZE = 512
#: First line of the user block.
MAGIC = b"hh_plugin file\n"
#: The HDF5 format signature; HDF5 looks for it at offset 0, 512, 1024, 2048, ...
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

_HEADER = re.compile(rb"hh_plugin file\nsha256 ([0-9a-f]{64})\nsize ([0-9]{1,20})\n\x00*\Z")
_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """The file's recorded checksum or size does not match its content."""


@dataclass(frozen=True)
class Probe:
    """What the first bytes of a file say, found without the HDF5 library.

    ``kind``: ``'checksummed'`` (our user block, verified), ``'hdf5'`` (an HDF5 file
    without a checksum, e.g. written by another tool or an older hh_plugin), or
    ``'other'`` (no HDF5 signature where HDF5 would look for one).
    """

    kind: str
    size: int


def header(digest: str, size: int) -> bytes:
    """The user block for a SHA-256 hex ``digest`` and a total file ``size``."""
    text = MAGIC + f"sha256 {digest}\nsize {size}\n".encode("ascii")
    return text + b"\x00" * (USERBLOCK_SIZE - len(text))


def _sha256(fd: int, start: int, end: int, check_interrupt=None) -> str:
    digest = hashlib.sha256()
    offset = start
    while offset < end:
        block = os.pread(fd, min(_CHUNK, end - offset), offset)
        if not block:
            raise ChecksumError("the file became shorter while it was read")
        digest.update(block)
        offset += len(block)
        if check_interrupt is not None:
            check_interrupt()
    return digest.hexdigest()


def stamp(fd: int, check_interrupt=None) -> None:
    """Write the checksum user block into an open, fully written file (``O_RDWR``).

    The file must have been created by HDF5 with ``userblock_size=USERBLOCK_SIZE``.
    """
    size = os.fstat(fd).st_size
    if size <= USERBLOCK_SIZE or os.pread(fd, 8, USERBLOCK_SIZE) != HDF5_SIGNATURE:
        raise ValueError("not an HDF5 file with a 512-byte user block")
    digest = _sha256(fd, USERBLOCK_SIZE, size, check_interrupt)
    os.pwrite(fd, header(digest, size), 0)


def write_checksum(path) -> None:
    """(Re)compute and store the checksum of an hh_plugin file written with a user block.

    For a file that was edited on purpose with another HDF5 tool after it was saved (its
    old checksum no longer matches). The file's content is not validated here.
    """
    fd = os.open(os.fspath(path), os.O_RDWR)
    try:
        stamp(fd)
        os.fsync(fd)
    finally:
        os.close(fd)


def _find_signature(fd: int, size: int) -> Optional[int]:
    """Offset of the HDF5 signature (searched where HDF5 searches it), or ``None``."""
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= size:
        if os.pread(fd, len(HDF5_SIGNATURE), offset) == HDF5_SIGNATURE:
            return offset
        offset = USERBLOCK_SIZE if offset == 0 else offset * 2
    return None


def probe(fd: int, verify: bool = True, check_interrupt=None) -> Probe:
    """Classify (and with ``verify``, check the checksum of) the regular file open as ``fd``.

    Raises :class:`ChecksumError` when the file carries a checksum that does not match;
    with ``verify=False`` a checksum block is ignored (the file counts as ``'hdf5'``).
    """
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    size = info.st_size
    first = os.pread(fd, USERBLOCK_SIZE, 0)
    if verify and first.startswith(MAGIC):
        match = _HEADER.match(first)
        if match is None:
            raise ChecksumError("the checksum block at the start of the file is damaged")
        recorded_size = int(match.group(2))
        if recorded_size != size:
            raise ChecksumError(f"the file is {size} bytes but was written as "
                                f"{recorded_size} bytes (truncated or extended)")
        if os.pread(fd, 8, USERBLOCK_SIZE) != HDF5_SIGNATURE:
            raise ChecksumError("no HDF5 data after the checksum block")
        digest = _sha256(fd, USERBLOCK_SIZE, size, check_interrupt)
        if digest != match.group(1).decode("ascii"):
            raise ChecksumError("content checksum mismatch: the file was damaged or changed "
                                "after it was written (if it was edited on purpose, re-stamp "
                                "it with hh_plugin.export.write_checksum)")
        return Probe("checksummed", size)
    if _find_signature(fd, size) is not None:
        return Probe("hdf5", size)
    return Probe("other", size)
