"""The fused single step (hh_plugin.torch.fused.step) that HHCell runs on the CPU.

* issue 14, item 1: float32 spikes (and states) of HHCell stepped in a loop are identical
  to those of the HH sequence module (they differed where the plain torch step and the
  kernel round differently: the kernel's fused multiply-adds, its operation order and its
  exp/expm1; see docs/performance.md);
* the cell still reproduces the reference files (float64 to round-off, float32 spikes);
* backpropagation through a loop of fused steps equals autograd through ``hh_step``
  (float64, 1e-9 relative) for the input, the initial state and every parameter;
* the cell falls back to the plain torch step where the fused step does not apply
  (half precision, mixed dtypes, graph capture, no compiler), with the same results.

The extension is the one the fused sequence tests build (compiled once, cached).
"""

import warnings

import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.torch import HH, HHCell, HHState, hh_step, initial_state
from hh_plugin.torch.functional.hh import hh_feed_forward_step
from hh_plugin.torch.functional.parameters import as_parameters
from hh_plugin.torch.fused import PathUnavailable, step as fused_step
from hh_plugin.torch.fused.cpp import compiler_available
from hh_plugin.torch.fused.step import fused_step_unavailable_reason, hh_step_auto, hh_step_fused

pytestmark = pytest.mark.skipif(compiler_available() is not None,
                                reason=f"no C++ toolchain: {compiler_available()}")


def _heterogeneous(n, **options):
    rng = np.random.default_rng(3)
    return HHSpec(gNa=rng.uniform(100, 140, n), gK=rng.uniform(30, 40, n),
                  gL=rng.uniform(0.01, 0.3, n), V_th=rng.uniform(0, 30, n),
                  C=rng.uniform(0.8, 1.2, n), **options)


SPECS = {
    "default": lambda n: HHSpec(),
    "heterogeneous": lambda n: _heterogeneous(n),
    "soft_reset": lambda n: _heterogeneous(n, V_reset=-70.0, spk_reset="soft"),
    "hard_reset": lambda n: _heterogeneous(
        n, V_reset=np.random.default_rng(5).uniform(-80, -60, n), spk_reset="hard"),
}


