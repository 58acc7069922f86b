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
    z_torch, V_torch = example.run_torch(celsius, 0.01, duration_ms=30.0)
    z_brian2, V_brian2 = example.run_brian2(celsius, 0.01, duration_ms=30.0)
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
