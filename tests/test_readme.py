"""The README's Python blocks run on their own and print what the README says they print."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"```python\n(.*?)```\n\nprints[^\n]*\n\n```text\n(.*?)```", re.S)
EXAMPLES = BLOCK.findall(README)


def test_every_python_block_says_what_it_prints():
    assert README.count("```python\n") == len(EXAMPLES) >= 3


@pytest.mark.parametrize("code, expected", [
    pytest.param(c, e, marks=[pytest.mark.slow] if "use_device" in c else [],  # C++ build
                 id=f"block{i}") for i, (c, e) in enumerate(EXAMPLES)])
def test_block_runs_alone_and_prints_what_the_readme_says(code, expected, tmp_path):
    pytest.importorskip("brian2" if "brian2" in code else "norse")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout == expected


def _load_example(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_training_figures_quoted_in_the_readme_match_a_fresh_run(tmp_path):
    pytest.importorskip("norse")
    pytest.importorskip("sklearn")
    accuracy, spikes = re.search(r"test accuracy (\S+) \| spikes per HH neuron per sample (\S+)",
                                 README).groups()
    digits = _load_example("train_digits").main(["--no-plots", "--output-dir", str(tmp_path)])
    assert f"{digits['test_accuracy']:.4f}" == accuracy
    assert f"{digits['spikes_per_neuron_per_sample']:.3f}" == spikes
    start, end, target, initial, fitted = re.search(
        r"loss (\S+) -> (\S+) in 400 iterations; spikes target (\d+), initial (\d+), "
        r"fitted (\d+)", README).groups()
    fit = _load_example("fit_spike_train").main(["--no-plots", "--output-dir", str(tmp_path)])
    assert (f"{fit['loss_start']:.4f}", f"{fit['loss_end']:.4f}") == (start, end)
    assert (fit["target_spikes"], fit["initial_spikes"], fit["final_spikes"]) == (
        int(target), int(initial), int(fitted))
