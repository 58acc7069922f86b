"""A second virtual environment with Brian2 2.8 (test helper, used by slow tests).

Brian2CUDA pins its Brian2 (brian2cuda 1.0a7: brian2==2.8.0, Python 3.11; brian2cuda
1.0b1: brian2==2.10.1, Python >= 3.12), and the plugin supports Brian2 2.8 to 2.10. One
environment serves both checks: the Brian2 test files run there against Brian2 2.8, and
Brian2CUDA generates and compiles the plugin's group there. It is created once in
``~/.cache/hh_plugin`` (``HH_PLUGIN_CUDA_ENV`` overrides the path) and reused while its
requirements stay the same; hh_plugin comes from this checkout (``PYTHONPATH``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ["brian2cuda==1.0a7", "brian2==2.8.0", "numpy<2.4", "cython", "sympy",
                "h5py", "pytest"]


def environment_path() -> Path:
    override = os.environ.get("HH_PLUGIN_CUDA_ENV")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return cache / "hh_plugin" / f"cuda-env-{tag}-brian2cuda-1.0a7"


def _requirements():
    """The base requirements, plus the cuRAND wheel where nvcc exists without cuRAND."""
    from hh_plugin.brian2 import device

    requirements = list(REQUIREMENTS)
    nvcc = device.find_nvcc()
    if nvcc is not None and device.find_curand(nvcc) is None:
        wheel = device.curand_wheel(device.nvcc_version(nvcc))
        if wheel is not None:
            requirements.append(wheel)
    return requirements


def _create(requirements) -> Path:
    env = environment_path()
    python = env / "bin" / "python"
    marker = env / ".hh_plugin_requirements.json"
    wanted = json.dumps(sorted(requirements))
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if env.exists():
        shutil.rmtree(env)
    env.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", *requirements],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        shutil.rmtree(env, ignore_errors=True)
        pytest.fail(f"cannot build the Brian2 2.8 environment: pip install {requirements} "
                    f"failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    marker.write_text(wanted)
    return python


def brian2_28_environment():
    """``(python, environ)`` of the Brian2 2.8 environment, hh_plugin on its path."""
    python = _create(_requirements())
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    environ["PYTHONPATH"] = str(ROOT)
    return python, environ
