"""The fused network kernel's backward pass (hh_plugin.torch.network.fused_backward): its
gradients against the step loop's autograd (float64, to round-off) and against central
differences, and the cases it refuses by name."""

import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.model import WANG_BUZSAKI
from hh_plugin.network import (CurrentInput, Dense, FixedProbability, NetworkSpec, OneToOne,
                               Population, Projection, RandomDelay, SpikeTrains)
from hh_plugin.network.synapses import (STDP, TsodyksMarkram, alpha_conductance,
                                        biexponential_conductance, biexponential_current,
                                        current_pulse, exponential_conductance,
                                        exponential_current, gated_conductance,
                                        nmda_conductance)
from hh_plugin.torch.fused.cpp import PathUnavailable, compiler_available
from hh_plugin.torch.network import NetworkModule

pytestmark = pytest.mark.skipif(compiler_available() is not None,
                                reason="no C++ compiler for the fused path")

#: float64: the fused gradients equal the step loop's to this relative error (of the
#: largest component); the sums are taken in another order.
RTOL = 1e-9


def _network(delays, seed=0, refractory=False, nmda=False):
    """Two populations of 28 and 36 HH neurons (A with a soft reset or, ``refractory``, a
    refractory period of 0.5 ms; B with a hard reset), exponential, biexponential and alpha
    receptors (currents and conductances), a spike source, delays ``delays`` (an int, or
    'random' for 0-3 steps)."""
    rng = np.random.default_rng(seed)

    def delay(k):
        return RandomDelay(0, 3, seed=k) if delays == "random" else delays

    kind = (dict(refractory=0.5) if refractory else
            dict(spec=HHSpec(V_reset=-70.0, spk_reset="soft")))
    pops = [Population("A", 28, initial={"V": rng.uniform(-70, -60, 28)}, **kind),
            Population("B", 36, HHSpec(V_reset=-75.0, spk_reset="hard"), initial={"V": -65.0})]
    projections = [
        Projection("A", "B", FixedProbability(0.4, 0.03, seed=1),
                   biexponential_conductance("e", 0.5, 3.0, 0.0), delay=delay(1)),
        Projection("A", "B", FixedProbability(0.4, 2.0, seed=2),
                   biexponential_current("c", 0.4, 2.0), delay=delay(2))
        if not nmda else
        Projection("A", "B", FixedProbability(0.4, 0.03, seed=2),
                   nmda_conductance("n", tau_decay=30.0), delay=delay(2)),
        Projection("B", "A", FixedProbability(0.3, 0.05, seed=3),
                   exponential_conductance("i", 5.0, -80.0), delay=max(1, delays)
                   if delays != "random" else RandomDelay(1, 3, seed=3)),
        Projection("S", "A", FixedProbability(0.5, 0.04, seed=4),
                   alpha_conductance("a", 1.0, 0.0), delay=delay(4)),
        Projection("S", "B", FixedProbability(0.5, 20.0, seed=5), current_pulse("p"),
                   delay=delay(5)),
    ]
    inputs = [CurrentInput("A", rng.uniform(5, 15, 28)),
              SpikeTrains("S", 5, [3, 10, 40, 90], [0, 2, 4, 1])]
    return NetworkSpec(pops, projections, inputs, dt=0.025)


def _run(spec, path, steps=200, batch=()):
    """Forward and backward of a loss that reads spikes (through the surrogate), traces and
    the final state; returns the spikes, the loss and every gradient."""
    module = NetworkModule(spec, dtype=torch.float64, path=path)
    gen = torch.Generator().manual_seed(0)
    current = (torch.rand((steps,) + batch + (36,), generator=gen, dtype=torch.float64) * 5
               ).requires_grad_()
    state = module.initial_state(batch)
    V0 = state.neurons["A"].V.clone().requires_grad_()
    state.neurons["A"] = state.neurons["A"]._replace(V=V0)
    tau = module.synapse_parameters("B", "e")["tau_decay"].requires_grad_()
    E = module.synapse_parameters("A", "i")["E_rev"].requires_grad_()
    out = module({"B": current}, state=state, record=("V", "g_i"))
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64).reshape((steps,) + (1,) * len(batch)
                                                                    + (1,))
    loss = ((out.spikes["A"] * ramp).sum() + 0.3 * out.spikes["B"].sum()
            + out.traces["B"]["V"].mean() + out.traces["A"]["g_i"].sum()
            + 0.1 * out.state.neurons["B"].V.sum() + out.state.synapses["B"]["B_e"].sum())
    loss.backward()
    grads = {"current": current.grad, "V0": V0.grad, "tau_decay": tau.grad, "E_rev": E.grad}
    grads.update({name: w.grad for name, w in module.weights.items()})
    tau.requires_grad_(False)
    E.requires_grad_(False)
    return out, loss.item(), grads


