r"""One call to switch Brian2 between runtime, C++ standalone and Brian2CUDA.

:func:`use_device` wraps Brian2's ``set_device`` and applies what users otherwise trip over:

- **several builds in one process**: each standalone session builds on a device instance
  of its own (Brian2 refuses a second build on a device that has run), so sessions,
  and Brian2's own ``set_device('cpp_standalone')`` after them, start fresh while the
  results of earlier sessions stay readable; ``defaultclock.dt`` is carried over;
- **OpenMP threads** for ``cpp_standalone`` (``threads=k``);
- **bounded parallel make**: Brian2's default ``make -j`` starts one compiler per code
  object at once; a network's Brian2CUDA project (dozens of ``nvcc`` runs of about 1 GB
  each) ran out of memory on a 24 GB machine, so a standalone build runs ``make -j<cores>``
  unless ``prefs.devices.cpp_standalone.extra_make_args_unix`` was changed;
- **Brian2CUDA on CUDA 12/13**: the generated makefile passes ``-std=c++11``, which the
  Thrust/CCCL of CUDA 13 rejects; ``-std=c++17`` is appended to the nvcc flags (nvcc keeps
  the last ``-std``) and ``-std=c++11`` is replaced in the host compiler flags;
- **code generation without a GPU**: GPU detection is switched off and the compute
  capability (``compute_capability=9.0`` for H100/H200) and CUDA runtime version (read
  from ``nvcc --version``) are given as preferences;
- **cuRAND from a wheel**: CUDA toolkits installed from the package index (``nvidia-cuda-nvcc``
  and friends) often lack cuRAND, which Brian2CUDA links; the ``nvidia-curand`` wheel is
  found and used when the toolkit has no ``curand.h``;
- **progress and stalls**: ``make`` runs through :mod:`hh_plugin.brian2.make_watch`, which
  prints a line per compiled object (``7 of 22 objects compiled after 95 s``) and stops a
  build that makes no progress for ``stall_timeout`` seconds, naming the step it was in
  (:class:`BuildStalled`);
- **clear errors** when Brian2CUDA, nvcc or cuRAND is missing, naming what to install.

Every preference it changes is restored, and the previous device re-activated, by
:meth:`DeviceSession.close` (or at the end of a ``with`` block).

Example::

    from hh_plugin.brian2 import neuron_group, use_device

    with use_device("cpp_standalone", directory="hh_cpp", threads=2,
                    build_on_run=False) as session:
        group = neuron_group(10_000, current=10 * uA, seed=0)
        run(100 * ms)
        session.build()              # generate, compile, run
        print(session.timings)       # {'make': ..., 'run_binary': ..., 'simulation': ...}
    # back to runtime mode here, preferences and defaultclock.dt as before
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Optional

from . import _compat

#: Device names :func:`use_device` accepts.
DEVICES = ("runtime", "cpp_standalone", "cuda_standalone")

CUDA_INSTALL_HINT = (
    "install Brian2CUDA with the Brian2 version it pins: "
    "`pip install 'hh_plugin[cuda]'` (brian2cuda 1.0a7 pins brian2==2.8.0 and needs "
    "numpy<2.4; brian2cuda 1.0b1 pins brian2==2.10.1 and Python >= 3.12). If your "
    "environment must keep another Brian2, use a separate virtual environment for "
    "CUDA code generation")
NVCC_INSTALL_HINT = (
    "install the CUDA toolkit (https://developer.nvidia.com/cuda-downloads, or "
    "`pip install nvidia-cuda-nvcc`) and put `nvcc` on the PATH, or set the environment "
    "variable CUDA_PATH to the toolkit directory (the one with bin/nvcc)")
CURAND_INSTALL_HINT = (
    "Brian2CUDA links cuRAND, which this CUDA toolkit lacks (no include/curand.h): "
    "install the CUDA toolkit's cuRAND package, or the wheel: `pip install "
    "'nvidia-curand~=10.4.0'` for CUDA 13.0 (`nvidia-curand-cu12` for CUDA 12)")

_CPP_STD_FLAG = "-std=c++17"
_MAKE_ARGS = "devices.cpp_standalone.extra_make_args_unix"
_BRIAN2_DEFAULT_MAKE_ARGS = ["-j"]
_MAKE_CMD = "devices.cpp_standalone.make_cmd_unix"
#: Default of :func:`use_device`'s ``stall_timeout``: seconds without a new object file.
#: The slowest single ``nvcc`` run of the project's Brian2CUDA networks took about 4 min
#: on two cores (docs/brian2.md); a stall is declared well after that.
DEFAULT_STALL_TIMEOUT = 1200.0


class BuildStalled(TimeoutError):
    """A standalone build made no progress for ``stall_timeout`` seconds and was stopped;
    the message names the step (dependencies, the sources being compiled, or linking)."""


class DeviceSession:
    """The device chosen by :func:`use_device`; a context manager.

    Attributes:
        name: ``'runtime'``, ``'cpp_standalone'`` or ``'cuda_standalone'``.
        device: the Brian2 device object.
        directory: the project directory of a standalone device (``None``: temporary).
        build_options: options for ``device.build`` (``compile``, ``run``, ``clean``, ...).
        timings: after :meth:`build`: ``'make'`` (seconds spent compiling), ``'run_binary'``
            (seconds running the binary, start-up and writing results included),
            ``'simulation'`` (seconds of the network's ``run`` inside the binary, as the
            binary reports it), and ``'generate'`` (code generation).
    """

    def __init__(self, name, device, directory, build_on_run, build_options,
                 saved_prefs, previous, dt):
        self.name = name
        self.device = device
        self.directory = directory
        self.build_on_run = build_on_run
        self.build_options = dict(build_options)
        self._timings: Dict[str, Optional[float]] = {}
        self._saved_prefs = saved_prefs
        self._previous = previous
        self._dt = dt
        self._closed = False

    @property
    def is_standalone(self) -> bool:
        return self.name != "runtime"

    @property
    def timings(self) -> Dict[str, Optional[float]]:
        """Seconds spent in the phases of the last build (see the class docs)."""
        if not self._timings and self.is_standalone and not self._closed:
            make = _compat.make_time(self.device)
            binary = _compat.binary_time(self.device)
            if binary is not None or make is not None:
                return {"generate": None, "make": make, "run_binary": binary,
                        "simulation": _compat.last_run_time(self.device)}
        return dict(self._timings)

    def build(self, **options) -> Dict[str, Optional[float]]:
        """Generate, compile and (by default) run the standalone project.

        ``options`` override the build options given to :func:`use_device`
        (``directory``, ``compile``, ``run``, ``clean``, ``with_output``, ``run_args``...).
        Returns :attr:`timings`.
        """
        if not self.is_standalone:
            raise RuntimeError("build() is for standalone devices; the runtime device "
                               "runs at each run() call")
        if self.build_on_run:
            raise RuntimeError("this device was set with build_on_run=True: it builds at "
                               "run(); use use_device(..., build_on_run=False) to call build()")
        kwargs = {"directory": self.directory, **self.build_options, **options}
        compile_, run_ = kwargs.get("compile", True), kwargs.get("run", True)
        if compile_:
            _check_cuda_compile(self.name)
        start = time.perf_counter()
        try:
            self.device.build(**{**kwargs, "run": False})
        except RuntimeError as exc:
            stalled = _stall_report(getattr(self.device, "project_dir", None))
            if stalled is None:
                raise
            raise BuildStalled(f"{self.name}: {stalled} (project {self.device.project_dir}; "
                               f"use_device(..., stall_timeout=...) sets the limit)") from exc
        total = time.perf_counter() - start
        self.directory = self.device.project_dir
        make = _compat.make_time(self.device) if compile_ else None
        self._timings = {"generate": total - (make or 0.0), "make": make,
                         "run_binary": None, "simulation": None}
        if compile_ and run_:
            self.run(with_output=kwargs.get("with_output", True),
                     run_args=kwargs.get("run_args"))
        return self.timings

    def run(self, with_output: bool = True, run_args=None) -> Dict[str, Optional[float]]:
        """Run the compiled binary (again); updates ``timings['run_binary']`` and
        ``timings['simulation']`` and loads the results (monitors, state variables)."""
        self.device.run(self.device.project_dir, None, with_output, run_args)
        self._timings["run_binary"] = _compat.binary_time(self.device)
        self._timings["simulation"] = _compat.last_run_time(self.device)
        return self.timings

    def close(self) -> None:
        """Re-activate the previous device and restore preferences and ``defaultclock.dt``.

        A standalone session builds on a device instance of its own, so its results
        (monitors, state variables) stay readable after the ``with`` block, and
        Brian2's own ``set_device('cpp_standalone')`` starts from a fresh device."""
        if self._closed:
            return
        from brian2 import defaultclock, get_device, prefs, set_device

        self._closed = True
        _close_progress_channel(getattr(self, "_progress", None))
        device, build_on_run, build_options = self._previous
        for key, value in self._saved_prefs.items():
            prefs[key] = value
        if get_device() is self.device:
            _compat.restore_previous_device()  # undoes use_device's set_device
        else:  # the device was changed inside the block
            set_device(device, build_on_run=build_on_run, **build_options)
        defaultclock.dt = self._dt

    def __enter__(self) -> "DeviceSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else "active"
        return f"DeviceSession({self.name!r}, directory={self.directory!r}, {state})"


