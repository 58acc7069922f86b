"""The PyTorch network module: the delay convention, weights, gradients, paths, batches."""

import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.model import TRAUB_MILES
from hh_plugin.network import (AllToAll, CurrentInput, Dense, FixedProbability, NetworkSpec,
                               OneToOne, PoissonInput, Population, Projection, RandomDelay,
                               Sparse, SpikeTrains, Uniform, current_pulse,
                               exponential_conductance, exponential_current)
from hh_plugin.torch.fused import PathUnavailable
from hh_plugin.torch.fused.cpp import compiler_available
from hh_plugin.torch.network import NetworkModule

needs_compiler = pytest.mark.skipif(compiler_available() is not None,
                                    reason="no C++ compiler for the fused path")


def first_changed_row(a, b):
    rows = np.nonzero(np.abs(np.asarray(a) - np.asarray(b)).reshape(len(a), -1).max(1) > 0)[0]
    return int(rows[0]) if len(rows) else None


def single_spike_net(synapse, delay, weight, spike_step=5, dt=0.01):
    """One source spike at ``spike_step`` into one resting HH neuron."""
    return NetworkSpec([Population("T", 1, initial={"V": -65.0})],
                       [Projection("S", "T", OneToOne(weight), synapse, delay=delay)],
                       [SpikeTrains("S", 1, [spike_step], [0])], dt=dt)


def run_v(spec, steps, path="naive", dtype=torch.float64, record=("V",)):
    module = NetworkModule(spec, dtype=dtype, path=path)
    with torch.no_grad():
        out = module(steps=steps, record=record)
    return out


@pytest.mark.parametrize("synapse", [current_pulse("p"), exponential_current("x", 2.0),
                                     exponential_conductance("e", 5.0, 0.0)],
                         ids=["pulse", "exp_current", "exp_conductance"])
@pytest.mark.parametrize("delay", [0, 1, 4])
def test_a_spike_of_step_k_first_changes_the_target_in_step_k_plus_delay(synapse, delay):
    weight = 0.05 if synapse.model.is_conductance else 5.0
    net = single_spike_net(synapse, delay, weight)
    base = single_spike_net(synapse, delay, 0.0)
    v = run_v(net, 20).traces["T"]["V"][:, 0].numpy()
    v0 = run_v(base, 20).traces["T"]["V"][:, 0].numpy()
    assert first_changed_row(v, v0) == 5 + delay


def test_zero_delay_between_populations_acts_in_the_same_step_as_a_linear_layer():
    """A population spike of step k reaches a zero-delay target in step k (Norse's
    Linear between two layers), one step later with delay 1."""
    def net(delay, weight):
        return NetworkSpec([Population("A", 1, initial={"V": -65.0}),
                            Population("B", 1, initial={"V": -65.0})],
                           [Projection("A", "B", OneToOne(weight), current_pulse(), delay=delay)],
                           [CurrentInput("A", 40.0)])
    out = run_v(net(0, 0.0), 300)
    k_spike = int(np.nonzero(out.spikes["A"][:, 0].numpy())[0][0])
    for delay in (0, 1):
        v = run_v(net(delay, 20.0), 300).traces["B"]["V"][:, 0].numpy()
        assert first_changed_row(v, out.traces["B"]["V"][:, 0].numpy()) == k_spike + delay


