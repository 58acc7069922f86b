"""Gradient trust and training with Norse: surrogate gradients of Linear -> HH networks
against the reference gradient file and finite differences, training lowers the loss,
and the examples run (quick mode here, full runs marked slow)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

norse = pytest.importorskip("norse.torch")

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.torch import HH, HHCell, HHParameters  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load_example(name):
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is several times faster on 2 cores
    yield
    torch.set_num_threads(threads)


# --- surrogate gradients of a Linear -> HHCell chain against the reference file ----------

def _reference_chain(grad_reference):
    """``SequentialState(Linear(1, 5), HHCell)`` in float64 whose currents are the reference
    currents: a constant input 1 times weights ``I`` (the bias holds a second copy at 0)."""
    I = torch.as_tensor(grad_reference["I"], dtype=torch.float64)
    linear = torch.nn.Linear(1, 5, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(I[:, None])
        linear.bias.zero_()
    cell = HHCell(p=HHSpec(), dt=float(grad_reference["dt"]) * 1e-3,
                  V_init=float(grad_reference["V0"][0]))
    model = norse.SequentialState(linear, cell)
    x = torch.ones(1, 1, dtype=torch.float64, requires_grad=True)
    state, spikes, voltages = None, [], []
    for _ in range(int(grad_reference["steps"])):
        z, state = model(x, state)
        spikes.append(z)
        voltages.append(state[1].V)
    return model, x, torch.stack(spikes)[:, 0], torch.stack(voltages)[:, 0]


def test_linear_hhcell_chain_matches_reference_gradients(grad_reference):
    assert np.all(grad_reference["V0"] == grad_reference["V0"][0])
    model, x, spikes, V = _reference_chain(grad_reference)
    linear = model[0]
    np.testing.assert_array_equal(spikes.detach().numpy(), grad_reference["spike"])
    np.testing.assert_allclose(V.detach().numpy(), grad_reference["V"], rtol=0, atol=1e-8)

    loss_spikes = spikes.sum()
    assert loss_spikes.item() == grad_reference["loss_spike_sum"]
    g_w, g_b, g_x = torch.autograd.grad(loss_spikes, [linear.weight, linear.bias, x],
                                        retain_graph=True)
    ref = grad_reference["grad_spike_sum_wrt_I"]
    assert np.any(ref != 0)
    # the input is 1, so dL/dW = dL/db = dL/dI; dL/dx = sum_j dL/dI_j * W_j
    np.testing.assert_allclose(g_w[:, 0].numpy(), ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g_b.numpy(), ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g_x.item(), float(ref @ grad_reference["I"]), rtol=1e-10)

    loss_V = 1e-3 * V.sum()
    np.testing.assert_allclose(loss_V.item(), grad_reference["loss_V_sum_scaled"], rtol=1e-12)
    (g_b,) = torch.autograd.grad(loss_V, [linear.bias])
    np.testing.assert_allclose(g_b.numpy(), grad_reference["grad_V_sum_scaled_wrt_I"],
                               rtol=1e-8)
    # ... and the reference's own finite differences (which carry their truncation error)
    np.testing.assert_allclose(g_b.numpy(), grad_reference["fd_grad_V_sum_scaled_wrt_I"],
                               rtol=1e-5)


# --- finite differences of smooth losses -------------------------------------------------

def _hh(path, **kwargs):
    """``HH`` with the given time-loop path (``None``: the module's default)."""
    return HH(**kwargs) if path is None else HH(path=path, **kwargs)


def _smooth_loss(weight, bias, x, p, path, steps=300, dt=5e-5):
    """Mean membrane potential and mean squared V of a Linear -> HH network (float64):
    smooth functions of every parameter (no reset, no spike output in the loss)."""
    current = torch.nn.functional.linear(x, weight, bias)           # (batch, neurons) uA
    hh = _hh(path, p=p, dt=dt, V_init=-65.0, record_states=True)
    _, states = hh(current.unsqueeze(0).expand(steps, *current.shape))
    V = states.V
    return 1e-3 * V.mean() + 1e-5 * (V ** 2).mean()


def _central_difference(f, tensor, index, eps):
    with torch.no_grad():
        original = tensor[index].item()
        tensor[index] = original + eps
        up = f().item()
        tensor[index] = original - eps
        down = f().item()
        tensor[index] = original
    return (up - down) / (2 * eps)


# the Python loop of hh_step (autograd) and the module's default (a fused kernel with its
# own backward pass, where available)
PATHS = [pytest.param("naive", id="naive"), pytest.param(None, id="default")]


@pytest.mark.parametrize("path", PATHS)
def test_linear_hh_gradients_match_finite_differences(path):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 4, dtype=torch.float64, generator=gen) * 10        # 3 samples
    weight = (torch.randn(6, 4, dtype=torch.float64, generator=gen) * 1.5).requires_grad_()
    bias = torch.full((6,), 2.0, dtype=torch.float64, requires_grad=True)
    gNa = torch.tensor(120.0, dtype=torch.float64, requires_grad=True)
    gL = torch.full((6,), 0.03, dtype=torch.float64, requires_grad=True)

    def loss():
        return _smooth_loss(weight, bias, x, HHParameters(gNa=gNa, gL=gL), path)

    value = loss()
    # the currents span quiet and firing neurons, so spikes shape the loss
    with torch.no_grad():
        spikes, _ = _hh(path, p=HHSpec(), dt=5e-5, V_init=-65.0)(
            torch.nn.functional.linear(x, weight, bias).expand(300, 3, 6))
    per_neuron = spikes.sum(0)
    assert (per_neuron > 0).any() and (per_neuron == 0).any()

    grads = torch.autograd.grad(value, [weight, bias, gNa, gL])
    checks = [(weight, grads[0], (0, 1), 1e-5), (weight, grads[0], (4, 3), 1e-5),
              (bias, grads[1], (2,), 1e-5), (bias, grads[1], (5,), 1e-5),
              (gNa, grads[2], (), 1e-4), (gL, grads[3], (0,), 1e-7)]
    for tensor, grad, index, eps in checks:
        fd = _central_difference(loss, tensor, index, eps)
        assert grad[index].item() == pytest.approx(fd, rel=1e-5, abs=1e-10), (index, fd)