# --------------------------------------------------------------------------- CUDA tools
def find_nvcc() -> Optional[str]:
    """Path of ``nvcc``: ``$CUDA_PATH/bin/nvcc``, the PATH, ``/usr/local/cuda/bin/nvcc``."""
    candidates = []
    if os.environ.get("CUDA_PATH"):
        candidates.append(os.path.join(os.environ["CUDA_PATH"], "bin", "nvcc"))
    on_path = shutil.which("nvcc")
    if on_path:
        candidates.append(on_path)
    candidates += ["/usr/local/cuda/bin/nvcc", "/opt/cuda/bin/nvcc"]
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def nvcc_version(nvcc: Optional[str] = None) -> float:
    """CUDA release of ``nvcc`` as a float (``13.0``), from ``nvcc --version``."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise RuntimeError(f"nvcc was not found: {NVCC_INSTALL_HINT}")
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"release (\d+)\.(\d+)", out)
    if match is None:
        raise RuntimeError(f"cannot read the CUDA release from `{nvcc} --version`:\n{out}")
    return float(f"{match.group(1)}.{match.group(2)}")


def cuda_home(nvcc: Optional[str] = None) -> Optional[Path]:
    """The CUDA toolkit directory (``nvcc`` wrappers such as ``exec .../bin/nvcc`` followed)."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        return None
    path = Path(os.path.realpath(nvcc))
    try:  # a shell wrapper that execs the real nvcc
        text = path.read_text(errors="ignore") if path.stat().st_size < 4096 else ""
    except OSError:
        text = ""
    match = re.search(r"exec\s+(\S+/bin/nvcc)\b", text)
    if match:
        path = Path(os.path.realpath(match.group(1)))
    return path.parent.parent


