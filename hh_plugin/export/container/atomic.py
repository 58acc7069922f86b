"""Atomic creation of a file: nothing half-written is ever visible, and nothing is left behind.

:func:`atomic_create` writes into a hidden temporary file in the target's directory,
``.<name>.<pid>.<random>.hh_plugin-partial``, then publishes it with one rename (or a
hard link, which never replaces an existing file). Around that:

- **kills**: the writer holds an exclusive ``flock`` on its temporary file. Every later
  save into the same directory deletes temporary files whose lock is free and whose
  process is gone (or that are older than :data:`STALE_AFTER` seconds), so a file left by
  a process killed with ``SIGKILL`` (which no code can clean up after) is reclaimed by
  the next save; any other exception removes the temporary file at once.
- **signals**: during the write, ``SIGINT`` (Ctrl-C), ``SIGTERM`` and ``SIGHUP`` are
  recorded instead of acted on (h5py's C code can swallow a ``KeyboardInterrupt`` raised
  inside it) and acted on at the next check point, about every 16 MB written: the handler
  installed before is called there (Python's, or Brian2's outside a run, raises
  ``KeyboardInterrupt``: the temporary file is removed and the exception propagates), and
  a signal whose action is the default (termination) is delivered again after the
  temporary file is removed. Only in the main thread; ignored signals stay ignored.
- **modes**: the new file gets the mode of the file it replaces, else ``0o666`` minus
  the process's umask (as ``open()`` would create it), not the ``0o600`` of temporary
  files.
- **targets**: only a regular file (or a symbolic link, which is replaced) is ever
  replaced: a device, pipe or socket at the path is refused (``-o /dev/null --force`` as
  root would otherwise replace the device node).
- **reservations**: :func:`reserve` lets one process claim a path for a long computation
  before it writes anything there (the command line does): a hidden lock file
  ``.<name>.hh_plugin-lock`` held with ``flock``; nothing appears at the path itself until
  the result is published, so a writer killed with ``SIGKILL`` leaves no empty file
  behind, and its free lock file is removed by the next reservation or save in the
  directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Callable

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks; stale files reclaimed by age
    fcntl = None

TEMP_SUFFIX = ".hh_plugin-partial"
LOCK_SUFFIX = ".hh_plugin-lock"
#: A temporary file whose lock is free is reclaimed when its process is gone, or after this.
STALE_AFTER = 600.0
_DEFERRED = ("SIGINT", "SIGTERM", "SIGHUP")


class Interrupted(BaseException):
    """A deferred signal arrived during a save (raised at a check point)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _Deferred:
    def __init__(self):
        self.pending = []
        self.previous = {}

    def handler(self, signum, frame):
        self.pending.append(signum)

    def check(self) -> None:
        """Act on deferred signals now, at a safe point: call the handler that was
        installed before (Python's raises ``KeyboardInterrupt``, which aborts the save; a
        handler that returns lets it go on), or raise :class:`Interrupted` for a default
        action (termination), which the caller performs after cleaning up."""
        while self.pending:
            signum = self.pending.pop(0)
            old = self.previous.get(signum)
            if callable(old):
                old(signum, None)
            else:
                raise Interrupted(signum)


@contextlib.contextmanager
def deferred_signals():
    """Record SIGINT/SIGTERM/SIGHUP (main thread only; not those ignored) instead of acting
    on them inside h5py; yields an object whose ``check()`` acts on them."""
    state = _Deferred()
    if threading.current_thread() is threading.main_thread():
        for name in _DEFERRED:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            old = signal.getsignal(signum)
            if old is None or old is signal.SIG_IGN:
                continue
            state.previous[signum] = old
            signal.signal(signum, state.handler)
    try:
        yield state
    finally:
        for signum, old in state.previous.items():
            signal.signal(signum, old)


def deliver(signum: int) -> None:
    """Perform a deferred signal's default action (termination) now that it is restored."""
    os.kill(os.getpid(), signum)
    time.sleep(1.0)  # the default action terminates the process during this
    raise SystemExit(128 + signum)  # pragma: no cover


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no race-free way to read it elsewhere
    os.umask(mask)
    return mask


