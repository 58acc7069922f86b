"""The Brian2 spike rule through ``threshold`` with Brian2's own ``refractory`` semantics
(issue 22, item 7): the rising edge (below threshold at the start of the step, at or above
at its end, as the torch backend) without holding ``refractory`` for the suprathreshold
excursion, so a user's ``(unless refractory)`` flag means the refractory period only."""

import numpy as np
import pytest

brian2 = pytest.importorskip("brian2")

from brian2 import SpikeMonitor, StateMonitor, defaultclock, ms, mV, run, uA  # noqa: E402

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.brian2 import neuron_group, set_steady_state  # noqa: E402

DT = 0.01


def _run_counter(refractory, steps=5000):
    """A neuron at 10 uA (several spikes) with a counter ``c`` that grows by one per ms
    ``(unless refractory)``; returns the counter's trace, V and the spike steps."""
    defaultclock.dt = DT * ms
    group = neuron_group(1, HHSpec(), current=10 * uA, V_init=-65.0,
                         extra_equations="dc/dt = 1/ms : 1 (unless refractory)",
                         refractory=refractory)
    states = StateMonitor(group, ["c", "V"], record=0, when="end")
    spikes = SpikeMonitor(group)
    run(steps * DT * ms)
    k = np.round(np.asarray(spikes.t / ms) / DT).astype(int)
    return states.c[0], states.V[0] / mV, k


def test_unless_refractory_is_not_held_during_the_spike_without_a_refractory_period(
        numpy_target):
    c, V, k = _run_counter(None)
    assert len(k) >= 3
    assert np.any(V >= 20.0)  # the excursions above threshold happened...
    # ...and c integrated through them: 1 per ms, every step
    np.testing.assert_allclose(c, DT * np.arange(1, len(c) + 1), rtol=1e-9)


def test_unless_refractory_is_held_for_the_refractory_period_only(numpy_target):
    """With ``refractory=1*ms`` (Brian2's rule; longer than the 0.3 ms excursion, so one
    spike per excursion) the counter is held for 1 ms after each spike."""
    period = 1.0
    c, V, k = _run_counter(period * ms)
    held_steps = len(c) - int(round(c[-1] / DT))
    assert len(k) >= 3
    assert abs(held_steps - len(k) * period / DT) <= len(k)


def test_rising_edge_once_per_crossing(numpy_target):
    """The spikes are the upward crossings of V_th by the step's end value, once each."""
    c, V, k = _run_counter(None)
    V_prev = np.concatenate([[-65.0], V[:-1]])
    crossings = np.nonzero((V_prev < 20.0) & (V >= 20.0))[0]
    np.testing.assert_array_equal(k, crossings)


def test_above_threshold_at_a_steps_start_never_spikes(numpy_target):
    """Set above threshold between runs (without set_steady_state): no spike, as the torch
    rule (the step starts above threshold)."""
    defaultclock.dt = DT * ms
    group = neuron_group(2, HHSpec(), current=0 * uA, V_init=-65.0)
    spikes = SpikeMonitor(group)
    run(1 * ms)
    group.V = 30 * mV
    run(0.02 * ms)
    set_steady_state(group, 40 * mV)
    run(0.02 * ms)
    assert spikes.num_spikes == 0