def _case(dtype, spec, T, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    I = torch.rand((T,) + shape, generator=g, dtype=dtype) * 25.0 - 2.0
    V0 = -75.0 + 20.0 * torch.rand(shape, generator=g, dtype=dtype)
    return I, V0


def _cell_loop(cell, I, state):
    zs = []
    with torch.no_grad():
        for x in I:
            z, state = cell(x, state)
            zs.append(z)
    return torch.stack(zs), state


# --------------------------------------------------------------------------- identity
# (steps, population shape, seed) of each case
IDENTITY_CASES = {"default": (500, (32, 256), 3), "soft_reset": (300, (8, 256), 0),
                  "hard_reset": (300, (8, 256), 0)}


@pytest.mark.parametrize("case", sorted(IDENTITY_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cell_loop_identical_to_sequence_module(case, dtype):
    # With the plain torch step, the cell's float32 spikes differed from the module's in
    # 2 of 5,859 entries (default) and 71 of 13,152 (soft reset), and the final V in
    # about 70 % of the neurons in every case (by round-off in float64).
    T, shape, seed = IDENTITY_CASES[case]
    spec = SPECS[case](shape[-1])
    I, V0 = _case(dtype, spec, T=T, shape=shape, seed=seed)
    seq = HH(p=spec, dt=1e-5, V_init=V0)
    cell = HHCell(p=spec, dt=1e-5, V_init=V0)
    with torch.no_grad():
        z_seq, s_seq = seq(I)
    z_cell, s_cell = _cell_loop(cell, I, None)
    assert z_seq.sum() > 100
    assert torch.equal(z_cell, z_seq), f"{int((z_cell != z_seq).sum())} spike entries differ"
    for name, a, b in zip(s_seq._fields, s_cell, s_seq):
        assert torch.equal(a, b), name


def test_cell_loop_identical_to_sequence_module_with_gradients_and_odd_sizes():
    # 3 x 17 neurons: partial blocks of lanes; float32 with autograd on both sides
    spec = SPECS["soft_reset"](17)
    I, V0 = _case(torch.float32, spec, T=200, shape=(3, 17), seed=2)
    I = I.requires_grad_(True)
    z_seq, s_seq = HH(p=spec, dt=2e-5, V_init=V0)(I)
    cell, state, zs = HHCell(p=spec, dt=2e-5, V_init=V0), None, []
    for x in I:
        z, state = cell(x, state)
        zs.append(z)
    assert type(z.grad_fn).__name__.startswith("FusedStepFunction")
    assert torch.equal(torch.stack(zs), z_seq) and torch.equal(state.V, s_seq.V)


def test_large_population_runs_on_several_threads_and_agrees():
    # more neurons than one thread takes in the single-step op (STEP_GRAIN)
    spec = HHSpec()
    I, V0 = _case(torch.float32, spec, T=5, shape=(3, 20000))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            z_seq, s_seq = HH(p=spec, dt=1e-5, V_init=V0)(I)
        z_cell, s_cell = _cell_loop(HHCell(p=spec, dt=1e-5, V_init=V0), I, None)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(z_cell, z_seq) and torch.equal(s_cell.V, s_seq.V)


# --------------------------------------------------------------------------- reference
def _reference_state(ref, dtype):
    return HHState(*(torch.tensor(ref[k + "0"], dtype=dtype) for k in "Vmhn"))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cell_reproduces_reference_files(reference, dtype):
    cell = HHCell(p=HHSpec(), dt=float(reference["dt"]) * 1e-3)
    I = torch.tensor(reference["I"], dtype=dtype)
    state = _reference_state(reference, dtype)
    assert fused_step_unavailable_reason(I[0], state, cell.p) is None  # the fused step runs
    zs, Vs, gates = [], [], {g: [] for g in "mhn"}
    with torch.no_grad():
        for x in I:
            z, state = cell(x, state)
            zs.append(z)
            Vs.append(state.V)
            for g in "mhn":
                gates[g].append(getattr(state, g))
    np.testing.assert_array_equal(torch.stack(zs).numpy(), reference["spike"])
    V = torch.stack(Vs).double().numpy()
    if dtype == torch.float64:
        assert np.abs(V - reference["V"]).max() <= 1e-6
        for g in "mhn":
            assert np.abs(torch.stack(gates[g]).numpy() - reference[g]).max() <= 1e-9
    else:
        assert np.abs(V - reference["V"]).max() <= 0.1


# --------------------------------------------------------------------------- gradients
def _bptt(step, spec, T=300, shape=(2, 7), dt=2e-5, loss_kind="all"):
    dtype = torch.float64
    g = torch.Generator().manual_seed(1)
    p = as_parameters(spec).to(dtype=dtype)
    leaves = {}
    for name in type(p).model.parameter_names + ("V_reset",):
        value = getattr(p, name)
        if value is not None:
            leaves[name] = value.clone().requires_grad_(True)
    p = p._replace(**leaves)
    I = (torch.rand((T,) + shape, generator=g, dtype=dtype) * 15).requires_grad_(True)
    V0 = -65.0 + 5 * torch.rand(shape, generator=g, dtype=dtype)
    s0 = HHState(*(s.detach().clone().requires_grad_(True)
                   for s in initial_state(p, shape, V=V0, dtype=dtype)))
    w = torch.rand((T,) + shape, generator=g, dtype=dtype)
    state, loss, zs = s0, 0.0, []
    for t in range(T):
        z, state = step(I[t], state, p, dt)
        zs.append(z)
        if loss_kind != "states":
            loss = loss + (z * w[t]).sum()
    if loss_kind != "spikes":
        loss = loss + 1e-2 * state.V.sum() + state.m.sum() + 2 * state.h.sum()
    names = ["I", "V0", "m0", "h0", "n0"] + list(leaves)
    grads = torch.autograd.grad(loss, [I, *s0, *leaves.values()], allow_unused=True)
    return torch.stack(zs).detach(), dict(zip(names, grads))


@pytest.mark.parametrize("case", sorted(SPECS))
def test_fused_step_gradients_equal_autograd(case):
    spec = SPECS[case](7)
    z0, g0 = _bptt(hh_step, spec)
    z1, g1 = _bptt(hh_step_fused, spec)
    assert z0.sum() > 5
    assert torch.equal(z0, z1)
    for name in g0:
        a, b = g0[name], g1[name]
        scale = a.abs().max().item()
        assert scale > 0, name
        assert (a - b).abs().max().item() <= 1e-9 * scale, name


@pytest.mark.parametrize("loss_kind", ["spikes", "states"])
def test_fused_step_gradients_when_some_outputs_are_unused(loss_kind):
    spec = SPECS["soft_reset"](7)
    _, g0 = _bptt(hh_step, spec, T=60, loss_kind=loss_kind)
    _, g1 = _bptt(hh_step_fused, spec, T=60, loss_kind=loss_kind)
    for name in g0:
        if g0[name] is None:
            assert g1[name] is None or not g1[name].any(), name
            continue
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-9, atol=1e-12)


def test_surrogate_options_get_no_gradient_as_in_the_torch_step():
    p = as_parameters(HHSpec()).to(dtype=torch.float64)
    alpha = p.alpha.clone().requires_grad_(True)
    p = p._replace(alpha=alpha)
    I = torch.full((4,), 10.0, dtype=torch.float64, requires_grad=True)
    s0 = initial_state(p, (4,), V=19.9, dtype=torch.float64)
    z, s = hh_step_fused(I, s0, p, 1e-5)
    (z.sum() + s.V.sum()).backward()
    assert alpha.grad is None and I.grad is not None


# --------------------------------------------------------------------------- dispatch
def test_broadcast_state_and_per_neuron_parameters_agree_with_the_torch_step():
    spec = _heterogeneous(5)
    p = as_parameters(spec).to(dtype=torch.float64)
    state = initial_state(p, (5,), V=-65.0, dtype=torch.float64)
    state = state._replace(V=torch.tensor(-60.0, dtype=torch.float64))  # 0-d V
    I = torch.rand(4, 5, dtype=torch.float64) * 20
    with torch.no_grad():
        za, sa = hh_feed_forward_step(I, state, p, 1e-5)
        zb, sb = hh_step(I, state, p, 1e-5)
    assert za.shape == zb.shape == (4, 5) and torch.equal(za, zb)
    for a, b in zip(sa, sb):  # the fused step gives every state the common shape
        assert a.shape == (4, 5)
        torch.testing.assert_close(a, torch.broadcast_to(b, a.shape), rtol=1e-13, atol=1e-12)


def test_in_place_parameter_change_is_seen():
    spec = _heterogeneous(6)
    p = as_parameters(spec).to(dtype=torch.float64)
    s0 = initial_state(p, (2, 6), V=-65.0, dtype=torch.float64)
    I = torch.full((2, 6), 10.0, dtype=torch.float64)
    with torch.no_grad():
        _, before = hh_step_fused(I, s0, p, 1e-5)
        p.gL.mul_(10.0)  # cached flat parameters must not go stale
        _, after = hh_step_fused(I, s0, p, 1e-5)
        _, expected = hh_step(I, s0, p, 1e-5)
    assert not torch.equal(before.V, after.V)
    torch.testing.assert_close(after.V, expected.V, rtol=1e-13, atol=1e-12)


def test_where_the_fused_step_does_not_apply_the_torch_step_runs():
    p = as_parameters(HHSpec())
    s32 = initial_state(p, (3,), V=-65.0, dtype=torch.float32)
    assert fused_step_unavailable_reason(torch.zeros(3), s32, p) is None
    assert "float16" in fused_step_unavailable_reason(torch.zeros(3, dtype=torch.float16), s32, p)
    assert "mixed" in fused_step_unavailable_reason(torch.zeros(3, dtype=torch.float64), s32, p)
    meta = HHState(*(t.to("meta") for t in s32))
    assert "meta" in fused_step_unavailable_reason(torch.zeros(3, device="meta"), meta, p)
    # half precision through the cell: the torch step, the same result as calling it
    cell = HHCell(dt=1e-5, V_init=-65.0)
    x = torch.full((3,), 10.0, dtype=torch.bfloat16)
    s0 = cell.initial_state(x)
    z, s = cell(x, s0)
    _, expected = hh_step(x, s0, cell.parameters_like(x), 1e-5)
    assert s.V.dtype == torch.bfloat16 and torch.equal(s.V, expected.V)


def test_graph_capture_traces_the_custom_operator_and_jit_the_torch_step():
    # a fresh dynamo: after test_norse_contracts' compiled loops in the same process, the
    # step's frames had hit dynamo's recompile limit and ran eagerly (issue 21, 2); which
    # files share a process depends on the parallel schedule
    torch._dynamo.reset()
    seen = []

    def probe(x, state, p, dt):
        seen.append(fused_step_unavailable_reason(x, state, p))
        return hh_step_auto(x, state, p, dt)

    p = as_parameters(HHSpec()).to(dtype=torch.float64)
    state = initial_state(p, (3,), V=-65.0, dtype=torch.float64)
    traced = torch.jit.trace(lambda x: probe(x, state, p, 1e-5)[1].V, torch.zeros(3, dtype=torch.float64),
                             check_trace=False)
    assert "torch.jit" in seen[-1]  # torch.jit cannot trace the operator: the torch step
    torch.testing.assert_close(traced(torch.zeros(3, dtype=torch.float64)),
                               hh_step(torch.zeros(3, dtype=torch.float64), state, p, 1e-5)[1].V)
    # torch.compile traces hh_plugin::fused_step (issue 21, 3): the eager fused arithmetic
    compiled = torch.compile(lambda x: probe(x, state, p, 1e-5)[1].V, backend="eager")
    x = torch.full((3,), 12.0, dtype=torch.float64)
    torch.testing.assert_close(compiled(x), hh_step_fused(x, state, p, 1e-5)[1].V, rtol=0, atol=0)
    assert seen[-1] is None


def test_without_a_compiler_the_cell_warns_once_and_steps_in_torch(monkeypatch):
    def unavailable(model):
        raise PathUnavailable("the fused C++ path needs a compiler: no C++ compiler (test)")

    monkeypatch.setattr(fused_step, "load_extension", unavailable)
    monkeypatch.setattr(fused_step, "_WARNED", set())
    cell = HHCell(dt=1e-5, V_init=-65.0)
    x = torch.full((2, 3), 10.0, dtype=torch.float64)
    s0 = cell.initial_state(x)
    with pytest.warns(RuntimeWarning, match="needs a compiler"):
        z, s1 = cell(x, s0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z, s2 = cell(x, s1)  # no second warning
    _, expected = hh_step(x, s0, cell.parameters_like(x), 1e-5)
    assert all(torch.equal(a, b) for a, b in zip(s1, expected))  # the torch step itself
