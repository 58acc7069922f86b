"""Torch backend against the reference model (brainpy.state.HH) and Norse's contracts."""

import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.model import ChannelDefinition, GateDefinition, ModelDefinition
from hh_plugin.model.hodgkin_huxley import HODGKIN_HUXLEY
from hh_plugin.torch import (HH, HHCell, HHParameters, HHRecurrent, HHRecurrentCell, HHState,
                             hh_step, initial_state, parameters_type)


def _initial(ref, dtype):
    return HHState(*(torch.tensor(ref[k + "0"], dtype=dtype) for k in "Vmhn"))


def _run_reference_case(ref, dtype, path):
    module = HH(p=HHSpec(), dt=float(ref["dt"]) * 1e-3, record_states=True, path=path)
    with torch.no_grad():
        return module(torch.tensor(ref["I"], dtype=dtype), _initial(ref, dtype))


PATHS = pytest.mark.parametrize("path", ["naive", "auto"])  # the step loop and the default


@PATHS
def test_float64_reproduces_reference_to_round_off(reference, path):
    spikes, states = _run_reference_case(reference, torch.float64, path)
    assert np.abs(states.V.numpy() - reference["V"]).max() <= 1e-6
    for gate in "mhn":
        assert np.abs(getattr(states, gate).numpy() - reference[gate]).max() <= 1e-9
    np.testing.assert_array_equal(spikes.numpy(), reference["spike"])
    assert reference["spike"].sum() > 10  # the case really spikes


@PATHS
def test_float32_same_spike_steps_and_close_voltage(reference, path):
    spikes, states = _run_reference_case(reference, torch.float32, path)
    np.testing.assert_array_equal(spikes.numpy(), reference["spike"])
    assert np.abs(states.V.double().numpy() - reference["V"]).max() <= 0.1


def _gradient_case(grad_reference, path):
    I = torch.tensor(grad_reference["I"], dtype=torch.float64, requires_grad=True)
    steps = int(grad_reference["steps"])
    module = HH(p=HHSpec(), dt=float(grad_reference["dt"]) * 1e-3, record_states=True,
                path=path)
    s0 = initial_state(module.p, (5,), V=torch.tensor(grad_reference["V0"]), dtype=torch.float64)
    spikes, states = module(I.expand(steps, 5), s0)
    return I, spikes, states


@PATHS
def test_surrogate_gradient_matches_reference(grad_reference, path):
    I, spikes, _ = _gradient_case(grad_reference, path)
    loss = spikes.sum()
    assert loss.item() == grad_reference["loss_spike_sum"]
    (grad,) = torch.autograd.grad(loss, I)
    np.testing.assert_allclose(grad.numpy(), grad_reference["grad_spike_sum_wrt_I"],
                               rtol=1e-6, atol=1e-12)


@PATHS
def test_smooth_gradient_matches_reference_and_finite_differences(grad_reference, path):
    I, _, states = _gradient_case(grad_reference, path)
    loss = 1e-3 * states.V.sum()
    np.testing.assert_allclose(loss.item(), grad_reference["loss_V_sum_scaled"], rtol=1e-12)
    (grad,) = torch.autograd.grad(loss, I)
    np.testing.assert_allclose(grad.numpy(), grad_reference["grad_V_sum_scaled_wrt_I"], rtol=1e-6)
    # our own central differences (h = 1e-4 uA)
    h = 1e-4
    fd = []
    for j in range(5):
        values = []
        for sign in (1, -1):
            Ij = I.detach().clone()
            Ij[j] += sign * h
            module = HH(p=HHSpec(), dt=1e-5, record_states=True)
            s0 = initial_state(module.p, (5,), V=-65.0, dtype=torch.float64)
            with torch.no_grad():
                _, st = module(Ij.expand(int(grad_reference["steps"]), 5), s0)
            values.append(1e-3 * st.V.sum().item())
        fd.append((values[0] - values[1]) / (2 * h))
    np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-4)


def test_documented_example_ten_neurons_one_step():
    cell = HHCell(p=HHSpec(), dt=1e-5)
    spikes, state = cell(torch.full((1, 10), 10.0))
    assert spikes.shape == (1, 10) and state.V.shape == (1, 10)
    assert torch.all(spikes == 0)
    # one step of 10 uA from rest (-70.68 mV): every neuron alike, 0.1 mV up
    assert torch.all((state.V > -70.68) & (state.V < -70.5)) and (state.V == state.V[0, 0]).all()


