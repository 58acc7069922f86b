"""``make`` for a Brian2 standalone project, with progress lines and a stall report.

Brian2 (and Brian2CUDA, which inherits the step) compiles a standalone project with
``os.system(make_cmd + make_args)`` in the project directory and prints nothing until
``make`` ends. A Brian2CUDA network takes minutes of ``nvcc`` on a small machine, and a
build that stops progressing looks the same as one that is slow. :func:`use_device`
therefore sets ``prefs.devices.cpp_standalone.make_cmd_unix`` to this script, which

- runs ``make`` in its own process group;
- prints a line each time an object file of the makefile's ``SRCS`` appears (to the
  user's standard error, which Brian2 does not capture: :data:`PROGRESS_FD_VARIABLE`):
  ``[hh_plugin] make: 7 of 22 objects compiled after 95 s (now: code_objects/x.cu)``;
- when no object, dependency file or program has appeared for ``--stall-timeout`` seconds,
  names the step the build is in (computing dependencies, compiling the sources that
  are being compiled, or linking), writes it to ``--report`` (read by
  :meth:`hh_plugin.brian2.DeviceSession.build`, which raises :class:`BuildStalled`
  with it), stops the process group and exits with status 124 (as ``timeout`` does).

Standard library only, and runnable by path, so that it works with the Python of any
environment Brian2CUDA runs in::

    python make_watch.py --stall-timeout 900 --report .hh_plugin_make_stall -- make -j2
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

#: Exit status of a stalled build (that of coreutils' ``timeout``).
STALLED = 124
#: File name of the stall report, in the project directory.
REPORT_NAME = ".hh_plugin_make_stall"
#: Environment variable with a file descriptor for the progress lines (Brian2 sends the
#: build's standard output to a log file; :func:`hh_plugin.brian2.use_device` passes a
#: copy of the user's standard error here). Unset or invalid: standard output.
PROGRESS_FD_VARIABLE = "HH_PLUGIN_PROGRESS_FD"
_SOURCE_SUFFIXES = (".cu", ".cpp", ".c")


def makefile_sources(directory: Path) -> Tuple[List[str], str]:
    """The ``SRCS`` of the project's makefile and its ``PROGRAM`` (``main``)."""
    text = (directory / "makefile").read_text(errors="replace")
    sources: List[str] = []
    program = "main"
    for line in text.splitlines():
        if line.startswith("SRCS") and "=" in line:
            sources = line.split("=", 1)[1].split()
        elif line.startswith("PROGRAM") and "=" in line:
            program = line.split("=", 1)[1].strip() or program
    return sources, program


def object_of(source: str) -> str:
    for suffix in _SOURCE_SUFFIXES:
        if source.endswith(suffix):
            return source[: -len(suffix)] + ".o"
    return source + ".o"


