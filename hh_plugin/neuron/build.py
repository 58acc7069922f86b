r"""Compiling generated NMODL with ``nrnivmodl`` into a cache keyed by content, and loading it.

:func:`ensure_mechanisms` makes mechanisms available in this NEURON process: those not
loaded yet are written as ``.mod`` files into one folder under
``<cache>/neuron/mech_<hash>/`` (the cache folder of the fused kernels,
:func:`hh_plugin.build_lock.cache_dir`: ``$HH_PLUGIN_CACHE_DIR``, else
``$XDG_CACHE_HOME/hh_plugin``, else ``~/.cache/hh_plugin``), compiled there by ``nrnivmodl``
(about 8 s) unless an earlier process did, and loaded with ``nrn_load_dll``. The hash
covers the sources, NEURON's version and installation folder and the machine, so a cache
shared by two NEURON installations never hands one the other's library (and environments
sharing one installation share builds).

Builds are serialised with the fused kernels' build lock
(:func:`hh_plugin.build_lock.build_lock`, an ``flock`` released by the system if its
process dies) and its timeout (``$HH_PLUGIN_BUILD_TIMEOUT``, default 300 s): every rank of
an MPI job may call this at once; one compiles, the others wait and load. ``nrnivmodl``
itself gets the same timeout.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Set

from ..build_lock import build_lock, build_timeout, cache_dir

#: Written beside a finished build (the key's parts, for a person looking at the cache).
BUILD_STAMP = "hh_plugin_build.txt"

_LOCK = threading.Lock()
_LOADED: Set[str] = set()


class NeuronBuildError(RuntimeError):
    """``nrnivmodl`` is missing, failed or timed out, or a library did not load."""


def nrnivmodl() -> str:
    """The resolved ``nrnivmodl`` (on ``PATH``, or beside the Python running this);
    :class:`NeuronBuildError` naming what is missing otherwise."""
    found = shutil.which("nrnivmodl") or shutil.which(
        "nrnivmodl", path=str(Path(sys.executable).parent))
    if not found:
        raise NeuronBuildError("nrnivmodl (NEURON's mechanism compiler) is not on PATH: "
                               "install NEURON (pip install neuron) into this environment")
    return os.path.realpath(found)


def loaded_mechanisms() -> Set[str]:
    """Names of every mechanism this NEURON process knows (built in and loaded)."""
    from neuron import h

    names = set()
    for kind in (0, 1):  # density mechanisms, point processes
        mt = h.MechanismType(kind)
        name = h.ref("")
        for i in range(int(mt.count())):
            mt.select(i)
            mt.selected(name)
            names.add(name[0])
    return names


def build_key(sources: Mapping[str, str]) -> str:
    """16 hex digits naming the build of ``sources`` (``{file stem: NMODL text}``) with
    this NEURON installation."""
    import neuron

    parts = [f"{name}\n{text}" for name, text in sorted(sources.items())]
    # the NEURON installation (whose nrnivmodl, headers and libraries a build uses), not
    # the path of the nrnivmodl wrapper found (a pyenv shim or the environment's script)
    parts += [f"neuron {neuron.__version__} {os.path.dirname(os.path.realpath(neuron.__file__))}",
              f"machine {platform.machine()} {platform.system()}"]
    return hashlib.sha256("\n\0".join(parts).encode()).hexdigest()[:16]


def _library(folder: Path) -> Path:
    for candidate in (folder / platform.machine() / "libnrnmech.so",
                      folder / platform.machine() / ".libs" / "libnrnmech.so",
                      folder / "arm64" / "libnrnmech.dylib"):
        if candidate.is_file():
            return candidate
    found = sorted(folder.glob("*/libnrnmech.*")) + sorted(folder.glob("*/.libs/libnrnmech.*"))
    if not found:
        raise NeuronBuildError(f"nrnivmodl left no libnrnmech library in {folder}")
    return found[0]


def compile_mechanisms(sources: Mapping[str, str], verbose: bool = False) -> Path:
    """The compiled library of ``sources`` (``{file stem: NMODL text}``): built by
    ``nrnivmodl`` on first use (under the build lock), else taken from the cache."""
    if not sources:
        raise ValueError("no mechanisms to compile")
    compiler = nrnivmodl()
    key = build_key(sources)
    folder = cache_dir() / "neuron" / f"mech_{key}"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / BUILD_STAMP
    timeout = build_timeout()
    with build_lock(folder, timeout, "NEURON mechanisms", NeuronBuildError):
        if stamp.is_file():
            return _library(folder)
        for old in folder.glob("*.mod"):
            old.unlink()
        for name, text in sources.items():
            (folder / f"{name}.mod").write_text(text)
        print(f"hh_plugin: compiling NEURON mechanisms {', '.join(sorted(sources))} "
              f"(first use here: about 8 s; cached in {folder})", file=sys.stderr,
              flush=True)
        try:
            run = subprocess.run([compiler], cwd=folder, capture_output=True, text=True,
                                 timeout=timeout)
        except subprocess.TimeoutExpired:
            raise NeuronBuildError(f"nrnivmodl ran longer than {timeout:g} s in {folder} "
                                   f"(HH_PLUGIN_BUILD_TIMEOUT)") from None
        if verbose:
            print(run.stdout, run.stderr, file=sys.stderr)
        if run.returncode != 0:
            lines = (run.stdout + run.stderr).splitlines()
            errors = [line for line in lines if "rror" in line or "RESERVED" in line]
            tail = "\n".join(errors[:10] + ["..."] + lines[-15:])
            raise NeuronBuildError(f"nrnivmodl failed in {folder} (exit "
                                   f"{run.returncode}):\n{tail}")
        library = _library(folder)
        stamp.write_text("\n".join(sorted(sources)) + f"\n{compiler}\n")
        return library


def ensure_mechanisms(sources: Mapping[str, str], verbose: bool = False) -> List[str]:
    """Make the mechanisms of ``sources`` (``{mechanism name: NMODL text}``; the name is
    the ``SUFFIX`` or ``POINT_PROCESS`` the text declares) known to this NEURON process:
    those already known are skipped, the others compiled together (cached) and loaded.
    Returns the names that were loaded now."""
    with _LOCK:
        known = _LOADED | loaded_mechanisms()
        missing: Dict[str, str] = {n: t for n, t in sources.items() if n not in known}
        if not missing:
            return []
        library = compile_mechanisms(missing, verbose)
        from neuron import h

        if not h.nrn_load_dll(str(library)):
            raise NeuronBuildError(f"NEURON could not load {library}")
        now = loaded_mechanisms()
        absent = sorted(set(missing) - now)
        if absent:
            raise NeuronBuildError(f"{library} was loaded but does not define {absent}")
        _LOADED.update(missing)
        return sorted(missing)


def is_loaded(names: Iterable[str]) -> bool:
    """Whether every mechanism in ``names`` is known to this NEURON process."""
    names = set(names)
    return names <= (_LOADED | loaded_mechanisms())