def test_removable_singularities_give_finite_values_and_gradients():
    for dtype in (torch.float32, torch.float64):
        V = torch.tensor([-40.0, -55.0, -40.0 + 1e-6, -55.0 - 1e-7], dtype=dtype,
                         requires_grad=True)
        state = HHState(V, *(torch.full_like(V, 0.3) for _ in range(3)))
        _, new = hh_step(torch.zeros_like(V), state, HHParameters(), 1e-5)
        total = new.V.sum() + new.m.sum() + new.n.sum()
        (grad,) = torch.autograd.grad(total, V)
        assert torch.isfinite(new.m).all() and torch.isfinite(new.n).all()
        assert torch.isfinite(grad).all()
        # the gradient is continuous through the removable point
        assert abs(grad[0] - grad[2]) < 1e-3 * abs(grad[0]) + 1e-6


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_reset_matches_numpy_reference_step(reset):
    from reference_step import reference_step

    spec = HHSpec(V_reset=-60.0, spk_reset=reset)
    rng = np.random.default_rng(1)
    I = rng.uniform(5, 25, size=(2000, 8))
    state = initial_state(HHParameters.from_spec(spec), (8,), V=-65.0, dtype=torch.float64)
    module = HH(p=spec, dt=1e-5, record_states=True)
    with torch.no_grad():
        spikes, states = module(torch.tensor(I), state)
    V = np.full(8, -65.0)
    gates = {k: getattr(state, k).numpy().copy() for k in "mhn"}
    ref_spikes = []
    for k in range(I.shape[0]):
        V, gates, z = reference_step(V, gates, I[k], spec.parameters, 0.01,
                                     V_reset=spec.V_reset, spk_reset=spec.spk_reset)
        ref_spikes.append(z)
    np.testing.assert_array_equal(spikes.numpy(), np.array(ref_spikes))
    assert np.abs(states.V[-1].numpy() - V).max() < 1e-8
    assert spikes.sum() > 8


def test_soft_reset_subtracts_and_passes_gradient_hard_reset_detaches():
    V_old = torch.tensor([19.0], dtype=torch.float64, requires_grad=True)
    state = HHState(V_old, *(torch.tensor([0.9], dtype=torch.float64) for _ in "mhn"))
    I = torch.tensor([200.0], dtype=torch.float64)
    for reset in ("soft", "hard"):
        p = HHParameters.from_spec(HHSpec(V_reset=-70.0, spk_reset=reset))
        z, new = hh_step(I, state, p, 1e-5)
        _, plain = hh_step(I, state, HHParameters(), 1e-5)
        assert z.item() == 1.0
        expected = plain.V - 90.0 if reset == "soft" else torch.full_like(plain.V, -70.0)
        torch.testing.assert_close(new.V, expected)
        (grad,) = torch.autograd.grad(new.V.sum(), V_old)
        if reset == "hard":
            assert grad.item() == 0.0
        else:
            (plain_grad,) = torch.autograd.grad(plain.V.sum(), V_old)
            assert grad.item() != plain_grad.item()  # the spike's surrogate path contributes


def test_heterogeneous_parameters_and_batches():
    gL = torch.linspace(0.01, 0.3, 6, dtype=torch.float64)
    spec = HHSpec(gL=gL.numpy())
    cell = HHCell(p=spec, dt=1e-5, V_init=-65.0)
    _, state = cell(torch.zeros(3, 2, 6, dtype=torch.float64))
    for j in range(6):
        single = HHCell(p=HHSpec(gL=float(gL[j])), dt=1e-5, V_init=-65.0)
        _, s = single(torch.zeros(1, dtype=torch.float64))
        torch.testing.assert_close(state.V[1, 1, j], s.V[0])
    with pytest.raises(ValueError, match="6 neurons"):
        cell(torch.zeros(3, 5, dtype=torch.float64))


def test_norse_sequential_state_and_lift():
    norse = pytest.importorskip("norse.torch")
    torch.manual_seed(0)
    model = norse.SequentialState(torch.nn.Linear(4, 8), HHCell(dt=1e-5, V_init=-65.0),
                                  torch.nn.Linear(8, 2))
    x = torch.randn(3, 4)
    state = None
    for _ in range(5):
        out, state = model(x * 50, state)
    assert out.shape == (3, 2) and isinstance(state[1], HHState)
    lifted = norse.Lift(HHCell(dt=1e-5, V_init=-65.0))
    spikes, _ = lifted(torch.full((20, 2, 3), 20.0))
    assert spikes.shape == (20, 2, 3)


