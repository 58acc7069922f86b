"""NEURON backend, networks: a feed-forward network with Poisson input, all three synapse
models, delays and constant and time-varying currents agrees with the torch module
(RK4, dt = 0.01 ms): the same spike count per neuron and spike times within 0.05 ms.

What agreement means here: NEURON integrates the continuous equations (CVODE, atol
1e-8); the torch module steps them on the plugin's schedule (conductances held over a
step, a neuron's spike acting from the start of step k + d rather than d steps after the
crossing). Both differences are O(dt), so the spike times differ by a few hundredths of
a millisecond at dt = 0.01 ms, and neither backend is the exact one."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from hh_plugin import HHSpec
from hh_plugin.model.spike_times import crossing_times
from hh_plugin.network import (CurrentInput, FixedProbability, NetworkSpec, PoissonSource,
                               Population, Projection, Synapse, SynapseModel,
                               SynapseParameter, current_pulse, exponential_conductance,
                               exponential_current)
from hh_plugin.network.leaky_integrator import LISpec
from hh_plugin.neuron import Integration

import neuron_support

mechanisms = neuron_support.mechanisms  # the session fixture

STEPS = 3000  # 30 ms at dt = 0.01 ms
TOLERANCE_MS = 0.05


def feed_forward(steps=STEPS, dt=0.01, method="rk4", delay_ab=30) -> NetworkSpec:
    """Poisson trains -> A (conductance synapses, delay 2 steps) -> B (exponential current
    synapses, delay 30 steps, and current pulses, delay 50 steps); A has a constant
    current, B one that changes every 5 ms."""
    rng = np.random.default_rng(5)
    exc = exponential_conductance("e", tau=3.0, E_rev=0.0)
    pops = [Population("A", 6, HHSpec(method=method), seed=1),
            Population("B", 4, HHSpec(method=method), seed=2)]
    projections = [
        Projection("drive", "A", FixedProbability(0.5, 0.08, seed=3), exc, delay=2),
        Projection("A", "B", FixedProbability(0.6, 4.0, seed=4),
                   exponential_current("c", tau=2.0), delay=delay_ab),
        Projection("A", "B", FixedProbability(0.5, 150.0, seed=6), current_pulse("p"),
                   delay=50)]
    blocks = rng.uniform(0.0, 4.0, (steps // 500 + 1, 4))
    inputs = [PoissonSource("drive", 10, 200.0, seed=7), CurrentInput("A", 2.0),
              CurrentInput("B", np.repeat(blocks, 500, axis=0)[:steps])]
    return NetworkSpec(pops, projections, inputs, dt=dt)


def torch_spike_times(spec, steps):
    """``{pop: (times, indices)}`` of the torch module (float64), each spike's time
    interpolated inside its step (:func:`hh_plugin.model.spike_times.crossing_times`)."""
    import torch

    from hh_plugin.torch.network import NetworkModule

    with torch.no_grad():
        out = NetworkModule(spec, dtype=torch.float64)(steps=steps, record=("V",))
    result = {}
    for name, pop in spec.populations.items():
        z, V = out.spikes[name].numpy(), out.traces[name]["V"].numpy()
        before = np.vstack([spec.initial_state(name)["V"][None], V[:-1]])
        k, i = np.nonzero(z)
        t = crossing_times(k, before[k, i], V[k, i],
                           pop.spec.parameters[pop.model.threshold], spec.dt)
        order = np.lexsort((i, t))
        result[name] = (t[order], i[order])
    return result


def compare(a, b, size):
    """Largest spike-time difference (ms) per neuron-matched train; counts must agree."""
    worst = 0.0
    for i in range(size):
        ta, tb = a[0][a[1] == i], b[0][b[1] == i]
        assert len(ta) == len(tb), f"neuron {i}: {len(ta)} vs {len(tb)} spikes"
        if len(ta):
            worst = max(worst, float(np.abs(ta - tb).max()))
    return worst


@pytest.fixture(scope="module")
def network_runs(mechanisms):
    from hh_plugin.neuron import run_network

    spec = feed_forward()
    return spec, run_network(spec, STEPS, integration=Integration.cvode(atol=1e-8)), \
        torch_spike_times(spec, STEPS)


def test_feed_forward_network_agrees_with_torch(network_runs):
    spec, neuron_run, torch_run = network_runs
    for name, pop in spec.populations.items():
        counts = np.bincount(neuron_run.spikes[name][1], minlength=pop.size)
        assert counts.min() >= 1, "every neuron must fire"
        assert compare(neuron_run.spikes[name], torch_run[name], pop.size) < TOLERANCE_MS


def test_results_for_the_network_file(network_runs, tmp_path):
    from hh_plugin.export import load_network, save_network

    spec, neuron_run, _ = network_runs
    results = neuron_run.results(spec)
    for name, pop in spec.populations.items():
        raster = results["spikes"][name]
        assert raster.shape == (STEPS, pop.size)
        times, index = neuron_run.spikes[name]
        # each spike in its step k: t in (k dt, (k + 1) dt]
        assert raster.sum() == len(times)
        k = np.ceil(times / spec.dt - 1e-6).astype(int) - 1
        assert np.all(raster[k, index])
        assert np.all((k * spec.dt < times + 1e-12) & (times <= (k + 1) * spec.dt + 1e-12))
        # the spike times stored with the raster (format 1.2), in its order
        np.testing.assert_array_equal(np.sort(results["spike_times"][name]), np.sort(times))
    path = tmp_path / "run.h5"
    save_network(path, spec, results, backend="neuron",
                 provenance={"integration": neuron_run.integration})
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).resolve().parent.parent / "export" / "schema" /
                         "hh_plugin_network-1.2.schema.json").read_text())
    with h5py.File(path, "r") as f:
        jsonschema.validate(json.loads(f.attrs["metadata"]), schema)
    record = load_network(path)
    assert record.backend == "neuron" and record.steps == STEPS and record.version == "1.2"
    for name in spec.populations:
        k, i = record.spikes[name]
        t = record.spike_times[name]
        assert np.all((k * spec.dt <= t) & (t <= (k + 1) * spec.dt))


def test_threads_give_identical_spikes(mechanisms):
    from hh_plugin.neuron import run_network

    spec = feed_forward(steps=1500)
    fixed = Integration.fixed(order=2)
    one = run_network(spec, 1500, integration=fixed)
    two = run_network(spec, 1500, integration=fixed, threads=2)
    for name in spec.populations:
        assert len(one.spikes[name][0]) > 0
        np.testing.assert_array_equal(one.spikes[name][0], two.spikes[name][0])
        np.testing.assert_array_equal(one.spikes[name][1], two.spikes[name][1])
        # the fixed step reports the end of the crossing's step: the raster puts the
        # spike in the step that ends there
        times, index = one.spikes[name]
        ends = np.round(times / spec.dt)
        assert np.abs(times / spec.dt - ends).max() < 1e-6
        raster = one.raster(name, spec.populations[name].size)
        assert np.all(raster[ends.astype(int) - 1, index])


def test_record_v_and_zero_delay_in_one_process(mechanisms):
    from hh_plugin.neuron import run_network

    spec = feed_forward(steps=400, delay_ab=0)
    run = run_network(spec, 400, integration=Integration.fixed(order=2), record=("V",))
    V = run.traces["A"]["V"]
    assert V.shape == (400, 6) and np.all(np.isfinite(V))
    with pytest.raises(ValueError, match="zero delay between populations cannot be "
                                         "represented with 1 processes and 2 threads"):
        run_network(spec, 400, threads=2)
    one_step = feed_forward(steps=400, delay_ab=1)
    with pytest.raises(ValueError, match="a delay of one step cannot be represented by "
                                         "NEURON's fixed step with 1 processes and 2"):
        run_network(one_step, 400, integration=Integration.fixed(), threads=2)
    with pytest.raises(ValueError, match="records 'V' only"):
        run_network(spec, 400, record=("m",))


def test_what_does_not_map_is_refused(mechanisms):
    from hh_plugin.neuron import run_network

    li = NetworkSpec([Population("A", 2, HHSpec()), Population("out", 2, LISpec())],
                     [Projection("A", "out", FixedProbability(1.0, 1.0, seed=1),
                                 current_pulse("p"))], dt=0.01)
    with pytest.raises(ValueError, match="'out' is a LISpec .*does not map"):
        run_network(li, 10)
    alpha = SynapseModel("my_synapse", "uA", (SynapseParameter("tau", "ms", "decay"),),
                         "tau")
    custom = NetworkSpec([Population("A", 2, HHSpec())],
                         [Projection("A", "A", FixedProbability(1.0, 1.0, seed=1),
                                     Synapse(alpha, "s", tau=2.0))], dt=0.01)
    with pytest.raises(ValueError, match="synapse model 'my_synapse' has no NEURON mapping"):
        run_network(custom, 10)
    pulse_start = NetworkSpec([Population("A", 2, HHSpec(), initial={"I_p": 1.0})],
                              [Projection("A", "A", FixedProbability(1.0, 1.0, seed=1),
                                          current_pulse("p"))], dt=0.01)
    with pytest.raises(ValueError, match="initial value of the current pulse 'I_p'"):
        run_network(pulse_start, 10)
    # the synapse models and plasticity of the definition language beyond the three
    from hh_plugin.network import TsodyksMarkram, biexponential_conductance

    biexp = NetworkSpec([Population("A", 2, HHSpec())],
                        [Projection("A", "A", FixedProbability(1.0, 0.01, seed=1),
                                    biexponential_conductance("b", 0.5, 5.0, 0.0))], dt=0.01)
    with pytest.raises(ValueError, match="'biexponential_conductance' has no NEURON mapping"):
        run_network(biexp, 10)
    depressing = NetworkSpec([Population("A", 2, HHSpec())],
                             [Projection("A", "A", FixedProbability(1.0, 0.01, seed=1),
                                         exponential_conductance("e", 2.0, 0.0),
                                         short_term=TsodyksMarkram(0.5, 100.0, 1.0))],
                             dt=0.01)
    with pytest.raises(ValueError, match=r"short-term plasticity \(Tsodyks-Markram\) has no "
                                         r"NEURON mapping"):
        run_network(depressing, 10)


def test_refractory_period_is_brian2s_level_rule(mechanisms):
    """With a refractory period R a neuron held above threshold spikes at 0, R, 2R, ...
    (Brian2's threshold='V > V_th', refractory=R); a neuron that crosses the threshold
    once per action potential, more than R apart, spikes as with the rising-edge rule."""
    from hh_plugin.neuron import run_network

    held = NetworkSpec([Population("A", 2, HHSpec(V_th=-200.0), refractory=3.0)], dt=0.01)
    run = run_network(held, 2000, integration=Integration.cvode(1e-8))
    times, index = run.spikes["A"]
    for i in range(2):
        np.testing.assert_allclose(times[index == i], 3.0 * np.arange(7), atol=1e-9)
    plain = feed_forward(steps=1500)
    dead = NetworkSpec([Population(p.name, p.size, p.spec, seed=p.seed,
                                   refractory=3.0) for p in plain.populations.values()],
                       plain.projections, [*plain.currents, *plain.sources.values()],
                       dt=plain.dt)
    a = run_network(plain, 1500, integration=Integration.cvode(1e-8))
    b = run_network(dead, 1500, integration=Integration.cvode(1e-8))
    for name in plain.populations:
        assert len(a.spikes[name][0]) > 0
        np.testing.assert_array_equal(a.spikes[name][1], b.spikes[name][1])
        np.testing.assert_allclose(a.spikes[name][0], b.spikes[name][0], atol=1e-3)


def test_every_model_in_one_network_matches_the_reference(mechanisms):
    """Populations of the four shipped models and the user model in one network (one
    mechanism each, loaded together), driven by CurrentInput: each neuron's spikes within
    0.01 ms of the converged reference over 50 ms (Traub-Miles' 0.5 nA on its 20,000 um2
    patch included)."""
    from hh_plugin.model.reference import converged_spike_times
    from hh_plugin.neuron import run_network

    from test_neuron_models import DRIVES

    pops = [Population(m.name, 1, HHSpec(model=m), initial={"V": -65.0}) for m, _ in DRIVES]
    inputs = [CurrentInput(m.name, current) for m, current in DRIVES]
    spec = NetworkSpec(pops, (), inputs, dt=0.025)
    run = run_network(spec, 2000, integration=Integration.cvode(atol=1e-9))
    for model, current in DRIVES:
        reference = converged_spike_times(model, current, 50.0, V0=-65.0)
        times = run.spikes[model.name][0]
        assert len(reference) >= 1 and len(times) == len(reference), model.name
        assert np.abs(times - reference).max() < 0.01, model.name
