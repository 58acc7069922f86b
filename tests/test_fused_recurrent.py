"""The fused recurrent kernel (``hh_plugin.torch.fused.recurrent``) against the step loop.

Tiny sizes and one kernel build (the reference model, exponential Euler): the forward gives
the step loop's spikes on the same steps and its states to round-off (float64); the
backward gives autograd's gradients through the step loop (input, both weight matrices,
initial state, trainable parameters) and, on a run without spikes, the finite-difference
derivatives (``torch.autograd.gradcheck``).
"""

from __future__ import annotations

import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.torch import HHParameters, HHRecurrent, HHRecurrentState, initial_state
from hh_plugin.torch.fused import PathUnavailable
from hh_plugin.torch.fused import recurrent
from hh_plugin.torch.fused.cpp import compiler_available

pytestmark = pytest.mark.skipif(compiler_available() is not None,
                                reason=f"no C++ toolchain: {compiler_available()}")

DT = 2.5e-5  # s (0.025 ms)
T, B, N_IN, H = 160, 2, 3, 5


def _layer(spec=None, **kwargs):
    torch.manual_seed(1)
    layer = HHRecurrent(N_IN, H, p=spec, dt=DT, V_init=-65.0, **kwargs).double()
    with torch.no_grad():  # strong enough that most neurons fire, with recurrent kicks
        layer.input_weights.copy_(torch.rand(H, N_IN, dtype=torch.float64) * 30)
        layer.recurrent_weights.copy_(torch.randn(H, H, dtype=torch.float64) * 20)
    return layer


def _input():
    torch.manual_seed(2)
    return torch.rand(T, B, N_IN, dtype=torch.float64)


def _run(layer, path, x, state=None):
    layer.path = path
    return layer(x, state)


@pytest.mark.parametrize("reset", [None, "soft", "hard"])
def test_forward_matches_the_step_loop(reset):
    spec = HHSpec() if reset is None else HHSpec(V_reset=-70.0, spk_reset=reset)
    layer = _layer(spec, record_states=True)
    x = _input()
    z_fused, traj_fused = _run(layer, "fused_cpp", x)
    z_loop, traj_loop = _run(layer, "naive", x)
    assert z_loop.sum() >= 10, "the case should spike"  # recurrent spikes matter below
    assert torch.equal(z_fused, z_loop)                 # the same spike steps
    assert type(traj_fused) is HHRecurrentState and torch.equal(traj_fused.z, z_fused)
    for a, b in zip(traj_fused, traj_loop):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    # the final state, and only V recorded
    layer.record_states = False
    _, final = _run(layer, "fused_cpp", x)
    for a, b in zip(final, traj_loop):
        torch.testing.assert_close(a, b[-1], rtol=0, atol=1e-9)
    layer.record_states = ("V",)
    _, part = _run(layer, "fused_cpp", x)
    torch.testing.assert_close(part.V, traj_loop.V, rtol=0, atol=1e-9)
    assert part.m is None and part.z is None


def _gradients(layer, path, x):
    layer.path = path
    layer.zero_grad()
    x = x.clone().requires_grad_(True)
    state = layer.recurrent_initial_state(x[0])
    V0 = state.V
    weights = torch.linspace(0.0, 1.0, T, dtype=torch.float64)[:, None, None]
    z, s = layer(x, state)
    loss = (z * weights).sum() + (s.V * 1e-2).pow(2).sum() + s.n.sum() + s.z.sum()
    loss.backward()
    return [x.grad, layer.input_weights.grad, layer.recurrent_weights.grad, V0.grad,
            *(param.grad for param in layer.parameters() if param.ndim == 0)]


def test_gradients_match_autograd_through_the_step_loop():
    layer = _layer(HHSpec(V_reset=-70.0, spk_reset="soft"), trainable=("gNa", "EL"),
                   checkpoint=7)  # checkpoints that do not divide T
    x = _input()
    fused = _gradients(layer, "fused_cpp", x)
    loop = _gradients(layer, "naive", x)
    assert len(fused) == 6  # x, W_in, W_rec, V0, gNa (log), EL
    for name, a, b in zip(["x", "W_in", "W_rec", "V0", "gNa", "EL"], fused, loop):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)


