"""The examples run (quick settings) and do what their docstrings say."""

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_norse_network_example_takes_a_training_step():
    pytest.importorskip("norse")
    before, after = load_example("norse_network").main(["--steps", "120"])
    assert math.isfinite(before) and math.isfinite(after)
    assert after < before


def test_brian2_fi_curve_example(tmp_path):
    pytest.importorskip("brian2")
    out = tmp_path / "fi.png"
    I, gL, rate = load_example("brian2_fi_curve").main(
        ["--target", "numpy", "--duration", "120", "--transient", "20", "--currents", "8",
         "--output", str(out)])
    assert out.stat().st_size > 10_000
    low = gL == 0.03
    assert rate[low & (I < 2.0)].max() == 0.0  # below rheobase: silent
    assert rate[low & (I > 10.0)].min() > 30.0  # well above: tonic firing


@pytest.mark.parametrize("name, keys", [
    ("train_digits", ("test_accuracy", "spikes_per_neuron_per_sample", "history")),
    ("fit_spike_train", ("loss_start", "loss_end", "loss_history", "final_spikes")),
])
def test_training_examples_are_deterministic(name, keys, tmp_path):
    # the README quotes what these examples print: a second run must print the same
    pytest.importorskip("norse")
    if name == "train_digits":
        pytest.importorskip("sklearn")
    runs = [load_example(name).main(["--quick", "--no-plots", "--output-dir", str(tmp_path)])
            for _ in range(2)]
    for key in keys:
        assert runs[0][key] == runs[1][key], key


@pytest.mark.parametrize("name", ["train_digits", "fit_spike_train", "fit_network_brian2",
                                  "fit_conductances"])
def test_quick_runs_never_overwrite_the_full_runs_figures(name):
    # issue 18, 8: --quick wrote over examples/output's figures of the full run
    pytest.importorskip("norse")
    pytest.importorskip("brian2")
    module = load_example(name)
    full, quick = module.parse_args([]), module.parse_args(["--quick"])
    assert full.output_dir == EXAMPLES / "output"
    assert quick.output_dir == EXAMPLES / "output" / "quick"
    assert module.parse_args(["--quick", "--output-dir", "elsewhere"]).output_dir == Path(
        "elsewhere")


def test_fit_conductances_recovers_neuron_hh_parameters(tmp_path):
    # fits gNa, gK, gL, EL and the rate parameters Q10, V_shift to NEURON's hh traces at
    # 16.3 degC; the quick run (seed 0) measured errors of at most 1.2e-4 for L-BFGS
    # (relative; V_shift 2.9e-4 mV) and best losses of 1.2e-7 mV^2 (L-BFGS) against 111
    # (differential evolution) and 70 (Nelder-Mead) at the same simulated time
    pytest.importorskip("neuron")
    pytest.importorskip("scipy")
    pytest.importorskip("brian2")
    summary = load_example("fit_conductances").main(
        ["--quick", "--no-plots", "--output-dir", str(tmp_path)])
    gradient = "L-BFGS (gradient)"
    assert set(summary["relative_errors"][gradient]) == {"gNa", "gK", "gL", "EL", "Q10",
                                                         "V_shift"}
    assert max(summary["relative_errors"][gradient].values()) < 1e-3
    assert summary["celsius"] == 16.3
    budget = summary["budget_simulated_ms"]
    assert all(used <= budget for used in summary["simulated_ms_used"].values())
    for other in ("Nelder-Mead", "differential evolution"):
        assert summary["simulated_ms_used"][other] == budget
        assert summary["best_loss"][gradient] < 1e-3 * summary["best_loss"][other]
    assert summary["identical_spike_steps"] and summary["brian2_spikes"] > 0
    assert (tmp_path / "fit_conductances.json").exists()


def test_fit_conductances_rk4_traces_match_neuron_and_exponential_euler_ones_do_not():
    # the example fits with RK4 at 0.025 ms; on the quick protocol at the true parameters
    # (16.3 degC) the largest difference from NEURON's traces measured 0.0100 mV with RK4
    # and 86 mV (a shifted spike) with the default exponential Euler at the same step (run
    # as the step loop: no second kernel build for this model)
    pytest.importorskip("neuron")
    import torch

    from hh_plugin import HHSpec
    from hh_plugin.torch import HH

    example = load_example("fit_conductances")
    args = example.parse_args(["--quick"])
    current = torch.tensor(example.step_current(args))
    target = torch.tensor(example.record_neuron(args))
    differences = {}
    for spec in (example.spec_from(example.TRUE, args.celsius),
                 HHSpec(model=example.FIT_MODEL, celsius=args.celsius, **example.TRUE)):
        with torch.no_grad():
            _, states = HH(spec, dt=args.dt_ms * 1e-3, V_init=args.v_init,
                           record_states=("V",),
                           path="auto" if spec.method == "rk4" else "naive")(current)
        differences[spec.method] = (states.V - target).abs().max().item()
    assert differences["rk4"] < 0.02
    assert differences["exponential_euler"] > 10.0


def test_wang_buzsaki_gamma_example_agrees_between_backends(tmp_path):
    pytest.importorskip("brian2")
    out = tmp_path / "gamma.png"
    result = load_example("wang_buzsaki_gamma").main(
        ["--neurons", "10", "--duration", "40", "--transient", "10", "--output", str(out)])
    assert result["identical_spikes"] and result["spikes_torch"] > 10
    assert result["max_dV_mV"] <= 1e-6
    assert 0.0 < result["synchrony_chi"] <= 1.0 and result["frequency_Hz"] > 0
    assert out.stat().st_size > 10_000