def find_curand(nvcc: Optional[str] = None):
    """``(include_dir, library_dir)`` of cuRAND, or ``None``.

    Looks in the CUDA toolkit of ``nvcc`` first, then for the ``nvidia-curand`` wheel
    (``nvidia/cu13/...`` or ``nvidia/curand/...``) in the Python path.
    """
    home = cuda_home(nvcc)
    if home is not None:
        for inc, lib in (("include", "lib64"), ("targets/x86_64-linux/include",
                                                "targets/x86_64-linux/lib")):
            if (home / inc / "curand.h").is_file():
                return str(home / inc), str(home / lib)
    try:
        import nvidia  # namespace package of the NVIDIA wheels
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        for sub in ("cu13", "curand", "cu12"):
            inc = Path(root) / sub / "include"
            lib = Path(root) / sub / "lib"
            if (inc / "curand.h").is_file() and any(lib.glob("libcurand.so*")):
                return str(inc), str(lib)
    return None


def curand_wheel(cuda_version: float) -> Optional[str]:
    """The pip requirement of the cuRAND wheel for a CUDA release (``None`` if unknown)."""
    major = int(cuda_version)
    minor = int(round((cuda_version - major) * 10))
    if major == 13:
        return f"nvidia-curand~=10.4.{minor}"
    if major == 12:
        return "nvidia-curand-cu12"
    if major == 11:
        return "nvidia-curand-cu11"
    return None