def _close(fused, naive, what):
    scale = naive.abs().max().clamp_min(1e-300)
    assert ((fused - naive).abs().max() / scale).item() <= RTOL, what


@pytest.mark.parametrize("delays, refractory", [(0, False), (1, True), ("random", False)],
                         ids=["delay0", "delay1_refractory", "random"])
def test_fused_gradients_equal_the_step_loops(delays, refractory):
    spec = _network(delays, refractory=refractory)
    naive, loss_naive, g_naive = _run(spec, "naive")
    fused, loss_fused, g_fused = _run(spec, "fused")
    assert type(fused.spikes["A"].grad_fn).__name__ == "NetworkFunctionBackward"
    for pop in ("A", "B"):
        assert naive.spikes[pop].sum() >= 5, pop
        assert torch.equal(naive.spikes[pop], fused.spikes[pop]), pop
    assert loss_fused == pytest.approx(loss_naive, rel=1e-12)
    for name, value in g_naive.items():
        assert value is not None and g_fused[name] is not None, name
        assert value.abs().max() > 0, name
        _close(g_fused[name], value, name)


def test_a_run_taped_in_segments_gives_the_step_loops_gradients(monkeypatch):
    """A tape budget of 12 kB (segments of 2 steps: the delays of up to 3 steps cross
    several segments), recomputed from checkpoints in the backward."""
    from hh_plugin.torch.network import fused_autograd

    spec = _network("random", seed=2, refractory=True)
    naive, _, g_naive = _run(spec, "naive", steps=120)
    monkeypatch.setattr(fused_autograd, "TAPE_BYTES", 12_000)
    fused, _, g_fused = _run(spec, "fused", steps=120)
    for pop in ("A", "B"):
        assert torch.equal(naive.spikes[pop], fused.spikes[pop]), pop
    for name, value in g_naive.items():
        _close(g_fused[name], value, name)


def test_nmda_gradients_equal_the_step_loops():
    """NMDA's magnesium block B(V) at the step's start potential: gradients to the
    potential through it, and to its parameters (Mg) and time constants."""
    spec = _network(1, seed=4, nmda=True)
    grads = {}
    for path in ("naive", "fused"):
        module = NetworkModule(spec, dtype=torch.float64, path=path)
        params = module.synapse_parameters("B", "n")
        trainable = {k: params[k].requires_grad_() for k in ("Mg", "tau_decay", "E_rev")}
        current = torch.full((150, 36), 3.0, dtype=torch.float64, requires_grad=True)
        out = module({"B": current}, record=("V",))
        assert out.spikes["B"].sum() >= 5
        (out.spikes["B"].sum() + out.traces["B"]["V"].mean()).backward()
        grads[path] = {**{k: t.grad for k, t in trainable.items()}, "current": current.grad,
                       "weight": module.weights["A_to_B_n"].grad}
        for t in trainable.values():
            t.requires_grad_(False)
    for name, value in grads["naive"].items():
        assert value is not None and value.abs().max() > 0, name
        _close(grads["fused"][name], value, name)


