"""A user's own model (examples/custom_model.py: classic HH with a Q10 temperature factor)
runs on both backends identically and matches NEURON's built-in ``hh`` mechanism."""

import numpy as np
import pytest

from test_examples import load_example

pytest.importorskip("brian2")


@pytest.fixture(scope="module")
def example():
    return load_example("custom_model")


@pytest.mark.parametrize("celsius", [6.3, 16.3])
def test_user_model_identical_on_both_backends(example, celsius):
    from brian2.utils.logger import catch_logs

    z_torch, V_torch = example.run_torch(celsius, 0.01, duration_ms=30.0)
    with catch_logs() as logs:  # issue 18: Brian2 warned that 'celsius' is shadowed
        z_brian2, V_brian2 = example.run_brian2(celsius, 0.01, duration_ms=30.0)
    # (other messages may come from objects of earlier tests that the garbage collector
    # deletes meanwhile, such as "The object 'E' is getting deleted")
    assert not [message for _, _, message in logs if "celsius" in message]
    assert z_torch.sum() >= 2
    np.testing.assert_array_equal(z_torch, z_brian2)
    assert np.abs(V_torch - V_brian2).max() <= 1e-6


def test_temperature_factor_speeds_up_the_rates(example):
    cold, _ = example.run_torch(6.3, 0.01)
    warm, _ = example.run_torch(16.3, 0.01)
    assert warm.sum() >= 1.8 * cold.sum()  # Q10 = 3: about twice the rate here


@pytest.mark.parametrize("celsius", [6.3, 16.3])
def test_user_model_matches_neuron_hh_spike_times(example, celsius):
    pytest.importorskip("neuron")
    # Both integrators are first order in dt; at dt = 1 us each is within about 0.02 ms of
    # the converged spike times over 50 ms (0.2-0.6 ms apart at dt = 10 us).
    dt = 0.001
    z, _ = example.run_torch(celsius, dt)
    ours = example.spike_times(z, dt)
    theirs = example.neuron_spike_times(celsius, dt)
    assert len(ours) == len(theirs) >= 4
    assert np.abs(ours - theirs).max() <= 0.05


def test_file_of_a_user_model_loads_where_the_model_was_never_imported(example, tmp_path):
    import subprocess
    import sys

    from hh_plugin import HHSpec
    from hh_plugin.export import save

    path = tmp_path / "user_model.h5"
    spec = HHSpec(model=example.CLASSIC_HH, celsius=12.0)
    save(path, spec, {"V": np.array([-65.0]), "m": np.array([0.05]), "h": np.array([0.6]),
                      "n": np.array([0.3])}, time=0.0, dt=0.01)
    code = ("import sys; from hh_plugin.export import load; r = load(sys.argv[1]); "
            "print(r.spec.model.name, r.spec.celsius, r.spec.model.gate('m').rate_factor)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["classic_hh_q10", "12.0", "Q10**((celsius", "-",
                                  "T_ref)/10)"]