def _linkable_library_dir(lib_dir: str) -> str:
    """A directory where ``-lcurand`` resolves: ``lib_dir`` itself, or (wheels ship only
    ``libcurand.so.10``) a cache directory with a ``libcurand.so`` link."""
    if os.path.exists(os.path.join(lib_dir, "libcurand.so")):
        return lib_dir
    versioned = sorted(Path(lib_dir).glob("libcurand.so.*"))
    if not versioned:
        raise RuntimeError(f"no libcurand.so* in {lib_dir}: {CURAND_INSTALL_HINT}")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    link_dir = cache / "hh_plugin" / "curand-link" / re.sub(r"[^A-Za-z0-9]+", "_", lib_dir)
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / "libcurand.so"
    if os.path.realpath(link) != os.path.realpath(versioned[0]):
        tmp = link_dir / f"libcurand.so.{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(versioned[0])
        os.replace(tmp, link)
    return str(link_dir)


def _check_cuda_compile(name: str) -> None:
    if name == "cuda_standalone" and find_nvcc() is None:
        raise RuntimeError(f"compiling a cuda_standalone project needs nvcc, which was not "
                           f"found: {NVCC_INSTALL_HINT}. To only generate the code, "
                           f"build with compile=False")


def import_brian2cuda():
    """Import Brian2CUDA (registers ``cuda_standalone``) or raise an ``ImportError`` that
    says what to install."""
    try:
        import brian2cuda  # noqa: F401
    except ImportError as exc:
        import brian2

        raise ImportError(f"the 'cuda_standalone' device needs Brian2CUDA, which cannot be "
                          f"imported here ({exc}; Brian2 {brian2.__version__} is installed): "
                          f"{CUDA_INSTALL_HINT}") from exc
    return brian2cuda


