"""Environments of a few slow tests, installed by ``install.sh``, never by the tests.

- **triton**: Triton 3.9.0 in a folder of its own (``pip install --no-deps --target``,
  about 1 GB on disk), for the test that runs the Triton kernel in Triton's CPU
  interpreter (``tests/test_fused.py``). A folder of its own, not the main environment,
  so that it cannot replace or reconfigure torch.
- **cuda**: a virtual environment with Brian2CUDA 1.0a7, which pins Brian2 2.8.0 (about
  340 MB), for the Brian2CUDA tests (``tests/test_standalone.py``); only where ``nvcc``
  is installed (the tests cannot compile CUDA code without it).
- **brian28**: a virtual environment with Brian2 2.8.0 and pytest (about 250 MB), where
  ``tests/test_brian2_user.py`` runs the Brian2 test files against the oldest Brian2 the
  plugin supports (this environment has 2.9; Brian2 2.10 needs Python >= 3.12).

Both live in hh_plugin's cache folder (``$HH_PLUGIN_CACHE_DIR``, else
``$XDG_CACHE_HOME/hh_plugin`` or ``~/.cache/hh_plugin``; the CUDA environment at
``$HH_PLUGIN_CUDA_ENV`` if set). A test whose environment is missing is skipped and says
how to install it::

    HH_PLUGIN_TEST_ENVS=all bash install.sh        # or:
    python3 tests/environments.py install triton cuda brian28
    python3 tests/environments.py status
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

TRITON_REQUIREMENT = "triton==3.9.0"
CUDA_ENV_REQUIREMENTS = ["brian2cuda==1.0a7", "brian2==2.8.0", "numpy<2.4", "sympy", "h5py"]
INSTALL_HINT = "HH_PLUGIN_TEST_ENVS=all bash install.sh (or python3 tests/environments.py install {})"


def cache_dir() -> Path:
    """hh_plugin's cache folder (:func:`hh_plugin.build_lock.cache_dir`)."""
    from hh_plugin.build_lock import cache_dir as plugin_cache_dir

    return plugin_cache_dir()


# ---------------------------------------------------------------------------- triton
def triton_site() -> Path:
    return cache_dir() / f"triton-site-{TRITON_REQUIREMENT.replace('==', '-')}"


def triton_ready() -> bool:
    return (triton_site() / "triton").is_dir()


def install_triton() -> Path:
    site = triton_site()
    if triton_ready():
        print(f"triton: {site} is ready")
        return site
    print(f"triton: installing {TRITON_REQUIREMENT} (about 1 GB on disk) into {site}",
          flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "--target", str(site), TRITON_REQUIREMENT],
                   check=True, timeout=1800)
    return site


# ------------------------------------------------------------------------------ cuda
def cuda_env_path() -> Path:
    override = os.environ.get("HH_PLUGIN_CUDA_ENV")
    if override:
        return Path(override)
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return cache_dir() / f"cuda-env-{tag}-brian2cuda-1.0a7"


def cuda_requirements() -> Tuple[Optional[List[str]], str]:
    """``(requirements, '')``, or ``(None, why not)`` where CUDA code cannot be compiled."""
    from hh_plugin.brian2 import device

    nvcc = device.find_nvcc()
    if nvcc is None:
        return None, f"nvcc is not installed: CUDA code cannot be compiled here " \
                     f"({device.NVCC_INSTALL_HINT})"
    requirements = list(CUDA_ENV_REQUIREMENTS)
    if device.find_curand(nvcc) is None:
        wheel = device.curand_wheel(device.nvcc_version(nvcc))
        if wheel is None:
            return None, f"the CUDA toolkit of {nvcc} has no cuRAND and no wheel is known"
        requirements.append(wheel)
    return requirements, ""


def _marker(env: Path) -> Path:
    return env / ".hh_plugin_requirements.json"


def cuda_env_python(requirements: List[str]) -> Optional[Path]:
    """The environment's Python if it exists with exactly ``requirements``, else ``None``."""
    env = cuda_env_path()
    python, marker = env / "bin" / "python", _marker(env)
    if python.exists() and marker.exists() and marker.read_text() == json.dumps(
            sorted(requirements)):
        return python
    return None


def install_cuda_env() -> Optional[Path]:
    requirements, why_not = cuda_requirements()
    if requirements is None:
        print(f"cuda: skipped, {why_not}")
        return None
    python = cuda_env_python(requirements)
    env = cuda_env_path()
    if python is not None:
        print(f"cuda: {env} is ready")
        return python
    print(f"cuda: creating a virtual environment with {' '.join(requirements)} "
          f"(about 340 MB) in {env}", flush=True)
    if env.exists():
        shutil.rmtree(env)
    env.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    try:
        subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", *requirements], check=True, timeout=1800)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        shutil.rmtree(env, ignore_errors=True)
        raise
    _marker(env).write_text(json.dumps(sorted(requirements)))
    return env / "bin" / "python"


# --------------------------------------------------------------------------- brian28
BRIAN28_ENV_REQUIREMENTS = ["brian2==2.8.0", "numpy<2.4", "cython", "sympy", "h5py", "pytest"]


def brian28_env_path() -> Path:
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return cache_dir() / f"brian2-2.8.0-env-{tag}"


def brian28_env_python() -> Optional[Path]:
    """The Brian2 2.8 environment's Python if it is installed, else ``None``."""
    env = brian28_env_path()
    python, marker = env / "bin" / "python", _marker(env)
    if python.exists() and marker.exists() and marker.read_text() == json.dumps(
            sorted(BRIAN28_ENV_REQUIREMENTS)):
        return python
    return None


def install_brian28_env() -> Path:
    env, python = brian28_env_path(), brian28_env_python()
    if python is not None:
        print(f"brian28: {env} is ready")
        return python
    print(f"brian28: creating a virtual environment with {' '.join(BRIAN28_ENV_REQUIREMENTS)}"
          f" (about 250 MB) in {env}", flush=True)
    if env.exists():
        shutil.rmtree(env)
    env.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    try:
        subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", *BRIAN28_ENV_REQUIREMENTS],
                       check=True, timeout=1800)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        shutil.rmtree(env, ignore_errors=True)
        raise
    _marker(env).write_text(json.dumps(sorted(BRIAN28_ENV_REQUIREMENTS)))
    return env / "bin" / "python"


# ------------------------------------------------------------------------------- main
INSTALLERS = {"triton": install_triton, "cuda": install_cuda_env,
              "brian28": install_brian28_env}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["status"]:
        requirements, why_not = cuda_requirements()
        print(f"triton: {'ready' if triton_ready() else 'missing'} ({triton_site()})")
        print(f"cuda: {why_not or ('ready' if cuda_env_python(requirements) else 'missing')}"
              f" ({cuda_env_path()})")
        print(f"brian28: {'ready' if brian28_env_python() else 'missing'} "
              f"({brian28_env_path()})")
        return 0
    if argv[:1] == ["install"] and set(argv[1:]) <= set(INSTALLERS):
        for name in argv[1:] or list(INSTALLERS):
            INSTALLERS[name]()
        return 0
    print(f"usage: python3 tests/environments.py status | install [{'|'.join(INSTALLERS)}]...",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's hh_plugin
    sys.exit(main())