def test_pulse_current_equals_a_linear_layer_feeding_hh_step():
    """A dense current pulse with delay 0 is torch.nn.functional.linear of the source
    spikes, fed to the target's step (the Norse Linear semantics)."""
    from hh_plugin.torch.functional import hh_step, initial_state

    rng = np.random.default_rng(0)
    W = rng.uniform(500.0, 2000.0, (3, 4))  # uA for one 0.01 ms step: 5-20 mV kicks
    pops = [Population("A", 4, initial={"V": -65.0}), Population("B", 3, initial={"V": -65.0})]
    net = NetworkSpec(pops, [Projection("A", "B", Dense(W), current_pulse(), delay=0)],
                      [CurrentInput("A", np.array([10.0, 20.0, 30.0, 40.0]))])
    out = run_v(net, 400)
    p = HHSpec()
    from hh_plugin.torch.functional import as_parameters
    params = as_parameters(p)
    sa = initial_state(params, (4,), V=-65.0, dtype=torch.float64)
    sb = initial_state(params, (3,), V=-65.0, dtype=torch.float64)
    Wt = torch.tensor(W)
    zs = []
    for k in range(400):
        za, sa = hh_step(torch.tensor([10.0, 20.0, 30.0, 40.0], dtype=torch.float64), sa,
                         params, 1e-5)
        zb, sb = hh_step(torch.nn.functional.linear(za, Wt), sb, params, 1e-5)
        zs.append(zb)
    np.testing.assert_array_equal(torch.stack(zs).numpy(), out.spikes["B"].numpy())
    assert out.spikes["B"].sum() > 0


def _mixed_net(dense: bool, dt=0.05):
    rng = np.random.default_rng(1)
    W = rng.uniform(0, 0.02, (6, 8)) * (rng.random((6, 8)) < 0.5)
    if dense:
        conn = Dense(W)
    else:
        post, pre = np.nonzero(np.ones_like(W))
        conn = Sparse(pre, post, W[post, pre])
    pops = [Population("A", 8, HHSpec(gL=rng.uniform(0.02, 0.05, 8)), seed=1),
            Population("B", 6, HHSpec(model=TRAUB_MILES), seed=2, refractory=1.0)]
    return NetworkSpec(pops, [
        Projection("A", "B", conn, exponential_conductance("e", 3.0, 0.0), delay=2),
        Projection("B", "A", FixedProbability(0.5, Uniform(0, 3.0, 2), seed=3),
                   exponential_current("x", 2.0), delay=RandomDelay(1, 3, 4)),
        Projection("S", "A", FixedProbability(0.5, 4.0, seed=5), current_pulse(), delay=0)],
        [CurrentInput("A", 12.0), CurrentInput("B", rng.uniform(0, 3e-3, (3000, 6))),
         PoissonInput("S", 10, 200.0, seed=6)], dt=dt)


def test_dense_and_sparse_storage_give_the_same_network():
    a = run_v(_mixed_net(True), 1000)
    b = run_v(_mixed_net(False), 1000)
    assert a.spikes["A"].sum() > 10 and a.spikes["B"].sum() > 3
    for pop in ("A", "B"):
        torch.testing.assert_close(a.spikes[pop], b.spikes[pop], rtol=0, atol=0)
        torch.testing.assert_close(a.traces[pop]["V"], b.traces[pop]["V"], rtol=0, atol=1e-9)


def test_weights_are_parameters_and_sparse_projections_store_only_their_synapses():
    module = NetworkModule(_mixed_net(False))
    names = dict(module.named_parameters())
    assert set(names) == {f"projections.{p}.weight" for p in module.spec.connections}
    conn = module.spec.connections["B_to_A_x"]
    assert module.weights["B_to_A_x"].shape == (conn.size,)
    assert module.weights["B_to_A_x"].requires_grad
    dense = NetworkModule(_mixed_net(True))
    assert dense.weights["A_to_B_e"].shape == (6, 8)


def test_gradients_of_weights_match_finite_differences():
    """Loss: sum of subthreshold V of a target driven through two receptors by fixed
    spike trains (smooth in the weights)."""
    rng = np.random.default_rng(2)
    steps = rng.integers(0, 150, 40)
    idx = rng.integers(0, 5, 40)
    keep = np.unique(steps * 5 + idx, return_index=True)[1]
    src = SpikeTrains("S", 5, steps[keep], idx[keep])
    net = NetworkSpec([Population("T", 3, initial={"V": -65.0})], [
        Projection("S", "T", FixedProbability(0.6, Uniform(0, 0.5, 1), seed=2),
                   exponential_current("x", 2.0), delay=1),
        Projection("S", "T", Dense(rng.uniform(0, 2e-3, (3, 5))),
                   exponential_conductance("e", 3.0, 0.0), delay=0)], [src])
    module = NetworkModule(net, dtype=torch.float64, path="naive")

    def loss():
        out = module(steps=200, record=("V",))
        assert out.spikes["T"].sum() == 0
        return out.traces["T"]["V"].sum()

    value = loss()
    value.backward()
    for name, w in module.weights.items():
        grad = w.grad.clone()
        flat = w.data.view(-1)
        for k in rng.choice(flat.numel(), 3, replace=False):
            h = 1e-6 * max(1e-3, abs(flat[k].item()))
            with torch.no_grad():
                flat[k] += h
                up = loss().item()
                flat[k] -= 2 * h
                down = loss().item()
                flat[k] += h
            fd = (up - down) / (2 * h)
            assert grad.view(-1)[k].item() == pytest.approx(fd, rel=1e-5, abs=1e-6), name