def _descendants(pid: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def sources_being_compiled(pid: int, sources: Sequence[str]) -> List[str]:
    """The ``sources`` named on the command lines of ``pid``'s descendants (the compilers
    that ``make`` runs), in makefile order; empty where ``/proc`` is not readable."""
    wanted = set(sources)
    running = set()
    for child in _descendants(pid):
        try:
            words = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for word in words:
            name = word.decode(errors="replace")
            if name in wanted:
                running.add(name)
    return [s for s in sources if s in running]


class Progress:
    """What exists of the build's products in ``directory``: objects, ``make.deps``,
    the program."""

    def __init__(self, directory: Path, sources: Sequence[str], program: str):
        self.directory = directory
        self.sources = list(sources)
        self.objects = [object_of(s) for s in sources]
        self.program = program

    def snapshot(self) -> Tuple:
        def stamp(name):
            try:
                return (self.directory / name).stat().st_mtime_ns
            except OSError:
                return None

        return tuple(stamp(name) for name in [*self.objects, "make.deps", self.program])

    def compiled(self, snapshot: Tuple) -> int:
        return sum(s is not None for s in snapshot[: len(self.objects)])

    def step(self, snapshot: Tuple, running: Sequence[str]) -> str:
        """The build's step, in words."""
        done = self.compiled(snapshot)
        total = len(self.objects)
        if running:
            return (f"compiling {', '.join(running)} ({done} of {total} objects "
                    f"compiled)")
        if snapshot[-2] is None and done == 0:
            return "computing the dependencies (make.deps)"
        if done < total:
            pending = [s for s, o in zip(self.sources, snapshot) if o is None]
            return (f"compiling, {done} of {total} objects compiled, waiting for "
                    f"{', '.join(pending[:4])}{' ...' if len(pending) > 4 else ''}")
        return f"linking {self.program} (all {total} objects compiled)"


def watch(command: Sequence[str], directory: Path, stall_timeout: Optional[float],
          report: Optional[Path], poll: float = 0.5, out=None) -> int:
    """Run ``command`` (``make ...``) in ``directory``; see the module docs."""
    out = out or sys.stdout
    try:
        sources, program = makefile_sources(directory)
    except OSError:
        sources, program = [], "main"
    progress = Progress(directory, sources, program)
    start = time.monotonic()
    proc = subprocess.Popen(list(command), cwd=directory, start_new_session=True)
    last = progress.snapshot()
    last_change = start
    reported = progress.compiled(last)
    try:
        while True:
            try:
                status = proc.wait(timeout=poll)
            except subprocess.TimeoutExpired:
                pass
            else:
                done = progress.compiled(progress.snapshot())
                if sources and done != reported:
                    print(f"[hh_plugin] make: {done} of {len(sources)} objects compiled "
                          f"after {time.monotonic() - start:.0f} s", file=out, flush=True)
                return status
            now = time.monotonic()
            snapshot = progress.snapshot()
            if snapshot != last:
                last, last_change = snapshot, now
                done = progress.compiled(snapshot)
                if done != reported and sources:
                    reported = done
                    running = sources_being_compiled(proc.pid, sources)
                    tail = f" (now: {', '.join(running)})" if running else ""
                    print(f"[hh_plugin] make: {done} of {len(sources)} objects compiled "
                          f"after {now - start:.0f} s{tail}", file=out, flush=True)
            elif stall_timeout is not None and now - last_change > stall_timeout:
                step = progress.step(snapshot, sources_being_compiled(proc.pid, sources))
                message = (f"the build made no progress for {stall_timeout:g} s (no new "
                           f"object, dependency file or program), {now - start:.0f} s "
                           f"after it started; it was {step}")
                if report is not None:
                    report.write_text(message + "\n")
                print(f"[hh_plugin] make stopped: {message}", file=out, flush=True)
                _stop(proc)
                return STALLED
    except BaseException:
        _stop(proc)
        raise


def _stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def command_line(stall_timeout: Optional[float], python: Optional[str] = None) -> str:
    """The ``make_cmd_unix`` preference that runs ``make`` through this script."""
    parts = [python or sys.executable, str(Path(__file__).resolve())]
    if stall_timeout is not None:
        parts += ["--stall-timeout", repr(float(stall_timeout))]
    parts += ["--report", REPORT_NAME, "--", "make"]
    return " ".join(shlex.quote(p) for p in parts)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stall-timeout", type=float, default=None,
                        help="seconds without progress before the build is stopped")
    parser.add_argument("--report", default=None, help="file for the stall report")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- make [arguments]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no make command given (-- make ...)")
    if args.stall_timeout is not None and not args.stall_timeout > 0:
        parser.error("--stall-timeout must be > 0")
    directory = Path.cwd()
    report = directory / args.report if args.report else None
    if report is not None and report.exists():
        report.unlink()
    return watch(command, directory, args.stall_timeout, report, out=_progress_stream())


def _progress_stream():
    """The stream of :data:`PROGRESS_FD_VARIABLE`, else standard output."""
    value = os.environ.get(PROGRESS_FD_VARIABLE, "")
    if value.isdigit():
        try:
            os.fstat(int(value))
            return open(int(value), "w", buffering=1, closefd=False)
        except OSError:
            pass
    return sys.stdout


if __name__ == "__main__":
    sys.exit(main())