@pytest.mark.parametrize("path", PATHS)
def test_surrogate_gradient_reaches_the_input_only_near_threshold(path):
    """The ReLU surrogate is non-zero only for V within one V_th of V_th: a neuron whose
    membrane stays below 0 mV gets no spike-loss gradient, a firing one does."""
    I = torch.tensor([[0.5, 20.0]], dtype=torch.float64, requires_grad=True)
    hh = _hh(path, p=HHSpec(), dt=5e-5, V_init=-70.68)
    spikes, _ = hh(I.expand(100, 1, 2))
    (grad,) = torch.autograd.grad(spikes.sum(), I)
    assert spikes[:, 0, 0].sum() == 0 and spikes[:, 0, 1].sum() >= 1
    assert grad[0, 0] == 0 and grad[0, 1] != 0


# --- training lowers the loss ------------------------------------------------------------

def test_few_training_steps_lower_the_loss():
    digits = _load_example("train_digits")
    torch.manual_seed(0)
    X, y, _, _ = digits.load_data(seed=0, input_scale=60.0, quick=True)
    X, y = X[:64], y[:64]
    model = digits.build_model(hidden=64, dt_ms=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_now():
        scores, spikes = digits.run(model, X, steps=25)
        return torch.nn.functional.cross_entropy(scores, y), spikes

    with torch.no_grad():
        initial, spikes = loss_now()
    assert spikes.sum() > 0, "the HH layer must spike for the surrogate to carry gradients"
    for _ in range(8):
        loss, _ = loss_now()
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        assert model[0].weight.grad.abs().sum() > 0     # gradient reached the first layer
        optimizer.step()
    with torch.no_grad():
        final, _ = loss_now()
    assert final.item() < initial.item() - 0.05   # 2.39 -> 2.27 seen with this seed


# --- the examples ------------------------------------------------------------------------

def test_train_digits_quick(tmp_path):
    summary = _load_example("train_digits").main(["--quick", "--output-dir", str(tmp_path)])
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["spikes_per_neuron_per_sample"] > 0
    for name in ("learning_curve.png", "hh_membrane.png", "train_digits.json"):
        assert (tmp_path / name).stat().st_size > 0


def test_fit_spike_train_quick(tmp_path):
    summary = _load_example("fit_spike_train").main(["--quick", "--output-dir", str(tmp_path)])
    assert summary["loss_end"] < summary["loss_start"]
    assert (tmp_path / "fit_spike_train.png").stat().st_size > 0


@pytest.mark.slow
def test_train_digits_reaches_90_percent(tmp_path):
    summary = _load_example("train_digits").main(["--output-dir", str(tmp_path), "--no-plots"])
    assert summary["test_accuracy"] >= 0.90


@pytest.mark.slow
def test_fit_spike_train_full(tmp_path):
    summary = _load_example("fit_spike_train").main(["--output-dir", str(tmp_path),
                                                     "--no-plots"])
    assert summary["loss_end"] < 0.5 * summary["loss_start"]
