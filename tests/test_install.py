"""install.sh chooses what to install as the README says (dry runs: commands printed only).

- no torch and no NVIDIA GPU: torch's CPU build from PyTorch's CPU wheel index, unless
  ``HH_PLUGIN_TORCH=cuda``; with a GPU the default index; an installed torch is kept;
- norse after everything else, with ``--no-deps`` (so pip's resolver has nothing to report),
  and install.sh's own output explains the ``pip check`` line about torchvision;
- the environments of the slow tests only when asked (``HH_PLUGIN_TEST_ENVS=all``).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@pytest.fixture(scope="module")
def python_without_torch(tmp_path_factory):
    env = tmp_path_factory.mktemp("venv") / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True,
                   timeout=120)
    python = env / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode
    return python


def _gpu_here() -> bool:
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def dry_run(tmp_path, python=None, gpu=False, **settings):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    smi = fake_bin / "nvidia-smi"
    if gpu:
        smi.write_text('#!/bin/sh\necho "GPU 0: NVIDIA H200 (UUID: GPU-0)"\n')
    else:  # a machine whose nvidia-smi finds no GPU
        smi.write_text('#!/bin/sh\necho "No devices were found"\nexit 6\n')
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HH_PLUGIN_")}
    env.update(PATH=f"{fake_bin}{os.pathsep}{env['PATH']}", HH_PLUGIN_DRY_RUN="1",
               PYTHON=str(python or sys.executable), **settings)
    proc = subprocess.run(["bash", str(ROOT / "install.sh")], env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    return proc


def commands(proc):
    return [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")]


def test_no_gpu_installs_the_cpu_build(tmp_path, python_without_torch):
    if _gpu_here():
        pytest.skip("this machine has an NVIDIA GPU")
    proc = dry_run(tmp_path, python_without_torch)
    assert proc.returncode == 0, proc.stderr
    torch_commands = [c for c in commands(proc) if "torch==2.13.0" in c]
    assert torch_commands[0].endswith(f"--no-deps torch==2.13.0 --extra-index-url {CPU_INDEX}")
    assert "no NVIDIA GPU found" in proc.stdout and "HH_PLUGIN_TORCH=cuda" in proc.stdout


def test_gpu_or_request_installs_the_default_build(tmp_path, python_without_torch):
    for settings in ({"gpu": True}, {"HH_PLUGIN_TORCH": "cuda"}):
        proc = dry_run(tmp_path, python_without_torch, **settings)
        assert proc.returncode == 0, proc.stderr
        torch_commands = [c for c in commands(proc) if "torch==2.13.0" in c]
        assert len(torch_commands) == 1 and CPU_INDEX not in torch_commands[0]
    proc = dry_run(tmp_path, python_without_torch, gpu=True, HH_PLUGIN_TORCH="cpu")
    assert any(CPU_INDEX in c for c in commands(proc))


def test_installed_torch_is_kept(tmp_path):
    pytest.importorskip("torch")
    proc = dry_run(tmp_path, gpu=True, HH_PLUGIN_TORCH="cuda")
    assert proc.returncode == 0, proc.stderr
    assert "keeping the installed torch" in proc.stdout
    assert not any("torch==" in c for c in commands(proc))


def test_norse_last_without_dependencies_and_the_pip_check_line_explained(tmp_path):
    proc = dry_run(tmp_path)
    cmds = commands(proc)
    assert cmds[-1].endswith("pip install --no-deps norse==1.1.0")
    assert any(re.search(r"pip install -e \.\[.*test.*docs.*\]", c) for c in cmds[:-1])
    assert "requires torchvision, which is not installed" in proc.stdout
    assert "expected" in proc.stdout


def test_test_environments_only_on_request(tmp_path):
    proc = dry_run(tmp_path)
    assert not any("environments.py" in c for c in commands(proc))
    assert "HH_PLUGIN_TEST_ENVS=all" in proc.stdout and "skipped" in proc.stdout
    proc = dry_run(tmp_path, HH_PLUGIN_TEST_ENVS="all")
    assert any(c.endswith("tests/environments.py install triton cuda brian28")
               for c in commands(proc))


def test_unknown_settings_are_refused(tmp_path):
    for settings in ({"HH_PLUGIN_TORCH": "gpu"}, {"HH_PLUGIN_TEST_ENVS": "some"}):
        proc = dry_run(tmp_path, **settings)
        assert proc.returncode == 2 and "use " in proc.stderr


def test_readme_says_how_to_get_the_cpu_build_before_the_install_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme[readme.index("## Set-up"):]
    commands_at = setup.index("bash install.sh")
    assert CPU_INDEX in setup[:commands_at]
    assert "HH_PLUGIN_TORCH" in setup[:commands_at]
