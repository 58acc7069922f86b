"""Parse a file with HDF5 in a child process, so that HDF5 cannot hang or crash the caller.

:func:`read_isolated` starts ``python -c ...`` (numpy, h5py and this container layer
only: no sympy, no model, no torch, no Brian2), which runs the in-process container
reader (:func:`.hdf5.read_file`) on the file under these limits:

- **time**: the child is killed after ``timeout`` seconds (``$HH_PLUGIN_READ_TIMEOUT``,
  default 120): HDF5 spins forever on some damaged files, ignoring Ctrl-C;
- **memory**: address space ``1 GiB + 4 x max_bytes`` (``RLIMIT_AS``);
- **no files written, no core dumps, no HDF5 filter plugins loaded**.

The child sends back the root attributes, the group paths and the raw arrays as an
``.npz`` archive (read here with ``allow_pickle=False``: plain arrays, no code); the
caller's record kind then validates all of it, so even a child subverted by a crafted
file can only hand back arrays that pass every check. A crash (signal), a timeout,
running out of memory and every error in the child become one-line
:class:`~hh_plugin.export.errors.FormatError`; Ctrl-C here kills the child and raises
``KeyboardInterrupt``.

On platforms without the ``resource`` module (Windows) only the time limit applies.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import FormatError
from .hdf5 import RawFile, read_file
from .limits import Limits

_ENV_TIMEOUT = "HH_PLUGIN_READ_TIMEOUT"
DEFAULT_TIMEOUT = 120.0
_BASE_MEMORY = 1 << 30
_OK, _ERROR = b"HHR1", b"HHE1"
_CHILD = ("import sys; from hh_plugin.export.container.sandbox import _child; "
          "_child(sys.argv[1:])")


def default_timeout() -> float:
    text = os.environ.get(_ENV_TIMEOUT)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{_ENV_TIMEOUT}={text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{_ENV_TIMEOUT} must be a positive finite number of seconds, "
                         f"got {text!r}")
    return value


def memory_limit(limits: Limits) -> int:
    """Address-space limit of the child, bytes."""
    return _BASE_MEMORY + 4 * limits.max_bytes


def _environment() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[3])  # the directory holding hh_plugin/
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "")
                                                  .split(os.pathsep) if p])
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["HDF5_PLUGIN_PRELOAD"] = "::"  # HDF5: load no filter plugin
    env.pop("HDF5_PLUGIN_PATH", None)
    return env


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def read_isolated(path, limits: Optional[Limits] = None, *,
                  timeout: Optional[float] = None) -> RawFile:
    """:func:`.hdf5.read_file` in a child process (see the module docstring): the
    :class:`~.hdf5.RawFile` that the caller's record kind validates."""
    path = Path(path)
    limits = limits or Limits.default()
    timeout = default_timeout() if timeout is None else float(timeout)
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive finite number of seconds, got "
                         f"{timeout!r}")
    options = {"max_bytes": limits.max_bytes, "memory": memory_limit(limits)}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, os.fspath(path), json.dumps(options)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_environment(), close_fds=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise FormatError(f"reading the file did not finish within {timeout:g} s (HDF5 hangs "
                          f"on some damaged or crafted files); refused", path) from None
    except BaseException:  # Ctrl-C, SystemExit: never leave the child behind
        proc.kill()
        proc.wait()
        raise
    if proc.returncode < 0:
        name = _signal_name(-proc.returncode)
        if -proc.returncode in (signal.SIGKILL, getattr(signal, "SIGXCPU", -1)):
            raise FormatError(f"the reader process was killed ({name}), probably for "
                              f"exceeding its memory or time limit; refused", path)
        raise FormatError(f"the HDF5 library crashed reading the file ({name}): the file is "
                          f"damaged or crafted; refused", path)
    if out.startswith(_ERROR):
        raise FormatError(out[len(_ERROR):].decode("utf-8", "replace"), path)
    if proc.returncode != 0 or not out.startswith(_OK):
        lines = err.decode("utf-8", "replace").strip().splitlines()
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        raise FormatError(f"the reader process failed: {detail[:300]}", path)
    return _unpack(out[len(_OK):], path)


def _pack(raw: RawFile) -> bytes:
    names = sorted(raw.arrays)
    header = {"format": _as_text(raw.format), "format_version": _as_text(raw.format_version),
              "metadata": _as_text(raw.metadata), "names": names,
              "groups": list(raw.groups),
              "units": [_as_text(raw.arrays[n][1]) for n in names]}
    buffer = io.BytesIO()
    arrays = {f"a{i}": np.asarray(raw.arrays[n][0]) for i, n in enumerate(names)}
    np.savez(buffer, header=np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8),
             **arrays)
    return buffer.getvalue()


def _as_text(value):
    if value is None:
        return None
    if isinstance(value, (bytes, np.bytes_)):
        return {"bytes": bytes(value).hex()}
    return value if isinstance(value, str) else {"other": repr(type(value))}


def _from_text(value):
    if isinstance(value, dict) and isinstance(value.get("bytes"), str):
        return bytes.fromhex(value["bytes"])
    return value


def _unpack(data: bytes, path) -> RawFile:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            header = json.loads(archive["header"].tobytes().decode("utf-8"))
            names, units = header["names"], header["units"]
            arrays = {name: (archive[f"a{i}"], _from_text(unit))
                      for i, (name, unit) in enumerate(zip(names, units))}
            groups = header["groups"]
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ValueError("group paths must be strings")
        return RawFile(_from_text(header["format"]), _from_text(header["format_version"]),
                       _from_text(header["metadata"]), arrays, tuple(groups))
    except (ValueError, KeyError, TypeError, OSError, EOFError) as exc:
        raise FormatError(f"the reader process sent an unreadable result: {exc}", path) from None


def _limit_resources(memory: int) -> None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return
    for name, value in (("RLIMIT_AS", memory), ("RLIMIT_CORE", 0), ("RLIMIT_FSIZE", 0)):
        limit = getattr(resource, name, None)
        if limit is None:
            continue
        try:
            soft, hard = resource.getrlimit(limit)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(limit, (value, hard))
        except (ValueError, OSError, OverflowError):
            pass


def _child(argv) -> None:
    """Entry point of the child process: read ``argv[0]``, write the result to stdout."""
    path = Path(argv[0])
    options = json.loads(argv[1])
    limits = Limits(max_bytes=int(options["max_bytes"]))
    out = sys.stdout.buffer
    try:
        import h5py

        try:
            h5py.h5pl.set_loading_state(0)  # no filter plugins, whatever the environment
        except Exception:  # noqa: BLE001 - older HDF5 without the call
            pass
        _limit_resources(int(options["memory"]))
        reply = _OK + _pack(read_file(path, limits))
    except FormatError as exc:
        reply = _ERROR + exc.reason.encode("utf-8")
    except MemoryError:
        reply = _ERROR + (f"reading the file needs more memory than the reader allows "
                          f"({options['memory'] >> 20} MiB)").encode("utf-8")
    except BaseException as exc:  # noqa: BLE001 - report, never a traceback
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        reply = _ERROR + f"cannot read the file: {text}".encode("utf-8")
    out.write(reply)
    out.flush()