@pytest.mark.parametrize("tape_bytes", [None, 12_000], ids=["one_tape", "segments"])
def test_tsodyks_markram_gradients_equal_the_step_loops(tape_bytes, monkeypatch):
    """A depressing and a facilitating Tsodyks-Markram projection: the spikes transmit
    W (z u x) with the release u x held fixed (the state is not differentiated), whole or
    taped in segments (the release state is part of each checkpoint)."""
    from hh_plugin.torch.network import fused_autograd

    rng = np.random.default_rng(5)
    spec = NetworkSpec(
        [Population("A", 20, initial={"V": rng.uniform(-70, -60, 20)}),
         Population("B", 24, HHSpec(V_reset=-70.0, spk_reset="soft"), initial={"V": -65.0})],
        [Projection("A", "B", FixedProbability(0.5, 4.0, seed=1), exponential_current("c", 2.0),
                    delay=2, short_term=TsodyksMarkram(0.5, 100.0, 1.0)),
         Projection("S", "B", FixedProbability(0.5, 0.05, seed=2),
                    exponential_conductance("e", 3.0, 0.0), delay=1,
                    short_term=TsodyksMarkram(0.1, 1.0, 50.0)),
         Projection("B", "A", FixedProbability(0.3, 0.05, seed=3),
                    exponential_conductance("i", 5.0, -80.0), delay=1)],
        [CurrentInput("A", rng.uniform(8, 15, 20)),
         SpikeTrains("S", 4, [2, 20, 21, 22, 60, 61], [0, 1, 2, 3, 0, 1])], dt=0.025)
    grads = {}
    for path in ("naive", "fused"):
        if path == "fused" and tape_bytes is not None:
            monkeypatch.setattr(fused_autograd, "TAPE_BYTES", tape_bytes)
        module = NetworkModule(spec, dtype=torch.float64, path=path)
        current = torch.full((160, 24), 1.0, dtype=torch.float64, requires_grad=True)
        out = module({"B": current}, record=("V",))
        assert out.spikes["A"].sum() >= 5 and out.spikes["B"].sum() >= 5
        (out.spikes["A"].sum() + out.spikes["B"].sum() + out.traces["B"]["V"].mean()).backward()
        grads[path] = {"current": current.grad, **{k: w.grad for k, w in module.weights.items()}}
    for name, value in grads["naive"].items():
        assert value.abs().max() > 0, name
        _close(grads["fused"][name], value, name)


@pytest.mark.parametrize("tape_bytes", [None, 12_000], ids=["one_tape", "segments"])
def test_stdp_and_graded_gradients_equal_the_step_loops(tape_bytes, monkeypatch):
    """STDP on a projection from a spike source, and on one between populations that also
    has Tsodyks-Markram plasticity: each spike transmits the plastic weight of its arrival
    step (the rule's updates are not differentiated, the weight parameter is not used: no
    gradient, as on the step loop); Wang-Buzsaki's graded GABA_A synapse from W (a
    Wang-Buzsaki population) to B: every step transmits :math:`W s` of the presynaptic
    states of the step's start, which take an exponential Euler step driven by W's
    potential; gradients to its weights and to W's initial presynaptic state; NMDA beside
    them. Whole or taped in segments. The kernel (HH and WB, NMDA and the gated synapse,
    STDP) is the one test_synapse_definitions builds: no build of its own."""
    from hh_plugin.torch.network import fused_autograd

    rng = np.random.default_rng(7)
    rule = STDP(20.0, 20.0, 0.01, -0.0105, 0.05)
    spec = NetworkSpec(
        [Population("A", 20, initial={"V": rng.uniform(-70, -60, 20)}),
         Population("B", 24, HHSpec(V_reset=-70.0, spk_reset="soft"), initial={"V": -65.0}),
         Population("W", 12, HHSpec(model=WANG_BUZSAKI),
                    initial={"V": rng.uniform(-70, -50, 12)})],
        [Projection("A", "B", FixedProbability(0.3, 0.01, seed=5),
                    nmda_conductance("n", tau_decay=30.0), delay=1),
         Projection("A", "B", FixedProbability(0.5, 0.03, seed=1),
                    exponential_conductance("e", 3.0, 0.0), delay=2, stdp=rule,
                    short_term=TsodyksMarkram(0.5, 100.0, 1.0)),
         Projection("S", "B", FixedProbability(0.5, 0.03, seed=2),
                    exponential_conductance("e2", 2.0, 0.0), delay=1, stdp=rule),
         Projection("W", "B", FixedProbability(0.6, 0.02, seed=4), gated_conductance(),
                    delay=1),
         Projection("B", "A", FixedProbability(0.3, 0.05, seed=3),
                    exponential_conductance("i", 5.0, -80.0), delay=1)],
        [CurrentInput("A", rng.uniform(8, 15, 20)), CurrentInput("W", rng.uniform(0.8, 1.6, 12)),
         SpikeTrains("S", 4, [2, 20, 21, 22, 60, 61, 100], [0, 1, 2, 3, 0, 1, 2])], dt=0.025)
    grads = {}
    for path in ("naive", "fused"):
        if path == "fused" and tape_bytes is not None:
            monkeypatch.setattr(fused_autograd, "TAPE_BYTES", tape_bytes)
        module = NetworkModule(spec, dtype=torch.float64, path=path)
        state = module.initial_state()
        V0 = state.neurons["B"].V.clone().requires_grad_()
        state.neurons["B"] = state.neurons["B"]._replace(V=V0)
        s0 = (state.synapses["W"]["s_gaba"] + 0.1).requires_grad_()
        state.synapses["W"]["s_gaba"] = s0
        current = torch.full((160, 24), 1.0, dtype=torch.float64, requires_grad=True)
        out = module({"B": current}, state=state, record=("V", "s_gaba"))
        assert (type(out.spikes["B"].grad_fn).__name__ == "NetworkFunctionBackward") == (
            path == "fused")
        assert out.spikes["A"].sum() >= 5 and out.spikes["B"].sum() >= 5
        for name in ("A_to_B_e", "S_to_B_e2"):
            w0 = module.weights[name].detach()
            assert (out.state.plasticity[name]["w"] - w0).abs().max() > 1e-4, name
        (out.spikes["A"].sum() + out.spikes["B"].sum() + out.traces["B"]["V"].mean()
         + out.traces["W"]["s_gaba"].sum()).backward()
        grads[path] = {"current": current.grad, "V0": V0.grad, "s0": s0.grad,
                       **{k: w.grad for k, w in module.weights.items()}}
        grads[path + "_spikes"] = out.spikes
    for pop in ("A", "B"):
        assert torch.equal(grads["naive_spikes"][pop], grads["fused_spikes"][pop]), pop
    for name, value in grads["naive"].items():
        if name in ("A_to_B_e", "S_to_B_e2"):  # the plastic projections' parameters
            assert value is None and grads["fused"][name] is None, name
            continue
        assert value.abs().max() > 0, name
        _close(grads["fused"][name], value, name)


