"""Sub-step spike times (hh_plugin.model.spike_times): the linear interpolation of the
threshold crossing, reported alike by torch and Brian2."""

import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.model import HODGKIN_HUXLEY, WANG_BUZSAKI
from hh_plugin.model.spike_times import INTERPOLATION, crossing_times
from hh_plugin.torch import HH, initial_state, spike_times

b2 = pytest.importorskip("brian2")
from hh_plugin.brian2 import neuron_group, spike_time_monitor  # noqa: E402
from hh_plugin.brian2 import spike_times as brian2_spike_times  # noqa: E402


def test_crossing_times_interpolate_linearly_inside_the_step():
    assert INTERPOLATION == "linear"
    # V rises linearly from 10 to 30 mV over step 4 of 0.1 ms: crosses 20 mV halfway
    t = crossing_times([4], [10.0], [30.0], 20.0, dt=0.1)
    np.testing.assert_allclose(t, [0.45], rtol=0, atol=1e-15)
    # exact for a straight line, at any threshold; clipped inside the step
    np.testing.assert_allclose(crossing_times([0, 1, 2], [0.0, 0.0, 25.0], [40.0] * 3,
                                              [10.0, 30.0, 20.0], dt=1.0, t0=5.0),
                               [5.25, 6.75, 7.0], rtol=0, atol=1e-15)


def _torch(spec, drives, dt, T, V0=-65.0):
    module = HH(p=spec, dt=dt * 1e-3, record_states=("V",))
    s0 = initial_state(module.p, (len(drives),), V=V0, dtype=torch.float64)
    current = torch.tensor(drives, dtype=torch.float64).expand(int(round(T / dt)), -1)
    with torch.no_grad():
        z, rec = module(current.contiguous(), s0)
    return z, rec.V, s0.V


def _brian2(spec, drives, dt, T):
    b2.start_scope()
    group = neuron_group(len(drives), spec, current=np.array(drives), V_init=-65.0,
                         dt=dt * b2.ms, spike_times=True)
    monitor = spike_time_monitor(group)
    b2.run(int(round(T / dt)) * dt * b2.ms)
    return brian2_spike_times(monitor)


@pytest.mark.parametrize("model,drives", [(HODGKIN_HUXLEY, [10.0, 20.0]),
                                          (WANG_BUZSAKI, [1.0, 3.0])],
                         ids=["hodgkin_huxley", "wang_buzsaki"])
@pytest.mark.parametrize("method", ["exponential_euler", "rk4"])
def test_torch_and_brian2_report_the_same_spike_times(numpy_target, model, drives, method):
    spec, dt, T = HHSpec(model=model, method=method), 0.025, 25.0
    z, V, V0 = _torch(spec, drives, dt, T)
    index, times = spike_times(z, V, V0, spec, dt * 1e-3)
    i, step, times_b = _brian2(spec, drives, dt, T)
    order = np.lexsort((i, step))  # torch reports by step, then neuron
    assert len(times) >= 4
    np.testing.assert_array_equal(index[:, 0], step[order])
    np.testing.assert_array_equal(index[:, 1], i[order])
    np.testing.assert_allclose(times, times_b[order], rtol=0, atol=1e-9)
    # each time lies inside its step
    assert np.all(times >= index[:, 0] * dt) and np.all(times <= (index[:, 0] + 1) * dt)


def test_soft_reset_is_undone_for_the_crossing_and_hard_reset_refused():
    dt, T = 0.025, 20.0
    plain = HHSpec(method="rk4")
    z, V, V0 = _torch(plain, [10.0], dt, T)
    index, times = spike_times(z, V, V0, plain, dt * 1e-3)
    soft = plain.replace(V_reset=-10.0)  # the recorded V of a spiking step is 30 mV lower
    z_s, V_s, V0_s = _torch(soft, [10.0], dt, 3.0)
    index_s, times_s = spike_times(z_s, V_s, V0_s, soft, dt * 1e-3)
    assert times_s[0] == pytest.approx(times[0], abs=1e-12)  # the same first crossing
    steps = index_s[:, 0]
    assert len(times_s) > 1 and np.all((times_s >= steps * dt) & (times_s <= (steps + 1) * dt))
    hard = plain.replace(V_reset=-10.0, spk_reset="hard")
    z_h, V_h, V0_h = _torch(hard, [10.0], dt, 3.0)
    with pytest.raises(ValueError, match="hard reset"):
        spike_times(z_h, V_h, V0_h, hard, dt * 1e-3)


def test_spike_time_monitor_needs_a_group_that_keeps_the_step_start(numpy_target):
    with pytest.raises(TypeError, match="spike_times=True"):
        spike_time_monitor(neuron_group(1, HHSpec()))


@pytest.mark.slow
def test_cpp_standalone_reports_the_same_rk4_spike_times(tmp_path):
    from hh_plugin.brian2 import use_device

    spec, dt, T, drives = HHSpec(model=WANG_BUZSAKI, method="rk4"), 0.025, 20.0, [1.0, 3.0]
    z, V, V0 = _torch(spec, drives, dt, T)
    index, times = spike_times(z, V, V0, spec, dt * 1e-3)
    b2.start_scope()
    with use_device("cpp_standalone", directory=str(tmp_path / "rk4"), threads=1):
        group = neuron_group(len(drives), spec, current=np.array(drives), V_init=-65.0,
                             dt=dt * b2.ms, spike_times=True)
        monitor = spike_time_monitor(group)
        b2.run(int(round(T / dt)) * dt * b2.ms)
    i, step, times_b = brian2_spike_times(monitor)
    order = np.lexsort((i, step))
    assert len(times) >= 3
    np.testing.assert_array_equal(index[:, 0], step[order])
    np.testing.assert_allclose(times, times_b[order], rtol=0, atol=1e-9)
    b2.start_scope()