def test_surrogate_gradient_reaches_weights_through_spikes():
    net = NetworkSpec([Population("A", 4, initial={"V": -65.0}),
                       Population("B", 3, initial={"V": -65.0})],
                      [Projection("S", "A", OneToOne(3000.0), current_pulse(), delay=0),
                       Projection("A", "B", Dense(np.full((3, 4), 500.0)), current_pulse(),
                                  delay=0)],
                      [SpikeTrains("S", 4, np.arange(0, 400, 25), np.arange(16) % 4)])
    module = NetworkModule(net, dtype=torch.float64)
    out = module(steps=400, record=("V",))
    assert out.spikes["A"].sum() > 0
    out.traces["B"]["V"].sum().backward()
    g = module.weights["S_to_A_syn"].grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_path_equals_naive_path(dtype):
    net = _mixed_net(False)
    a = run_v(net, 1500, "naive", dtype, ("V", "g_e", "I_x"))
    b = run_v(net, 1500, "fused", dtype, ("V", "g_e", "I_x"))
    tol = 1e-9 if dtype == torch.float64 else 1e-2
    for pop in ("A", "B"):
        assert a.spikes[pop].sum() > 0
        torch.testing.assert_close(b.spikes[pop], a.spikes[pop], rtol=0, atol=0)
        for var, x in a.traces[pop].items():
            torch.testing.assert_close(b.traces[pop][var], x, rtol=0,
                                       atol=tol * max(1.0, x.abs().max().item()))


@needs_compiler
def test_fused_path_sees_weights_changed_between_calls():
    """The fused path sorts a projection's synapses once per module; weights changed in
    place or replaced between calls still reach the next call (as on the naive path)."""
    module = NetworkModule(_mixed_net(False), dtype=torch.float64, path="fused")
    reference = NetworkModule(_mixed_net(False), dtype=torch.float64, path="naive")
    with torch.no_grad():
        module(steps=50)
        for change in (lambda w: w.mul_(3.0), lambda w: w.copy_(torch.rand_like(w) * 0.05)):
            for net in (module, reference):
                torch.manual_seed(0)
                change(net.projections["A_to_B_e"].weight)
            fused, naive = module(steps=600), reference(steps=600)
            torch.testing.assert_close(fused.spikes["B"], naive.spikes["B"], rtol=0, atol=0)
        assert fused.spikes["B"].sum() > 0
        cached = module._fused_csr_cache["A_to_B_e"]["csr"]
        module(steps=10)
        assert module._fused_csr_cache["A_to_B_e"]["csr"] is cached  # sorted once


@needs_compiler
@pytest.mark.parametrize("path", ["naive", "fused"])
def test_a_run_in_chunks_equals_one_run(path):
    net = _mixed_net(False)
    module = NetworkModule(net, dtype=torch.float64, path=path)
    with torch.no_grad():
        whole = module(steps=1200, record=("V",))
        first = module(steps=500, record=("V",))
        second = module(steps=700, state=first.state, record=("V",))
    for pop in ("A", "B"):
        joined = torch.cat([first.spikes[pop], second.spikes[pop]])
        torch.testing.assert_close(joined, whole.spikes[pop], rtol=0, atol=0)
        V = torch.cat([first.traces[pop]["V"], second.traces[pop]["V"]])
        torch.testing.assert_close(V, whole.traces[pop]["V"], rtol=0, atol=1e-9)


