r"""The fused CPU path: a C++ extension generated from the model definition.

The source comes from :func:`.cpp_source.generate_cpp`; it is compiled with PyTorch's own
tooling (:func:`torch.utils.cpp_extension.load_inline`, which needs a C++ compiler and
``ninja``) **at first use**, and cached in a per-user directory keyed by a hash of the
source, the compiler flags and everything else that makes two builds differ
(:func:`build_environment`: the compiler and its version, torch's version, revision, C++
ABI and installation, Python's version and headers, the CPU), so that a cache shared by two
virtual environments or compilers never hands one the other's build:

* ``$HH_PLUGIN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/hh_plugin``, else
  ``~/.cache/hh_plugin``; the extension lives under ``torch_extensions/<name>/``.

Later processes load the cached build in well under a second. Builds are serialised by
an exclusive ``flock`` on ``<build>/hh_plugin_build.lock``, which the system releases when
its process dies: a build killed mid-way cannot block later ones (the lock file torch
itself leaves behind then is removed as stale). A process that waits longer than
``$HH_PLUGIN_BUILD_TIMEOUT`` seconds (default 300) for another one's build gives up with
:class:`PathUnavailable`, and the ``'auto'`` path falls back to the step loop with a
warning. Large outputs reuse storage that no tensor refers to any more
(:func:`release_outputs`). Each neuron's whole time
loop runs inside the kernel with its state in an L1-resident block (64 neurons in float,
32 in double) that the compiler vectorises; blocks are spread over PyTorch's intra-op
threads (``torch.set_num_threads``).

Training: the custom operators of :mod:`.ops` (``hh_plugin::fused_sequence`` and its
backward) store the state variables at every ``checkpoint``-th step (every
:math:`\lceil\sqrt T\rceil`-th by default) and, in the backward pass, recompute
each segment from its checkpoint inside the kernel and run the adjoint step backwards
through it. Gradients reach the input current, the initial state and every model
parameter and ``V_reset`` (not the surrogate's ``alpha``, ``width``, as in the reference).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import threading
import time  # noqa: F401  (tests patch cpp.time.sleep: the lock polls with it)
from pathlib import Path
from typing import Optional

import torch

from ...build_lock import build_lock, build_timeout, cache_dir  # noqa: F401 (re-exported)
from ...model.definition import ModelDefinition
from .codegen import source_hash
from .cpp_source import generate_cpp


class PathUnavailable(RuntimeError):
    """A requested computation path (fused C++, Triton, torch.compile) cannot run here."""


_LOCK = threading.Lock()
_EXTENSIONS: dict = {}
_FAILURES: dict = {}


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: Values of ``$HH_PLUGIN_VECTOR_WIDTH`` (bits; GCC's ``-mprefer-vector-width``).
VECTOR_WIDTHS = ("128", "256", "512")


def compile_flags() -> list:
    """Compiler flags of the CPU kernel (native code for this CPU; no -ffast-math).

    ``HH_PLUGIN_INLINE_EXP=1`` builds with the kernel's own inline vectorisable
    ``exp``/``expm1`` instead of libm/libmvec (for platforms without glibc's libmvec,
    where the default kernel's loops do not vectorise); ``HH_PLUGIN_EXACT_EXPREL=1``
    without the polynomial exprel of the float32 exponential-Euler factors
    (:func:`small_exprel_enabled`)."""
    flags = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
    if platform.machine() in ("x86_64", "AMD64"):
        flags.append("-march=native")
        width = os.environ.get("HH_PLUGIN_VECTOR_WIDTH")
        if width is not None and width not in VECTOR_WIDTHS:
            raise ValueError(f"HH_PLUGIN_VECTOR_WIDTH={width!r}: expected one of "
                             f"{', '.join(VECTOR_WIDTHS)} (bits)")
        if width is None and " avx512f" in " " + _cpu_flags():
            width = "512"
        if width is not None:
            flags.append(f"-mprefer-vector-width={width}")
    elif platform.machine() in ("aarch64", "arm64"):
        flags.append("-mcpu=native")
    if os.environ.get("HH_PLUGIN_INLINE_EXP"):
        # the kernel's own inline exp/expm1 instead of libm/libmvec (see codegen)
        flags.append("-DHH_INLINE_EXP")
    if not small_exprel_enabled():
        flags.append("-DHH_EXACT_EXPREL")
    return flags


def small_exprel_enabled() -> bool:
    """Whether the float32 sequence kernel takes the polynomial exprel of the
    exponential-Euler factors block-wise (:func:`.cpp_source.small_exprel_code`): yes
    unless ``HH_PLUGIN_EXACT_EXPREL`` is set (to anything but ``0`` or empty)."""
    return os.environ.get("HH_PLUGIN_EXACT_EXPREL", "0") in ("", "0")


@torch.compiler.assume_constant_result  # traced code asks once, at trace time
def compiler_available() -> Optional[str]:
    """``None`` if a C++ compiler and ninja are found, else the reason.

    Answered once per ``CXX`` and ``PATH`` (torch's ninja check runs ``ninja --version``
    in a subprocess, which cost 1.5 ms to 100 ms on every fused call)."""
    key = (os.environ.get("CXX"), os.environ.get("PATH"))
    if key not in _TOOLCHAIN:
        _TOOLCHAIN[key] = _find_toolchain()
    return _TOOLCHAIN[key]


_TOOLCHAIN: dict = {}


def _find_toolchain() -> Optional[str]:
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler ({cxx!r} not found on PATH; set CXX)"
    try:
        from torch.utils.cpp_extension import is_ninja_available
        if not is_ninja_available():
            return "ninja is not installed (pip install ninja)"
    except ImportError:  # pragma: no cover
        return "torch.utils.cpp_extension is unavailable"
    return None


#: Seconds a process waits silently for the build lock before it says why it waits.
QUIET_WAIT = 60.0


@contextlib.contextmanager
def _build_lock(build: Path, timeout: float):
    """Hold an exclusive ``flock`` on the build directory
    (:func:`hh_plugin.build_lock.build_lock`); :class:`PathUnavailable` after ``timeout``
    seconds of waiting. Released by the system if this process dies."""
    with build_lock(build, timeout, "the fused HH kernel", PathUnavailable, QUIET_WAIT):
        # torch.utils.cpp_extension guards a build with the file 'lock' (a FileBaton) and
        # waits forever while it exists; a build killed mid-way leaves it behind. Every
        # build here holds our lock, so with it held no build is running: the file is stale.
        with contextlib.suppress(FileNotFoundError):
            (build / "lock").unlink()
        yield


def build_environment() -> list:
    """What, besides the source and the flags, makes two builds differ (part of the cache
    key): the compiler (resolved path and version), torch (version, git revision, C++ ABI,
    installation folder, whose headers and libraries the build uses), Python (version and
    include folder) and the CPU (machine and instruction-set flags). Computed once."""
    if not _ENVIRONMENT:
        import subprocess
        import sysconfig

        cxx = os.environ.get("CXX", "c++")
        found = shutil.which(cxx)
        compiler = os.path.realpath(found) if found else cxx
        try:
            version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                     timeout=60).stdout.splitlines()[:1]
        except (OSError, subprocess.SubprocessError):
            version = []
        _ENVIRONMENT.extend([
            f"compiler {compiler} {' '.join(version)}",
            f"torch {torch.__version__} {getattr(torch.version, 'git_version', '')} "
            f"cxx11abi={torch.compiled_with_cxx11_abi()} {Path(torch.__file__).parent}",
            f"python {sys.version} {sysconfig.get_paths().get('include')}",
            f"cpu {platform.machine()} {_cpu_flags()}"])
    return list(_ENVIRONMENT)


_ENVIRONMENT: list = []
#: Written beside a finished build: the key's parts, for a person looking at the cache.
BUILD_STAMP = "hh_plugin_build.txt"


def cached_build(prefix: str, source: str, functions: list, what: str, verbose: bool = False):
    """Compile (first use) or load (cached) the extension of ``source`` with ``functions``.

    Its folder under :func:`cache_dir` is named ``prefix`` and a hash of the source, the
    flags and :func:`build_environment`; one process builds, others wait under the build
    lock (:func:`_build_lock`), then load. Whenever a build runs, ``what`` is named on
    stderr first (a build takes tens of seconds of CPU time)."""
    from torch.utils.cpp_extension import load_inline

    flags = compile_flags()
    key = "\n".join([source, " ".join(flags), *build_environment()])
    name = f"{prefix}_{source_hash(key)}"
    build = cache_dir() / "torch_extensions" / name
    build.mkdir(parents=True, exist_ok=True)
    stamp = build / BUILD_STAMP
    with _build_lock(build, build_timeout()):
        built = any(build.glob("*.so")) and stamp.is_file()
        if not built:
            print(f"hh_plugin: compiling {what} (first use here: about 35 s of CPU time, "
                  f"longer on a busy machine; cached in {build})", file=sys.stderr, flush=True)
        ext = load_inline(name=name, cpp_sources=[source], functions=functions,
                          extra_cflags=flags, extra_ldflags=["-fopenmp"],
                          build_directory=str(build), verbose=verbose)
        if not built:
            stamp.write_text("\n".join([" ".join(flags), *build_environment()]) + "\n")
    return ext


def load_once(key, extensions: dict, failures: dict, lock, build, needs: str, failed: str):
    """The extension ``build()`` compiles (first use) or loads (cached), once per process
    and ``key`` (kept in ``extensions``, under ``lock``). A failure is remembered in
    ``failures`` and raised again as :class:`PathUnavailable`: without a compiler
    ``"<needs> needs a compiler: <why>"``, a failed build ``"<failed> failed: <error>"``."""
    ext = extensions.get(key)
    if ext is not None:
        return ext
    with lock:
        ext = extensions.get(key)
        if ext is not None:
            return ext
        if key in failures:
            raise PathUnavailable(failures[key])
        reason = compiler_available()
        if reason is not None:
            failures[key] = f"{needs} needs a compiler: {reason}"
            raise PathUnavailable(failures[key])
        try:
            ext = build()
        except PathUnavailable as exc:
            failures[key] = str(exc)
            raise
        except Exception as exc:  # compiler errors, missing headers, unwritable cache, ...
            failures[key] = f"{failed} failed: {exc}"
            raise PathUnavailable(failures[key]) from exc
        extensions[key] = ext
        return ext


def load_extension(model: ModelDefinition, verbose: bool = False,
                   method: str = "exponential_euler"):
    """Compile (first use) or load (cached) the fused extension for ``model`` integrated
    with ``method`` (:mod:`hh_plugin.model.integrators`)."""
    suffix = "" if method == "exponential_euler" else f"_{method}"
    return load_once(
        (model.name, id(model), method), _EXTENSIONS, _FAILURES, _LOCK,
        lambda: cached_build(f"hh_fused_{model.name}{suffix}", generate_cpp(model, method),
                             ["hh_forward", "hh_backward", "hh_step_forward",
                              "hh_step_backward", "hh_release_outputs", "hh_exprel_values"],
                             f"the fused HH kernel for model {model.name!r}", verbose),
        "the fused C++ path", "building the fused C++ kernel")


def release_outputs() -> int:
    """Free the pooled large output buffers of the loaded fused kernels that no tensor
    refers to any more; returns the bytes freed.

    The kernels hand out the storage of a large output (spikes, recorded states, input
    gradient) again once nothing refers to it, instead of asking the operating system for
    fresh pages, which it zeroes at first touch (see docs/performance.md). At most
    ``HH_PLUGIN_OUTPUT_POOL_MB`` MiB (default 1024, read at the first call; 0 turns the
    pool off) stay allocated between calls; this releases them now."""
    with _LOCK:
        extensions = list(_EXTENSIONS.values())
    return sum(int(ext.hh_release_outputs()) for ext in extensions)