def test_finite_differences_on_a_run_without_spikes():
    # below threshold the surrogate is zero, so the gradient is the derivative of the
    # forward itself; z0 = 1 makes W_rec act on the first step
    torch.manual_seed(3)
    x = torch.rand(6, 1, 2, dtype=torch.float64, requires_grad=True)
    w_in = (torch.rand(3, 2, dtype=torch.float64) * 2).requires_grad_(True)
    w_rec = torch.randn(3, 3, dtype=torch.float64).requires_grad_(True)
    V0 = torch.full((1, 3), -66.0, dtype=torch.float64, requires_grad=True)
    gNa = torch.tensor(120.0, dtype=torch.float64, requires_grad=True)

    def run(x, w_in, w_rec, V0, gNa):
        p = HHParameters(gNa=gNa)
        neuron = initial_state(p, (1, 3), V=-66.0, dtype=torch.float64)
        state = HHRecurrentState(V0, *neuron[1:], torch.ones(1, 3, dtype=torch.float64))
        z, s = recurrent.hh_recurrent_sequence(x, state, w_in, w_rec, p, 1e-5,
                                               path="fused_cpp", checkpoint=4)
        assert z.sum() == 0
        return s.V, s.m, s.h

    assert torch.autograd.gradcheck(run, (x, w_in, w_rec, V0, gNa), eps=1e-6, atol=1e-7,
                                    rtol=1e-5)


def test_the_layer_uses_the_kernel_by_default(monkeypatch):
    calls = []
    op = recurrent.fused_recurrent

    def spy(*args):
        calls.append(args[0])
        return op(*args)

    monkeypatch.setattr(recurrent, "fused_recurrent", spy)
    layer = _layer()
    x = _input()[:20]
    z_auto, _ = layer(x)                         # path='auto', CPU float64
    assert len(calls) == 1 and calls[0].startswith("hodgkin_huxley-exponential_euler-")
    z_fused, _ = _run(layer, "fused_cpp", x)
    assert torch.equal(z_auto, z_fused) and len(calls) == 2
    _run(layer, "naive", x)
    layer.float()
    layer.path = "auto"
    layer(x.float())                               # float32: the kernel too
    assert len(calls) == 3
    layer.path = "auto"
    layer(x.half())                                # no half kernel: the step loop
    assert len(calls) == 3
    with pytest.raises(PathUnavailable, match="no 'triton' path"):
        _run(layer, "triton", x.float())
    with pytest.raises(ValueError, match="unknown path"):
        HHRecurrent(2, 3, path="fast")


def test_the_custom_operator_registration():
    # fake (meta) implementation, schema and autograd registration, as for hh_plugin's
    # other kernels (torch.compile and torch.export trace the operator, not the kernel)
    torch.manual_seed(4)
    p = HHParameters()
    key = recurrent.kernel_key(HHParameters.model)
    params = recurrent._flat_parameters(p, torch.zeros((), dtype=torch.float64), (2, 3))
    U = (torch.rand(5, 2, 3, dtype=torch.float64) * 20).requires_grad_(True)
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    z0 = torch.zeros(2, 3, dtype=torch.float64)
    states = list(initial_state(p, (6,), V=-65.0, dtype=torch.float64))
    torch.library.opcheck(recurrent.fused_recurrent,
                          (key, U, w, z0, states, params, 0.01, 0, 2, [0]),
                          test_utils=("test_schema", "test_faketensor",
                                      "test_autograd_registration"))


def test_bad_weights_are_named():
    p = HHParameters()
    x = torch.zeros(4, 1, 2, dtype=torch.float64)
    state = HHRecurrentState(*initial_state(p, (1, 3), V=-65.0, dtype=torch.float64),
                             torch.zeros(1, 3, dtype=torch.float64))
    w_in, w_rec = torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"recurrent_weights of shape \(3, 2\)"):
        recurrent.hh_recurrent_sequence(x, state, w_in, w_in, p)
    with pytest.raises(ValueError, match=r"input_weights of shape \(2, 3\)"):
        recurrent.hh_recurrent_sequence(x, state, w_in.t(), w_rec, p)
    with pytest.raises(ValueError, match=r"state.z of shape \(1, 3\) does not match"):
        recurrent.hh_recurrent_sequence(torch.zeros(4, 2, 2, dtype=torch.float64), state,
                                        w_in, w_rec, p)
    with pytest.raises(ValueError, match="T >= 1"):
        HHRecurrent(2, 3)(torch.zeros(0, 1, 2))