def test_sequence_module_equals_cell_loop_and_recurrent_shapes():
    I = torch.rand(50, 2, 5, dtype=torch.float64) * 20
    seq = HH(dt=1e-5, V_init=-65.0)
    cell = HHCell(dt=1e-5, V_init=-65.0)
    z_seq, s_seq = seq(I)
    state, zs = None, []
    for t in range(50):
        z, state = cell(I[t], state)
        zs.append(z)
    torch.testing.assert_close(z_seq, torch.stack(zs))
    torch.testing.assert_close(s_seq.V, state.V)
    torch.manual_seed(0)
    rec = HHRecurrentCell(3, 4, dt=1e-5, V_init=-65.0)
    z, st = rec(torch.rand(2, 3))
    assert z.shape == (2, 4) and st.V.shape == (2, 4)
    assert torch.all(torch.diagonal(rec.recurrent_weights) == 0)
    seq_rec = HHRecurrent(3, 4, dt=1e-5, V_init=-65.0, record_states=True)
    z, st = seq_rec(torch.rand(7, 2, 3) * 30)
    assert z.shape == (7, 2, 4) and st.V.shape == (7, 2, 4)


def test_float32_and_float64_parameters_follow_the_input():
    cell = HHCell(dt=1e-5, V_init=-65.0)
    for dtype in (torch.float32, torch.float64):
        z, s = cell(torch.zeros(4, dtype=dtype))
        assert z.dtype == dtype and s.V.dtype == dtype


def test_torch_compile_gives_the_same_result():
    cell = HHCell(dt=1e-5, V_init=-65.0)
    compiled = torch.compile(cell, backend="eager", fullgraph=False)
    I = torch.full((2, 3), 15.0, dtype=torch.float64)
    state_a = state_b = None
    for _ in range(30):
        za, state_a = cell(I, state_a)
        zb, state_b = compiled(I, state_b)
    torch.testing.assert_close(state_a.V, state_b.V)


@pytest.mark.slow
def test_torch_compile_inductor():
    cell = HHCell(dt=1e-5, V_init=-65.0)
    compiled = torch.compile(cell)
    I = torch.full((4,), 15.0, dtype=torch.float64)
    state_a = state_b = None
    for _ in range(10):
        _, state_a = cell(I, state_a)
        _, state_b = compiled(I, state_b)
    torch.testing.assert_close(state_a.V, state_b.V, rtol=1e-12, atol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    cell = HHCell(dt=1e-5, V_init=-65.0)
    I = torch.full((3,), 12.0, dtype=torch.float64)
    _, s_cpu = cell(I)
    _, s_gpu = cell(I.cuda())
    torch.testing.assert_close(s_gpu.V.cpu(), s_cpu.V)


def test_bad_input_gives_clear_errors():
    cell = HHCell(dt=1e-5, V_init=-65.0)
    _, state = cell(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="does not match"):
        cell(torch.zeros(4, 3), state)
    with pytest.raises(TypeError, match="must be real"):
        cell(torch.zeros(2, 3, dtype=torch.complex64))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        cell([[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="NaN"):
        HHCell(V_init=float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        HHCell(V_init=torch.tensor([-65.0, float("inf")]))
    with pytest.raises(ValueError, match="dt must be a positive"):
        HHCell(dt=0.0)
    with pytest.raises(ValueError, match="dt must be a positive"):
        HHCell(dt=float("nan"))
    with pytest.raises(ValueError, match="in seconds"):
        HHCell(dt=0.01 * 1e3)
    with pytest.raises(TypeError, match="HHSpec or a parameters"):
        HHCell(p={"gL": 0.3})
    with pytest.raises(ValueError, match="C must be > 0"):
        HHCell(p=HHParameters(C=torch.tensor(-1.0)))
    with pytest.raises(ValueError, match="spk_reset"):
        HHCell(p=HHParameters(spk_reset="bounce"))
    with pytest.raises(ValueError, match="NaN"):
        HHCell(p=HHParameters(gL=torch.tensor(float("nan"))))
    with pytest.raises(ValueError, match="T >= 1"):
        HH(dt=1e-5)(torch.zeros(0, 3))


def test_another_model_is_a_new_definition_not_new_code():
    # The reference HH model with an extra slow potassium-like current and shifted m rates.
    model = ModelDefinition(
        name="hh_test_variant",
        parameters=HODGKIN_HUXLEY.parameters + (
            HODGKIN_HUXLEY.parameter("gK").__class__("gM", 0.5, "mS", "slow K"),),
        gates=HODGKIN_HUXLEY.gates + (
            GateDefinition.from_steady_state("w", "1/(1 + exp(-(V + 35)/10))", "100"),),
        channels=HODGKIN_HUXLEY.channels + (ChannelDefinition("M", "gM*w", "EK"),),
    )
    spec = HHSpec(model=model)
    p = parameters_type(model).from_spec(spec)
    module = HH(p=spec, dt=1e-5, V_init=-65.0, record_states=True)
    spikes, states = module(torch.full((500, 2), 10.0, dtype=torch.float64))
    assert set(states._fields) == {"V", "m", "h", "n", "w"}
    assert torch.isfinite(states.V).all()
    assert p.gM.item() == 0.5