def file_mode(path: Path) -> int:
    """Mode for a file written at ``path``: the existing file's, else ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def reclaim_stale(directory: Path) -> int:
    """Delete temporary files of saves that died in ``directory``; returns how many."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        if name.startswith(".") and name.endswith(LOCK_SUFFIX):
            removed += _remove_if_unlocked(entry.path)
            continue
        if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
            continue
        parts = name[1:-len(TEMP_SUFFIX)].rsplit(".", 2)
        try:
            pid = int(parts[1])
        except (IndexError, ValueError):
            continue
        try:
            fd = os.open(entry.path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live save holds it
            info = os.fstat(fd)
            old = time.time() - info.st_mtime > STALE_AFTER
            if fcntl is None and not old:
                continue
            if _pid_alive(pid) and not old:
                continue
            current = os.stat(entry.path, follow_symlinks=False)
            if (current.st_ino, current.st_dev) == (info.st_ino, info.st_dev):
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _remove_if_unlocked(lock: str) -> int:
    """Remove a reservation's lock file whose lock is free (its process is gone): 1 or 0."""
    if fcntl is None:
        return 0
    try:
        fd = os.open(lock, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        info, current = os.fstat(fd), os.stat(lock, follow_symlinks=False)
        if (current.st_ino, current.st_dev) == (info.st_ino, info.st_dev):
            os.unlink(lock)
            return 1
    except OSError:
        pass
    finally:
        os.close(fd)
    return 0


class Reserved(Exception):
    """Another process holds the reservation of a path (:func:`reserve`)."""


def lock_path(path) -> Path:
    """The hidden lock file that reserves ``path``: ``.<name>.hh_plugin-lock`` beside it
    (a long name is shortened to its first 20 characters and a hash)."""
    path = Path(path)
    name = path.name
    if len(os.fsencode(name)) > 100:
        name = f"{name[:20]}-{hashlib.sha256(os.fsencode(name)).hexdigest()[:16]}"
    return path.parent / f".{name}{LOCK_SUFFIX}"


def reserve(path) -> int:
    """Claim ``path`` for this process until :func:`release`: take the ``flock`` of its lock
    file (:func:`lock_path`), created if needed. Returns the lock's file descriptor;
    raises :class:`Reserved` when another live process holds it, ``OSError`` when the
    lock file cannot be created. Free lock files of dead processes are taken over."""
    lock = lock_path(path)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        fd = os.open(lock, flags, 0o600)
        if fcntl is None:  # pragma: no cover - Windows: no locks
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise Reserved(f"{path} is being written by another process") from None
        info = os.fstat(fd)
        try:
            current = os.stat(lock, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_ino, current.st_dev) == (info.st_ino,
                                                                          info.st_dev):
            return fd
        os.close(fd)  # removed as stale between open and flock: take the new one
    raise Reserved(f"cannot reserve {path}")  # pragma: no cover


def release(path, fd: int) -> None:
    """End a reservation taken with :func:`reserve`: remove the lock file, close ``fd``."""
    lock = lock_path(path)
    try:
        info, current = os.fstat(fd), os.stat(lock, follow_symlinks=False)
        if (current.st_ino, current.st_dev) == (info.st_ino, info.st_dev):
            os.unlink(lock)
    except OSError:
        pass
    finally:
        os.close(fd)


def not_regular(path) -> str:
    """Why ``path`` cannot be replaced by a file (a device, pipe or socket is there; a
    directory), or ``''``. A symbolic link is judged by what it points to; a missing
    path is fine."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    if stat.S_ISDIR(mode):
        return "is a directory"
    if not stat.S_ISREG(mode):
        return "exists and is not a regular file (a device, pipe or socket); refused"
    return ""


def _create_temp(directory: Path, name: str):
    stem = name[:100]
    if len(os.fsencode(stem)) > 100:
        stem = hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
    for _ in range(100):
        tmp = directory / f".{stem}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                         0o600)
        except FileExistsError:
            continue
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        return tmp, fd
    raise FileExistsError(f"cannot create a temporary file in {directory}")  # pragma: no cover


def _exists_message(path: Path) -> str:
    return f"{path} exists; use overwrite=True (--force) to replace it"


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and never clobbers
    except FileExistsError:
        raise FileExistsError(_exists_message(path)) from None
    except OSError:  # file systems without hard links
        if os.path.lexists(path):
            raise FileExistsError(_exists_message(path)) from None
        os.replace(tmp, path)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_create(path, fill: Callable, *, overwrite: bool = False) -> Path:
    """Create ``path`` atomically with ``fill(tmp_path, fd, check)``.

    ``fill`` writes the temporary file (``fd`` is open on it, read-write) and calls
    ``check()`` between pieces of work (a deferred signal raises there). Raises
    ``FileExistsError`` if ``path`` exists and not ``overwrite``, or is a device, pipe or
    socket (never replaced), ``IsADirectoryError`` if it is a directory; a deferred Ctrl-C
    becomes ``KeyboardInterrupt`` after clean-up.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory")
    problem = not_regular(path)
    if problem:
        raise FileExistsError(f"{path} {problem}")
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(_exists_message(path))
    if not directory.is_dir():
        raise FileNotFoundError(f"{path}: directory {directory} does not exist")
    reclaim_stale(directory)
    mode = file_mode(path)
    pending = None
    with deferred_signals() as state:
        try:
            tmp, fd = _create_temp(directory, path.name)
            try:
                fill(str(tmp), fd, state.check)
                state.check()
                os.fchmod(fd, mode)
                os.fsync(fd)
                state.check()
                _publish(tmp, path, overwrite)
            finally:
                try:
                    os.unlink(tmp)  # published under its real name (or abandoned)
                except FileNotFoundError:
                    pass
                os.close(fd)
            _fsync_directory(directory)
        except Interrupted as exc:
            pending = exc.signum
        if pending is None:
            try:
                state.check()  # signals that arrived after the last check point
            except Interrupted as exc:
                pending = exc.signum
    if pending is not None:
        deliver(pending)
    return path