@needs_compiler
def test_batches_run_independently_on_both_paths():
    net = _mixed_net(False)
    rng = np.random.default_rng(3)
    extra = torch.tensor(rng.uniform(0, 6, (800, 2, 8)))
    outs = {}
    for path in ("naive", "fused"):
        module = NetworkModule(net, dtype=torch.float64, path=path)
        with torch.no_grad():
            outs[path] = module({"A": extra}, record=("V",))
            single = module({"A": extra[:, 1]}, record=("V",))
        assert outs[path].spikes["A"].shape == (800, 2, 8)
        torch.testing.assert_close(outs[path].spikes["A"][:, 1], single.spikes["A"],
                                   rtol=0, atol=0)
    torch.testing.assert_close(outs["fused"].spikes["B"], outs["naive"].spikes["B"],
                               rtol=0, atol=0)
    assert not torch.equal(outs["naive"].spikes["A"][:, 0], outs["naive"].spikes["A"][:, 1])


@needs_compiler
def test_fused_path_gives_the_step_loops_gradients_and_auto_takes_it():
    # two models, a refractory period, random delays, a spike source (the refused cases:
    # tests/test_network_fused_backward.py)
    grads = {}
    for path in ("naive", "fused", "auto"):
        module = NetworkModule(_mixed_net(False), dtype=torch.float64, path=path)
        out = module(steps=400, record=("V",))
        loss = out.spikes["A"].sum() + out.spikes["B"].sum() + out.traces["B"]["V"].mean()
        loss.backward()
        fused = type(out.spikes["A"].grad_fn).__name__ == "NetworkFunctionBackward"
        assert fused == (path != "naive"), path
        grads[path] = {k: w.grad for k, w in module.weights.items()}
    for name, g in grads["naive"].items():
        assert g.abs().max() > 0, name
        for path in ("fused", "auto"):
            assert (grads[path][name] - g).abs().max() <= 1e-9 * g.abs().max(), (path, name)
    with torch.no_grad():
        out = module(steps=10, spike_dtype=torch.uint8)
    assert out.spikes["A"].dtype == torch.uint8


def test_bad_forward_arguments_are_refused():
    module = NetworkModule(_mixed_net(False))
    with pytest.raises(ValueError, match="unknown population"):
        module({"Z": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match=r"expected \(T, \*batch, 8\)"):
        module({"A": torch.zeros(3, 7)})
    with pytest.raises(ValueError, match="steps"):
        module()
    with pytest.raises(ValueError, match="unknown path"):
        NetworkModule(_mixed_net(False), path="gpu")
    with pytest.raises(TypeError, match="float32 or torch.float64"):
        NetworkModule(_mixed_net(False), dtype=torch.float16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    net = _mixed_net(False)
    cpu = run_v(net, 500)
    module = NetworkModule(net, dtype=torch.float64, device="cuda")
    with torch.no_grad():
        gpu = module(steps=500, record=("V",))
    for pop in ("A", "B"):
        torch.testing.assert_close(gpu.spikes[pop].cpu(), cpu.spikes[pop], rtol=0, atol=0)
        torch.testing.assert_close(gpu.traces[pop]["V"].cpu(), cpu.traces[pop]["V"],
                                   rtol=0, atol=1e-8)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("path", ["naive", "fused"])
def test_a_nan_or_infinite_current_is_refused_naming_the_population(bad, path):
    """As the neuron modules do: a NaN or infinite external current would make the states
    NaN without a word, so it is refused before the run, on either path."""
    spec = NetworkSpec([Population("A", 3, HHSpec())], [], [], dt=0.025)
    current = torch.zeros((10, 3), dtype=torch.float64)
    current[4, 2] = bad
    module = NetworkModule(spec, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"current of 'A' contains NaN or infinite values "
                                         r"\(first at index \(4, 2\)\)"):
        module(steps=10, currents={"A": current}, path=path)
