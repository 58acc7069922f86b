"""A network with RK4 populations: the torch module and the Brian2 network (numpy
target) honour each population's method and agree (float64: identical spike steps,
max |dV| <= 1e-9 mV), synaptic conductances held over the step on both."""

import numpy as np
import pytest
import torch

brian2 = pytest.importorskip("brian2")

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.brian2.network import build_network  # noqa: E402
from hh_plugin.model import WANG_BUZSAKI  # noqa: E402
from hh_plugin.network import (CurrentInput, FixedProbability, NetworkSpec,  # noqa: E402
                               Population, Projection, exponential_conductance)
from hh_plugin.torch.network import NetworkModule  # noqa: E402

STEPS = 800  # 20 ms at dt = 0.025 ms


def rk4_network(method="rk4") -> NetworkSpec:
    rng = np.random.default_rng(0)
    exc = exponential_conductance("e", tau=2.0, E_rev=0.0)
    inh = exponential_conductance("i", tau=5.0, E_rev=-80.0)
    pops = [Population("HH", 40, HHSpec(method=method), seed=1),
            Population("WB", 20, HHSpec(model=WANG_BUZSAKI, method=method), seed=2)]
    projections = [Projection("HH", "HH", FixedProbability(0.2, 0.05, seed=4), exc, delay=2),
                   Projection("HH", "WB", FixedProbability(0.2, 0.02, seed=6), exc, delay=0),
                   Projection("WB", "HH", FixedProbability(0.3, 0.05, seed=7), inh, delay=1)]
    # a time-varying current (changed every 1 ms) into HH, held over each step
    blocks = rng.uniform(5.0, 15.0, (STEPS // 40, 40))
    inputs = [CurrentInput("HH", np.repeat(blocks, 40, axis=0)), CurrentInput("WB", 1.0)]
    return NetworkSpec(pops, projections, inputs, dt=0.025)


def _run_both(spec, steps=STEPS):
    with torch.no_grad():
        out = NetworkModule(spec, dtype=torch.float64)(steps=steps, record=("V",))
    old = brian2.prefs.codegen.target
    brian2.prefs.codegen.target = "numpy"
    try:
        brian2.start_scope()
        net = build_network(spec, steps, record=("V",))
        net.run()
    finally:
        brian2.prefs.codegen.target = old
    return out, net


def test_rk4_network_agrees_between_backends():
    spec = rk4_network()
    out, net = _run_both(spec)
    for pop in spec.populations:
        ours = out.spikes[pop].numpy()
        assert ours.sum() >= 20
        np.testing.assert_array_equal(ours, net.spike_raster(pop, STEPS))
        assert np.abs(out.traces[pop]["V"].numpy() - net.trace(pop, "V")).max() <= 1e-9
    brian2.start_scope()


def test_the_network_integrates_with_the_populations_method():
    # the same network with exponential Euler gives other trajectories on both backends
    rk4_out, rk4_net = _run_both(rk4_network())
    euler_out, euler_net = _run_both(rk4_network("exponential_euler"))
    V_rk4, V_euler = rk4_out.traces["WB"]["V"].numpy(), euler_out.traces["WB"]["V"].numpy()
    assert np.abs(V_rk4 - V_euler).max() > 1.0
    assert np.abs(rk4_net.trace("WB", "V") - euler_net.trace("WB", "V")).max() > 1.0
    with pytest.raises(ValueError, match="max_dt.*rk4"):
        NetworkSpec([Population("HH", 2, HHSpec(method="rk4"))], dt=0.08)
    brian2.start_scope()


@pytest.mark.slow
def test_cobahh_with_rk4_gives_identical_spikes_on_both_backends():
    # Brian2's COBAHH (Traub-Miles, conductance synapses, 3 ms refractory period) with
    # RK4 at dt = 0.04 ms (its RK4 limit), 100 ms, a tenth of the example's size
    from hh_plugin.model import TRAUB_MILES
    from hh_plugin.network.cobahh import cobahh_network

    spec = cobahh_network(n_exc=320, n_inh=80, p=0.2, seed=3, dt=0.04,
                          spec=HHSpec(model=TRAUB_MILES, method="rk4"))
    steps = 2500
    out, net = _run_both(spec, steps)
    ours = out.spikes["P"].numpy()
    assert ours.sum() > 1000  # an active network
    np.testing.assert_array_equal(ours, net.spike_raster("P", steps))
    brian2.start_scope()