def test_fused_gradients_with_a_batch_equal_the_step_loops():
    spec = _network(1, seed=1)
    naive, _, g_naive = _run(spec, "naive", steps=120, batch=(2,))
    fused, _, g_fused = _run(spec, "fused", steps=120, batch=(2,))
    for pop in ("A", "B"):
        assert torch.equal(naive.spikes[pop], fused.spikes[pop]), pop
    for name, value in g_naive.items():
        _close(g_fused[name], value, name)


@pytest.mark.parametrize("refractory", [False, True], ids=["soft_reset", "refractory"])
def test_neuron_parameter_gradients_equal_the_step_loops(refractory):
    """The kernel parameters of population A (a conductance, the threshold, through the
    surrogate's default scale |V_th| as well), made trainable in the parameters both paths
    use (the dynamics' cached tensors)."""
    spec = _network(1, seed=3, refractory=refractory)
    grads = {}
    for path in ("naive", "fused"):
        module = NetworkModule(spec, dtype=torch.float64, path=path)
        p = module._dynamics["A"].parameters(torch.float64, torch.device("cpu"))
        trainable = {"gNa": p.gNa.requires_grad_(), "V_th": p.V_th.requires_grad_(),
                     "gL": p.gL.requires_grad_()}
        out = module(steps=150, record=("V",))
        assert out.spikes["A"].sum() >= 5
        (out.spikes["A"].sum() + out.spikes["B"].sum() + out.traces["A"]["V"].mean()).backward()
        grads[path] = {k: v.grad for k, v in trainable.items()}
    for name, value in grads["naive"].items():
        assert value is not None and value.abs().max() > 0, name
        _close(grads["fused"][name], value, name)


def test_auto_takes_the_fused_path_with_gradients_and_it_trains():
    module = NetworkModule(_network(1), dtype=torch.float64)
    out = module(steps=50)
    assert type(out.spikes["A"].grad_fn).__name__ == "NetworkFunctionBackward"
    out.spikes["B"].sum().backward()
    assert all(w.grad is not None for w in module.weights.values())


def test_gradients_flow_through_the_state_and_spike_history_between_calls():
    """Two calls, the second from the first one's state (not detached): its spikes of the
    last steps reach the second call through the history (delays up to 3 steps); the
    gradients equal those of the step loop run the same way."""
    spec = _network("random", seed=2)
    grads = {}
    for path in ("naive", "fused"):
        module = NetworkModule(spec, dtype=torch.float64, path=path)
        current = torch.full((160, 36), 2.0, dtype=torch.float64, requires_grad=True)
        first = module({"B": current[:80]}, record=("V",))
        assert any(z.requires_grad for z in first.state.history["A"])
        second = module({"B": current[80:]}, state=first.state, record=("V",))
        loss = sum((o.spikes["A"].sum() + 0.5 * o.spikes["B"].sum()
                    + o.traces["A"]["V"].mean()) for o in (first, second))
        loss.backward()
        grads[path] = {"current": current.grad,
                       **{k: w.grad for k, w in module.weights.items()}}
    for name, value in grads["naive"].items():
        assert value.abs().max() > 0, name
        _close(grads["fused"][name], value, name)


