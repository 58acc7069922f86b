"""The cache folder, build lock and build timeout shared by everything the plugin compiles
(the fused C++ kernels, :mod:`hh_plugin.torch.fused.cpp`; the NEURON mechanisms,
:mod:`hh_plugin.neuron.build`), without importing any backend.

* :func:`cache_dir`: ``$HH_PLUGIN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/hh_plugin``,
  else ``~/.cache/hh_plugin``.
* :func:`build_lock`: an exclusive ``flock`` on ``<build>/hh_plugin_build.lock``, which the
  system releases when its process dies (a build killed mid-way cannot block later ones);
  a process that waits longer than ``timeout`` seconds gives up with the given error.
  Waiting is silent at first (every rank of a parallel job loading a cached build holds
  the lock for a moment); only a wait of :data:`QUIET_WAIT` s (or half the timeout) is
  announced on stderr.
* :func:`build_timeout`: ``$HH_PLUGIN_BUILD_TIMEOUT`` seconds (default 300).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None

#: Seconds a process waits silently for the build lock before it says why it waits.
QUIET_WAIT = 60.0


def cache_dir() -> Path:
    """Where compiled code is cached (see the module docstring)."""
    env = os.environ.get("HH_PLUGIN_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hh_plugin"


def build_timeout() -> float:
    """Seconds to wait for another process's build (``$HH_PLUGIN_BUILD_TIMEOUT``, 300)."""
    try:
        value = float(os.environ.get("HH_PLUGIN_BUILD_TIMEOUT", "300"))
    except ValueError:
        value = 300.0
    return value if value > 0 else 300.0


@contextlib.contextmanager
def build_lock(build: Path, timeout: float, what: str, error=RuntimeError,
               quiet_wait: float = None):
    """Hold an exclusive ``flock`` on the folder ``build``; ``error(message)`` after
    ``timeout`` seconds of waiting. ``what`` names the build in messages ("the fused
    kernel"). Released by the system if this process dies."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    quiet = QUIET_WAIT if quiet_wait is None else quiet_wait
    fd = os.open(build / "hh_plugin_build.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        start = time.monotonic()
        deadline = start + timeout
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise error(
                        f"another process has been building {what} in {build} for "
                        f"more than {timeout:g} s (HH_PLUGIN_BUILD_TIMEOUT)") from None
                if not waiting and time.monotonic() >= start + min(quiet, timeout / 2):
                    print(f"hh_plugin: waiting for another process to finish building "
                          f"{what} in {build}", file=sys.stderr, flush=True)
                    waiting = True
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the flock
