"""Issue 12, "From Brian2 to PyTorch": a network built in Brian2 through the plugin becomes
the trainable torch module with the weights (and delays, synapses, neuron parameters) its
Brian2 objects have now; trained weights go back into the Brian2 Synapses; the example
fits a recurrent network in torch and reruns it in Brian2 with identical spikes."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

brian2 = pytest.importorskip("brian2")

from brian2 import ms, msiemens, uA  # noqa: E402

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.brian2.network import build_network  # noqa: E402
from hh_plugin.brian2.transfer import network_spec_from_brian2, set_weights  # noqa: E402
from hh_plugin.network import (CurrentInput, Dense, FixedProbability, NetworkSpec,  # noqa: E402
                               PoissonInput, Population, Projection, RandomDelay,
                               current_pulse, exponential_conductance, exponential_current)
from hh_plugin.torch.network import NetworkModule  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STEPS = 600


@pytest.fixture(autouse=True)
def _numpy(numpy_target):  # every test here runs Brian2 on the numpy target (conftest)
    yield


def make_spec():
    """Two populations, a dense input, sparse recurrence with per-synapse delays, a
    zero-delay pulse projection between the populations."""
    rng = np.random.default_rng(0)
    return NetworkSpec(
        [Population("H", 12, HHSpec(), initial={"V": -65.0}),
         Population("O", 4, HHSpec(), initial={"V": -65.0})],
        [Projection("P", "H", Dense(rng.uniform(0, 3, (12, 20))),
                    exponential_current("in", 2.0), delay=1),
         Projection("H", "H", FixedProbability(0.3, 0.01, seed=1, autapses=False),
                    exponential_conductance("rec", 5.0, 0.0), delay=RandomDelay(1, 3, seed=2)),
         Projection("H", "O", FixedProbability(0.5, 8.0, seed=3), current_pulse("ff"),
                    delay=0)],
        [PoissonInput("P", 20, 100.0, seed=4), CurrentInput("H", 3.0), CurrentInput("O", 5.0)],
        dt=0.025)


def run_both(module, net, steps=STEPS):
    with torch.no_grad():
        out = module(steps=steps, record=("V",), path="naive")
    net.run(steps)
    for pop in module.spec.populations:
        z_torch = out.spikes[pop].numpy()
        z_brian = net.spike_raster(pop, steps)
        assert np.array_equal(z_torch, z_brian), (pop, z_torch.sum(), z_brian.sum())
        dv = np.abs(out.traces[pop]["V"].numpy() - net.trace(pop, "V")).max()
        assert dv <= 1e-6, (pop, dv)
    return out


def test_an_unchanged_network_gives_back_its_specification():
    spec = make_spec()
    back = network_spec_from_brian2(build_network(spec, steps=STEPS))
    assert back.order == spec.order and list(back.sources) == list(spec.sources)
    for proj in spec.projections:
        a, b = spec.connections[proj.name], back.connections[proj.name]
        assert a.dense == b.dense
        order_a = np.lexsort((a.pre, a.post))
        order_b = np.lexsort((b.pre, b.post))
        for field in ("pre", "post", "weight", "delay"):
            # exactly the specification's values, not the unit round trip's
            assert np.array_equal(np.asarray(getattr(a, field))[order_a],
                                  np.asarray(getattr(b, field))[order_b]), (proj.name, field)
    for name, pop in spec.populations.items():
        assert back.populations[name].spec.parameters == pop.spec.parameters
        for key, value in spec.initial_state(name).items():
            assert np.array_equal(back.initial_state(name)[key], value)


def test_weights_delays_synapses_and_parameters_changed_in_brian2_reach_torch():
    brian2.seed(11)
    net = build_network(make_spec(), steps=STEPS, record=("V",))
    S_in = net.synapses["P_to_H_in"][0]
    S_in.w = "4*uA*rand()"
    S_rec = net.synapses["H_to_H_rec"][0]
    S_rec.w = "0.03*msiemens*rand()"
    S_rec.delay = "int(3*rand())*0.025*ms"          # d - 1 in 0..2 steps
    S_ff = net.synapses["H_to_O_ff"][0]
    S_ff.connect(i=0, j=0)                           # one more (a second 0 -> 0) synapse
    S_ff.w[-1] = 20 * uA
    net.groups["O"].gNa = 100 * msiemens
    spec = network_spec_from_brian2(net)
    rec = spec.connections["H_to_H_rec"]
    assert np.allclose(rec.weight, S_rec.w_[:] * 1e3, rtol=1e-14, atol=0)
    assert np.array_equal(rec.delay, np.round(S_rec.delay_[:] / 25e-6).astype(int) + 1)
    assert set(np.unique(rec.delay)) == {1, 2, 3}
    assert spec.connections["P_to_H_in"].dense
    assert spec.connections["H_to_O_ff"].size == len(S_ff) and not spec.connections[
        "H_to_O_ff"].dense
    assert spec.populations["O"].spec.gNa == 100.0
    assert spec.populations["H"].spec.gNa == 120.0
    run_both(NetworkModule(spec, dtype=torch.float64), net)


def test_the_module_of_a_brian2_network_trains():
    net = build_network(make_spec(), steps=STEPS)
    net.synapses["H_to_H_rec"][0].w = 0.02 * msiemens
    module = NetworkModule(network_spec_from_brian2(net), dtype=torch.float64)
    assert all(w.requires_grad for w in module.weights.values())
    out = module(steps=STEPS)
    out.spikes["H"].sum().backward()
    grads = {name: w.grad for name, w in module.weights.items()}
    assert float(grads["P_to_H_in"].abs().max()) > 0
    assert float(grads["H_to_H_rec"].abs().max()) > 0


def test_initial_state_from_the_groups():
    net = build_network(make_spec(), steps=STEPS, record=("V",))
    net.groups["H"].V = "-65*mV + 10*mV*(i % 3)"
    from_spec = network_spec_from_brian2(net)
    from_groups = network_spec_from_brian2(net, initial="groups")
    assert np.all(from_spec.initial_state("H")["V"] == -65.0)
    np.testing.assert_allclose(from_groups.initial_state("H")["V"],
                               -65.0 + 10.0 * (np.arange(12) % 3), rtol=0, atol=1e-12)
    run_both(NetworkModule(from_groups, dtype=torch.float64), net)


def test_trained_weights_go_back_into_brian2():
    net = build_network(make_spec(), steps=STEPS, record=("V",))
    net.network.store()
    module = NetworkModule(network_spec_from_brian2(net), dtype=torch.float64)
    with torch.no_grad():
        module.weights["P_to_H_in"].mul_(1.5)
        module.weights["H_to_H_rec"].add_(0.02)
        module.weights["H_to_O_ff"].mul_(0.5)
    net.network.restore()
    set_weights(net, module)
    np.testing.assert_allclose(net.synapses["H_to_O_ff"][0].w_[:] * 1e6,
                               module.weights["H_to_O_ff"].detach().numpy(), rtol=1e-14)
    run_both(module, net)
    # a mapping works too, dense weights as the (target, source) matrix
    matrix = np.full((12, 20), 0.5)
    set_weights(net, {"P_to_H_in": matrix})
    np.testing.assert_allclose(net.synapses["P_to_H_in"][0].w_[:], 0.5e-6, rtol=1e-14)


def test_what_cannot_be_carried_over_is_refused_with_a_reason():
    net = build_network(make_spec(), steps=STEPS)
    with pytest.raises(TypeError, match="BrianNetwork"):
        network_spec_from_brian2(net.network)
    with pytest.raises(ValueError, match="initial must be one of"):
        network_spec_from_brian2(net, initial="now")
    net.synapses["H_to_H_rec"][0].delay = "0.01*ms*i"
    with pytest.raises(ValueError, match="whole steps of dt"):
        network_spec_from_brian2(net)
    net.synapses["H_to_H_rec"][0].delay = 0 * ms
    net.synapses["H_to_O_ff"][0].delay = 0.05 * ms
    with pytest.raises(ValueError, match="must keep delay 0"):
        network_spec_from_brian2(net)
    net.synapses["H_to_O_ff"][0].delay = 0 * ms
    net.synapses["P_to_H_in"][0].w[0] = np.nan * uA
    with pytest.raises(ValueError, match="NaN"):
        network_spec_from_brian2(net)
    with pytest.raises(ValueError, match="no projection"):
        set_weights(net, {"nope": [1.0]})
    with pytest.raises(ValueError, match="expected 240 values"):
        set_weights(net, {"P_to_H_in": np.ones(7)})
    with pytest.raises(ValueError, match="NaN"):
        set_weights(net, {"P_to_H_in": np.full(240, np.nan)})
    with pytest.raises(TypeError, match="NetworkModule or a mapping"):
        set_weights(net, [1.0])


def test_fit_example_runs_back_in_brian2_with_identical_spikes(tmp_path):
    spec = importlib.util.spec_from_file_location("fit_network_brian2",
                                                  EXAMPLES / "fit_network_brian2.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--quick", "--output-dir", str(tmp_path)])
    assert result["identical_before"] and result["identical"], result
    assert result["max_dV_before_mV"] <= 1e-6 and result["max_dV_mV"] <= 1e-6
    assert result["spikes_brian2"] == result["spikes_torch"] > 0
    assert result["loss_end"] < result["loss_start"]
    assert result["loss_brian2"] == pytest.approx(result["loss_end"], rel=1e-9)
    assert (tmp_path / "fit_network_brian2.png").stat().st_size > 20_000