def _subthreshold(tau_decay=3.0, weight=0.05):
    """A source's spikes into three neurons held below threshold (the surrogate's window,
    0 to 40 mV for V_th = 20 mV, is never reached): the loss is smooth."""
    syn = biexponential_conductance("e", 0.5, tau_decay, 0.0)
    return NetworkSpec([Population("P", 3, HHSpec(), seed=2)],
                       [Projection("S", "P", FixedProbability(1.0, weight, seed=0), syn,
                                   delay=1)],
                       [SpikeTrains("S", 2, [0, 30, 60], [0, 1, 0]), CurrentInput("P", -2.0)],
                       dt=0.05)


def test_fused_gradients_match_central_differences():
    """The mean membrane potential over 200 steps (no spike, no surrogate), differentiated
    with respect to a decay time constant and one synapse's weight."""
    steps = 200

    def loss(module, path="fused"):
        return module(steps=steps, record=("V",), path=path).traces["P"]["V"].mean()

    module = NetworkModule(_subthreshold(), dtype=torch.float64)
    tau = module.synapse_parameters("P", "e")["tau_decay"].requires_grad_()
    value = loss(module)
    value.backward()
    weight = module.weights["S_to_P_e"]
    h = 1e-5 * 3.0
    with torch.no_grad():
        shifted = [loss(NetworkModule(_subthreshold(3.0 + s * h), dtype=torch.float64)).item()
                   for s in (1, -1)]
    assert tau.grad.item() == pytest.approx((shifted[0] - shifted[1]) / (2 * h), rel=1e-6)
    with torch.no_grad():
        base = weight[0].item()
        shifted = []
        for s in (1, -1):
            weight[0] = base + s * 1e-6
            shifted.append(loss(module).item())
        weight[0] = base
    assert weight.grad[0].item() == pytest.approx((shifted[0] - shifted[1]) / 2e-6, rel=1e-6)


def test_gradcheck_of_the_fused_kernel():
    """torch.autograd.gradcheck (float64, finite differences of every input element) of the
    external currents and a synapse time constant into the recorded potential."""
    module = NetworkModule(_subthreshold(), dtype=torch.float64, path="fused")
    params = module.synapse_parameters("P", "e")

    def f(current, tau_rise):
        params["tau_rise"] = tau_rise
        return module({"P": current}, record=("V",)).traces["P"]["V"]

    current = torch.zeros(40, 3, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (current, tau), fast_mode=True)


REFUSED = {
    "graded": (lambda: NetworkSpec(
        [Population("P", 3, HHSpec(), seed=2)],
        [Projection("P", "P", Dense(np.full((3, 3), 0.01)), gated_conductance(), delay=1)],
        [CurrentInput("P", 1.0)], dt=0.05), "graded synapse's parameters"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_the_backward_does_not_cover_is_refused_by_name_and_auto_falls_back(case):
    make, reason = REFUSED[case]
    module = NetworkModule(make(), dtype=torch.float64, path="fused")
    if case == "graded":
        module.synapse_parameters("P", "gaba")["beta"].requires_grad_()
    with pytest.raises(PathUnavailable, match=reason):
        module(steps=10)
    module.path = "auto"
    out = module(steps=10)  # the step loop
    assert type(out.spikes["P"].grad_fn).__name__ != "NetworkFunctionBackward"


def test_a_plastic_state_that_requires_grad_is_refused_by_name_and_auto_falls_back():
    """Gradients through the plasticity rule's weight updates (to a state's plastic weights
    or traces) are the step loop's only."""
    spec = NetworkSpec(
        [Population("P", 3, HHSpec(), seed=2)],
        [Projection("S", "P", OneToOne(0.01), exponential_conductance("e", 3.0, 0.0),
                    delay=1, stdp=STDP.brian2_example(w_max=0.05))],
        [SpikeTrains("S", 3, [0], [0])], dt=0.05)
    module = NetworkModule(spec, dtype=torch.float64, path="fused")
    state = module.initial_state()
    state.plasticity["S_to_P_e"]["w"].requires_grad_()
    with pytest.raises(PathUnavailable, match="plasticity rule's updates"):
        module(steps=10, state=state)
    module.path = "auto"
    out = module(steps=10, state=state)  # the step loop
    assert type(out.spikes["P"].grad_fn).__name__ != "NetworkFunctionBackward"
