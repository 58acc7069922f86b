"""The issue's agreement case: a 1,000-neuron random network with two models (reference HH
and Wang-Buzsaki), all three synapse models, per-synapse and zero delays, a time-varying
current, a constant current and a Poisson input; float64, dt = 0.01 ms, 100 ms. The torch
module and the Brian2 network (C++ standalone) give identical spike steps and
max |dV| <= 1e-6 mV."""

import numpy as np
import pytest
import torch

brian2 = pytest.importorskip("brian2")

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.brian2 import use_device  # noqa: E402
from hh_plugin.brian2.network import build_network  # noqa: E402
from hh_plugin.model import WANG_BUZSAKI  # noqa: E402
from hh_plugin.network import (CurrentInput, FixedProbability, NetworkSpec,  # noqa: E402
                               PoissonInput, Population, Projection, RandomDelay, Uniform,
                               current_pulse, exponential_conductance, exponential_current)
from hh_plugin.torch.network import NetworkModule  # noqa: E402

STEPS = 10_000  # 100 ms at dt = 0.01 ms


def agreement_network(seed: int = 0) -> NetworkSpec:
    rng = np.random.default_rng(seed)
    exc = exponential_conductance("e", tau=2.0, E_rev=0.0)
    inh = exponential_conductance("i", tau=5.0, E_rev=-80.0)
    pops = [Population("HH", 800, HHSpec(gL=rng.uniform(0.02, 0.06, 800),
                                         ENa=rng.uniform(48.0, 52.0, 800)), seed=1),
            Population("WB", 200, HHSpec(model=WANG_BUZSAKI), seed=2)]
    projections = [
        Projection("HH", "HH", FixedProbability(0.02, Uniform(0.0, 0.02, 3), seed=4), exc,
                   delay=RandomDelay(1, 10, 5)),
        Projection("HH", "WB", FixedProbability(0.05, 0.01, seed=6), exc, delay=0),
        Projection("WB", "HH", FixedProbability(0.05, 0.02, seed=7), inh, delay=2),
        Projection("WB", "WB", FixedProbability(0.1, -20.0, seed=8), current_pulse("p"), delay=1),
        Projection("noise", "HH", FixedProbability(0.05, 1.0, seed=9),
                   exponential_current("x", 3.0), delay=1),
        Projection("noise", "WB", FixedProbability(0.05, 200.0, seed=10), current_pulse("p"),
                   delay=0)]
    blocks = rng.uniform(0.0, 8.0, (STEPS // 100, 800))  # changes every 1 ms
    inputs = [CurrentInput("HH", np.repeat(blocks, 100, axis=0)), CurrentInput("WB", 0.5),
              PoissonInput("noise", 200, 50.0, seed=11)]
    return NetworkSpec(pops, projections, inputs, dt=0.01)


@pytest.mark.slow
def test_thousand_neuron_network_agrees_between_backends(tmp_path):
    spec = agreement_network()
    assert sum(p.size for p in spec.populations.values()) == 1000
    assert {p.synapse.model.name for p in spec.projections} == {
        "current_pulse", "exponential_current", "exponential_conductance"}

    with torch.no_grad():
        out = NetworkModule(spec, dtype=torch.float64)(steps=STEPS, record=("V",))

    brian2.start_scope()
    with use_device("cpp_standalone", directory=str(tmp_path / "agreement"),
                    build_on_run=False) as session:
        net = build_network(spec, STEPS, record=("V",))
        net.run()
        session.build(with_output=False)

    report = []
    for pop in spec.populations:
        ours = out.spikes[pop].numpy()
        theirs = net.spike_raster(pop, STEPS)
        dV = np.abs(out.traces[pop]["V"].numpy() - net.trace(pop, "V")).max()
        report.append(f"{pop}: {int(ours.sum())} spikes, max |dV| = {dV:.2e} mV")
        assert ours.sum() > 1000  # every population is active
        np.testing.assert_array_equal(ours, theirs)
        assert dV <= 1e-6, report
    print("; ".join(report))
    brian2.start_scope()