def _gpu_compute_capability(gpu_id: int) -> Optional[float]:
    """Compute capability of GPU ``gpu_id`` from ``nvidia-smi``, or ``None``."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        return float(out.split()[gpu_id])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------------- use_device
def _set_pref(saved: Dict[str, Any], key: str, value) -> None:
    from brian2 import prefs

    if key not in saved:
        saved[key] = copy.deepcopy(prefs[key])
    prefs[key] = value


def use_device(name: str = "cpp_standalone", directory: Optional[str] = None,
               threads: Optional[int] = None, compute_capability: Optional[float] = None,
               cuda_runtime_version: Optional[float] = None, build_on_run: bool = True,
               gpu_id: int = 0, target: Optional[str] = None,
               stall_timeout: Optional[float] = DEFAULT_STALL_TIMEOUT,
               **build_options) -> DeviceSession:
    r"""Make ``name`` Brian2's current device, with the fixes listed in the module docs.

    Args:
        name: ``'runtime'``, ``'cpp_standalone'`` or ``'cuda_standalone'``.
        directory: project directory of a standalone device (``None``: a temporary one).
        threads: OpenMP threads for ``cpp_standalone`` (``prefs.devices.cpp_standalone.
            openmp_threads``; 0 switches OpenMP off).
        compute_capability: GPU architecture for ``cuda_standalone``, e.g. ``9.0`` for
            H100/H200 (``sm_90``). ``None``: asked from ``nvidia-smi``; without a GPU it
            must be given.
        cuda_runtime_version: CUDA version for ``cuda_standalone`` code generation
            (``None``: read from ``nvcc --version``).
        build_on_run: as Brian2's ``set_device``: build at the first ``run()``; with
            ``False``, call :meth:`DeviceSession.build` after the ``run`` calls.
        gpu_id: the GPU the CUDA binary runs on.
        target: for ``'runtime'``: the code generation target (``'numpy'``, ``'cython'``).
        stall_timeout: seconds a standalone build may go without producing an object file,
            the dependency file or the program before it is stopped and
            :class:`BuildStalled` names the step it was in (``None``: never). Progress
            lines are printed meanwhile (:mod:`hh_plugin.brian2.make_watch`). Applies
            while ``prefs.devices.cpp_standalone.make_cmd_unix`` is Brian2's ``'make'``.
        **build_options: options of ``device.build`` (``compile``, ``run``, ``clean``,
            ``with_output``, ``debug``, ``run_args``, ...).

    Returns:
        a :class:`DeviceSession`; use it as a context manager, or call ``close()``, to go
        back to the previous device with the previous preferences.

    Raises:
        ValueError: unknown device name or bad option.
        ImportError: ``cuda_standalone`` without an importable Brian2CUDA.
        RuntimeError: ``cuda_standalone`` with compilation requested but no nvcc, or no
            cuRAND, or no GPU and no ``compute_capability``.
    """
    import brian2
    from brian2 import defaultclock, get_device, prefs, set_device

    if not isinstance(name, str) or name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; use one of {list(DEVICES)}")
    if threads is not None:
        if name != "cpp_standalone":
            raise ValueError(f"threads (OpenMP) apply to 'cpp_standalone' only, not {name!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be a non-negative integer, got {threads!r}")
    if target is not None and name != "runtime":
        raise ValueError("target applies to the 'runtime' device only")
    cuda_only = {"compute_capability": compute_capability,
                 "cuda_runtime_version": cuda_runtime_version}
    if name != "cuda_standalone" and any(v is not None for v in cuda_only.values()):
        raise ValueError(f"{[k for k, v in cuda_only.items() if v is not None]} apply to "
                         f"'cuda_standalone' only")
    if name == "runtime" and (directory is not None or build_options):
        raise ValueError("directory and build options apply to standalone devices only")
    if stall_timeout is not None and (isinstance(stall_timeout, bool) or not isinstance(
            stall_timeout, (int, float)) or not stall_timeout > 0):
        raise ValueError(f"stall_timeout must be a number of seconds > 0 or None, got "
                         f"{stall_timeout!r}")

    if name == "cuda_standalone":
        import_brian2cuda()

    saved: Dict[str, Any] = {}
    current = get_device()
    previous = (current, getattr(current, "build_on_run", True),
                dict(getattr(current, "build_options", {}) or {}))
    dt = defaultclock.dt

    try:
        if name == "runtime":
            if target is not None:
                _set_pref(saved, "codegen.target", target)
        elif name == "cpp_standalone":
            if threads is not None:
                _set_pref(saved, "devices.cpp_standalone.openmp_threads", threads)
        else:
            _configure_cuda(saved, compute_capability, cuda_runtime_version, gpu_id,
                            compile_=build_options.get("compile", True))

        if name != "runtime" and list(prefs[_MAKE_ARGS]) == _BRIAN2_DEFAULT_MAKE_ARGS:
            _set_pref(saved, _MAKE_ARGS, [f"-j{os.cpu_count() or 1}"])
        if name != "runtime" and prefs[_MAKE_CMD] == "make":
            from .make_watch import command_line

            _set_pref(saved, _MAKE_CMD, command_line(stall_timeout))
        if name != "runtime":
            # a device instance of this session's own: Brian2's registered instance
            # (which refuses a second build once run) stays fresh for set_device(name)
            device = _compat.fresh_device(name)
            if build_on_run:
                set_device(device, build_on_run=True, directory=directory, **build_options)
            else:
                set_device(device, build_on_run=False)
        else:
            set_device(name)
        defaultclock.dt = dt
    except BaseException:
        for key, value in saved.items():
            prefs[key] = value
        raise
    session = DeviceSession(name, brian2.get_device(), directory, build_on_run,
                            build_options, saved, previous, dt)
    if name != "runtime":
        session._progress = _open_progress_channel()
    return session


def _open_progress_channel():
    """Brian2 sends a build's output to log files of its own (shown only when it fails);
    the progress lines of :mod:`~hh_plugin.brian2.make_watch` go to a copy of this
    process's standard error, passed to it in :data:`~.make_watch.PROGRESS_FD_VARIABLE`.
    Returns ``(fd, previous value of the variable)``, or ``None``."""
    from .make_watch import PROGRESS_FD_VARIABLE

    try:
        fd = os.dup(2)
        os.set_inheritable(fd, True)
    except OSError:
        return None
    previous = os.environ.get(PROGRESS_FD_VARIABLE)
    os.environ[PROGRESS_FD_VARIABLE] = str(fd)
    return fd, previous


def _close_progress_channel(channel) -> None:
    from .make_watch import PROGRESS_FD_VARIABLE

    if channel is None:
        return
    fd, previous = channel
    if previous is None:
        os.environ.pop(PROGRESS_FD_VARIABLE, None)
    else:
        os.environ[PROGRESS_FD_VARIABLE] = previous
    try:
        os.close(fd)
    except OSError:
        pass


def _stall_report(project_dir) -> Optional[str]:
    """The stall report :mod:`~hh_plugin.brian2.make_watch` left in ``project_dir``."""
    from .make_watch import REPORT_NAME

    if not project_dir:
        return None
    try:
        return (Path(project_dir) / REPORT_NAME).read_text().strip() or None
    except OSError:
        return None


def _configure_cuda(saved, compute_capability, cuda_runtime_version, gpu_id, compile_):
    from brian2 import prefs

    if isinstance(gpu_id, bool) or not isinstance(gpu_id, int) or gpu_id < 0:
        raise ValueError(f"gpu_id must be a non-negative integer, got {gpu_id!r}")
    nvcc = find_nvcc()
    if compile_ and nvcc is None:
        raise RuntimeError(f"cuda_standalone: nvcc was not found: {NVCC_INSTALL_HINT}. "
                           f"To generate the code only, pass compile=False together with "
                           f"compute_capability and cuda_runtime_version")
    if cuda_runtime_version is None:
        if nvcc is None:
            raise RuntimeError("cuda_standalone without nvcc: pass cuda_runtime_version "
                               "(e.g. 13.0) to generate the code")
        cuda_runtime_version = nvcc_version(nvcc)
    if compute_capability is None:
        compute_capability = _gpu_compute_capability(gpu_id)
        if compute_capability is None:
            raise RuntimeError("cuda_standalone: no GPU found to read the compute capability "
                               "from; pass compute_capability (e.g. 9.0 for H100/H200, 8.0 "
                               "for A100) to generate code for that GPU")
    backend = "devices.cuda_standalone.cuda_backend."
    _set_pref(saved, backend + "detect_gpus", False)
    _set_pref(saved, backend + "detect_cuda", False)
    _set_pref(saved, backend + "gpu_id", int(gpu_id))
    _set_pref(saved, backend + "compute_capability", float(compute_capability))
    _set_pref(saved, backend + "cuda_runtime_version", float(cuda_runtime_version))
    if nvcc is not None and not os.environ.get("CUDA_PATH") and \
            prefs[backend + "cuda_path"] is None:
        home = cuda_home(nvcc)
        if home is not None and (home / "bin" / "nvcc").is_file():
            _set_pref(saved, backend + "cuda_path", str(home))

    # C++17: CUDA 13's Thrust/CCCL rejects the makefile's -std=c++11
    nvcc_flags = [f for f in prefs[backend + "extra_compile_args_nvcc"]
                  if not f.startswith("-std=")] + [_CPP_STD_FLAG]
    gcc_flags = [f for f in prefs["codegen.cpp.extra_compile_args_gcc"]
                 if not f.startswith("-std=")] + [_CPP_STD_FLAG]
    if compile_:
        curand = find_curand(nvcc)
        if curand is None:
            raise RuntimeError(f"cuda_standalone: cuRAND not found. {CURAND_INSTALL_HINT}")
        include_dir, lib_dir = curand
        home = cuda_home(nvcc)
        if home is None or not Path(include_dir).is_relative_to(home):
            nvcc_flags.append(f"-I{include_dir}")
            link_dir = _linkable_library_dir(lib_dir)
            _set_pref(saved, "codegen.cpp.library_dirs",
                      list(prefs["codegen.cpp.library_dirs"]) + [link_dir])
            _set_pref(saved, "codegen.cpp.runtime_library_dirs",
                      list(prefs["codegen.cpp.runtime_library_dirs"]) + [lib_dir])
    _set_pref(saved, backend + "extra_compile_args_nvcc", nvcc_flags)
    _set_pref(saved, "codegen.cpp.extra_compile_args_gcc", gcc_flags)
