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


#: How far a fresh run on another CPU may land from the README's figures (stated in the
#: README): float32 training rounds differently with another instruction set, and the
#: difference grows over the epochs (an Intel Xeon ended at accuracy 0.9556 and final loss
#: 0.5525 where an AMD Zen 5 ended at 0.9644 and 0.5892).
ACCURACY_TOLERANCE = 0.02          # absolute
SPIKES_PER_NEURON_TOLERANCE = 0.10  # relative
LOSS_START_TOLERANCE = 0.01        # relative: before any training step
LOSS_END_TOLERANCE = 0.15          # relative
SPIKE_COUNT_TOLERANCE = 2          # spikes


def test_readme_states_the_tolerance_that_the_training_figures_are_checked_with():
    text = " ".join(README.split())
    assert (f"accuracy within {ACCURACY_TOLERANCE:g}, spikes per neuron within "
            f"{SPIKES_PER_NEURON_TOLERANCE:.0%}, the first loss within "
            f"{LOSS_START_TOLERANCE:.0%}, the final loss within {LOSS_END_TOLERANCE:.0%} and "
            f"spike counts within {SPIKE_COUNT_TOLERANCE}") in text


@pytest.mark.slow
def test_training_figures_quoted_in_the_readme_match_a_fresh_run(tmp_path):
    # issue 18, 1: compared printed digits, so it failed on every CPU but the one that
    # wrote the README
    pytest.importorskip("norse")
    pytest.importorskip("sklearn")
    accuracy, spikes = map(float, re.search(
        r"test accuracy (\S+) \| spikes per HH neuron per sample (\S+)", README).groups())
    digits = _load_example("train_digits").main(["--no-plots", "--output-dir", str(tmp_path)])
    assert abs(digits["test_accuracy"] - accuracy) <= ACCURACY_TOLERANCE
    assert digits["spikes_per_neuron_per_sample"] == pytest.approx(
        spikes, rel=SPIKES_PER_NEURON_TOLERANCE)
    start, end, target, initial, fitted = re.search(
        r"loss (\S+) -> (\S+) in 400 iterations; spikes target (\d+), initial (\d+), "
        r"fitted (\d+)", README).groups()
    fit = _load_example("fit_spike_train").main(["--no-plots", "--output-dir", str(tmp_path)])
    assert fit["loss_start"] == pytest.approx(float(start), rel=LOSS_START_TOLERANCE)
    assert fit["loss_end"] == pytest.approx(float(end), rel=LOSS_END_TOLERANCE)
    for got, quoted in ((fit["target_spikes"], target), (fit["initial_spikes"], initial),
                        (fit["final_spikes"], fitted)):
        assert abs(got - int(quoted)) <= SPIKE_COUNT_TOLERANCE
