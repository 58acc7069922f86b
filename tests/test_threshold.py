"""A spike threshold of 0 mV (NEURON's and Jaxley's usual choice) on every backend, and the
surrogate's own scale ``V_scale`` (issue 26)."""

import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.network import CurrentInput, NetworkSpec, Population
from hh_plugin.torch import HH, HHCell
from hh_plugin.torch.functional import HHParameters, hh_step, initial_state
from hh_plugin.torch.fused.cpp import compiler_available
from hh_plugin.torch.fused.step import hh_step_fused
from hh_plugin.torch.network import NetworkModule

needs_compiler = pytest.mark.skipif(compiler_available() is not None,
                                    reason="no C++ compiler for the fused kernels")

DT_MS, STEPS = 0.01, 3000
CURRENTS = np.array([0.0, 2.0, 5.0, 7.0, 10.0, 20.0])  # uA, constant, one per neuron
V0 = -65.0
SPEC = HHSpec(V_th=0.0)


def _input():
    return torch.tensor(np.tile(CURRENTS, (STEPS, 1)), dtype=torch.float64)


def _run_hh(path):
    module = HH(p=SPEC, dt=DT_MS * 1e-3, V_init=V0, path=path, record_states=("V",))
    with torch.no_grad():
        z, states = module(_input())
    return z.numpy(), states.V.numpy()


def _crossings(V):
    """Steps in which V crosses 0 mV upwards (V before < 0 <= V after), from a trace."""
    before = np.vstack([np.full((1, V.shape[1]), V0), V[:-1]])
    return ((before < 0.0) & (V >= 0.0)).astype(float)


@pytest.fixture(scope="module")
def naive_run():
    return _run_hh("naive")


def test_zero_threshold_spikes_are_the_upward_zero_crossings(naive_run):
    z, V = naive_run
    assert z.sum() >= 8 and (z.sum(0) > 0).sum() >= 4  # a real spiking case
    np.testing.assert_array_equal(z, _crossings(V))


@needs_compiler
def test_zero_threshold_same_spike_steps_on_the_fused_kernel_and_the_cell(naive_run):
    z, V = naive_run
    z_fused, V_fused = _run_hh("fused_cpp")
    np.testing.assert_array_equal(z_fused, z)
    assert np.abs(V_fused - V).max() <= 1e-8
    cell = HHCell(p=SPEC, dt=DT_MS * 1e-3, V_init=V0)  # the fused single step on the CPU
    state, rows = None, []
    with torch.no_grad():
        for row in _input():
            spike, state = cell(row, state)
            rows.append(spike.numpy())
    np.testing.assert_array_equal(np.array(rows), z)


@pytest.mark.slow
def test_zero_threshold_same_spike_steps_on_the_compiled_path(naive_run):
    z_compiled = HH(p=SPEC, dt=DT_MS * 1e-3, V_init=V0, path="compiled")(_input())[0]
    np.testing.assert_array_equal(z_compiled.detach().numpy(), naive_run[0])


def _brian2_raster(b2, spec, **options):
    """Spike raster of the CURRENTS neurons of ``spec`` in Brian2, and the group."""
    from hh_plugin.brian2 import neuron_group

    stim = b2.TimedArray(np.tile(CURRENTS, (STEPS, 1)) * b2.uA, dt=DT_MS * b2.ms)
    group = neuron_group(len(CURRENTS), spec, current="stim(t, i)", V_init=V0,
                         dt=DT_MS * b2.ms, namespace={"stim": stim}, **options)
    monitor = b2.SpikeMonitor(group)
    b2.run(STEPS * DT_MS * b2.ms)
    raster = np.zeros((STEPS, len(CURRENTS)))
    raster[np.round(np.asarray(monitor.t / b2.ms) / DT_MS).astype(int),
           np.asarray(monitor.i)] = 1
    return raster, group


def test_zero_threshold_same_spike_steps_on_brian2(naive_run, numpy_target):
    raster, _ = _brian2_raster(numpy_target, SPEC)
    np.testing.assert_array_equal(raster, naive_run[0])


@pytest.mark.parametrize("threshold", ["V > 0*mV", "V >= 0 * volt", "V>0.0*mV"])
def test_brian2_threshold_condition_is_the_models_threshold(naive_run, numpy_target,
                                                            threshold):
    # issue 19: neuron_group(threshold='V > 0*mV') was refused; it is the spec's threshold
    # level, with the model's rising-edge rule, so the spikes are those of HHSpec(V_th=0)
    raster, group = _brian2_raster(numpy_target, HHSpec(), threshold=threshold)
    assert float(group.V_th / numpy_target.mV) == 0.0
    np.testing.assert_array_equal(raster, naive_run[0])


@pytest.mark.parametrize("threshold", ["V > V_th and t > 5*ms", "V < -80*mV", "m > 0.5",
                                       "V > 20*ms"])
def test_other_brian2_threshold_conditions_are_refused_with_the_reason(numpy_target,
                                                                       threshold):
    from hh_plugin.brian2 import neuron_group

    with pytest.raises((TypeError, ValueError), match="threshold"):
        neuron_group(3, HHSpec(), threshold=threshold)


@pytest.mark.parametrize("path", ["naive", pytest.param("fused", marks=needs_compiler)])
def test_zero_threshold_same_spike_steps_in_the_network_module(naive_run, path):
    net = NetworkSpec([Population("P", len(CURRENTS), spec=SPEC, initial={"V": V0})], [],
                      [CurrentInput("P", CURRENTS)], dt=DT_MS)
    with torch.no_grad():
        out = NetworkModule(net, dtype=torch.float64, path=path)(steps=STEPS, record=("V",))
    np.testing.assert_array_equal(out.spikes["P"].numpy(), naive_run[0])
    assert np.abs(out.traces["P"]["V"].numpy() - naive_run[1]).max() <= 1e-8


@pytest.mark.parametrize("step", ["torch", pytest.param("fused", marks=needs_compiler)])
def test_zero_threshold_gradient_of_one_step_is_the_surrogate(step):
    r"""One step from just below 0 mV: :math:`\partial z/\partial I = \alpha \max(0, w -
    |V'|/V_s)/V_s \cdot [V < 0] \cdot \partial V'/\partial I` with the default scale
    :math:`V_s` = 1 mV, from the torch step's autograd and the fused step's adjoint."""
    p = HHParameters.from_spec(SPEC)
    V = torch.tensor([-0.8, -0.4, -2.0, -5.0, 0.3], dtype=torch.float64)
    state = initial_state(p, (5,), V=V, dtype=torch.float64, m=0.6, h=0.5, n=0.35)
    I = torch.full((5,), 10.0, dtype=torch.float64, requires_grad=True)
    z, new = hh_step(I, state, p, 1e-6)
    (dV_dI,) = torch.autograd.grad(new.V.sum(), I)
    V_new = new.V.detach()
    expected = 0.3 * torch.clamp(1.0 - V_new.abs(), min=0.0) * (V < 0) * dV_dI
    assert int((expected != 0).sum()) == 2  # two neurons inside the surrogate's window
    run = hh_step if step == "torch" else hh_step_fused
    z, _ = run(I, state, p, 1e-6)
    (grad,) = torch.autograd.grad(z.sum(), I)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=0.0)


@needs_compiler
@pytest.mark.parametrize("V_th, V_scale", [(0.0, None), (0.0, 20.0), (20.0, 5.0), (-10.0, None)])
def test_threshold_and_scale_gradients_agree_between_autograd_and_the_fused_adjoint(V_th,
                                                                                    V_scale):
    """The fused kernel's generated adjoint (V_scale a parameter of its own, the default
    |V_th| passed on to V_th by autograd) gives the naive path's gradients, to the input
    and to the threshold, in float64 over 2,000 steps."""
    I = torch.tensor([2.0, 5.0, 7.0, 10.0, 20.0], dtype=torch.float64).expand(2000, 5)
    grads = {}
    for path in ("naive", "fused_cpp"):
        p = HHParameters.from_spec(HHSpec(V_th=V_th, V_scale=V_scale))
        V_th_leaf = p.V_th.clone().requires_grad_(True)
        x = I.clone().requires_grad_(True)
        z, _ = HH(p=p._replace(V_th=V_th_leaf), dt=1e-5, V_init=-65.0, path=path)(x)
        z.sum().backward()
        grads[path] = (z.detach(), x.grad, V_th_leaf.grad)
    (z0, gI0, gth0), (z1, gI1, gth1) = grads["naive"], grads["fused_cpp"]
    assert torch.equal(z0, z1) and z0.sum() > 0
    assert gI0.abs().max() > 0
    torch.testing.assert_close(gI1, gI0, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gth1, gth0, rtol=1e-9, atol=1e-12)


def test_the_scale_changes_gradients_but_no_spike():
    """V_scale shapes the surrogate only: the same spikes with any scale, other gradients."""
    I = torch.tensor([5.0, 10.0, 20.0], dtype=torch.float64).expand(1500, 3)
    out = {}
    for scale in (None, 20.0):
        x = I.clone().requires_grad_(True)
        z, _ = HH(p=HHSpec(V_th=0.0, V_scale=scale), dt=1e-5, V_init=-65.0, path="naive")(x)
        z.sum().backward()
        out[scale] = (z.detach(), x.grad)
    assert torch.equal(out[None][0], out[20.0][0])
    assert not torch.allclose(out[None][1], out[20.0][1])


@pytest.mark.parametrize("V_scale", [None, 5.0])
def test_zero_threshold_and_scale_travel_in_the_file(tmp_path, V_scale):
    """Format 1.0: ``spec.surrogate.scale`` is written only when V_scale is set (a file
    without it reads as before); a 0 mV threshold round-trips; the metadata is valid."""
    import h5py

    from hh_plugin.export import load, save
    from hh_plugin.export.schema import validate

    spec = HHSpec(V_th=0.0, V_scale=V_scale)
    save(tmp_path / "s.h5", spec)
    with h5py.File(tmp_path / "s.h5") as f:
        import json
        meta = json.loads(f.attrs["metadata"])
    assert validate(meta) == []
    surrogate = meta["spec"]["surrogate"]
    assert ("scale" in surrogate) == (V_scale is not None)
    if V_scale is not None:
        assert surrogate["scale"] == {"value": 5.0, "unit": "mV"}
    back = load(tmp_path / "s.h5").spec
    assert back == spec and back.V_th == 0.0 and back.V_scale == V_scale


def test_zero_threshold_and_scale_travel_in_the_network_file(tmp_path):
    from hh_plugin.export import load_network, save_network

    pop_spec = HHSpec(V_th=0.0, V_scale=8.0)
    net = NetworkSpec([Population("P", 3, spec=pop_spec, initial={"V": V0})], [],
                      [CurrentInput("P", CURRENTS[:3])], dt=DT_MS)
    save_network(tmp_path / "n.h5", net)
    assert load_network(tmp_path / "n.h5").spec.populations["P"].spec == pop_spec


def test_a_file_whose_definition_declares_the_threshold_nonzero_still_loads(tmp_path,
                                                                            monkeypatch):
    """Files written before V_scale carry ``V_th`` with ``"constraint": "nonzero"`` in
    their model definition; they load as the registered model."""
    from hh_plugin.export import load, save
    from hh_plugin.model import HODGKIN_HUXLEY

    old_to_dict = type(HODGKIN_HUXLEY).to_dict

    def legacy(model):
        data = old_to_dict(model)
        for p in data["parameters"]:
            if p["name"] == model.threshold:
                p["constraint"] = "nonzero"
        return data

    monkeypatch.setattr(type(HODGKIN_HUXLEY), "to_dict", legacy)
    save(tmp_path / "old.h5", HHSpec(gL=0.05))
    monkeypatch.undo()
    record = load(tmp_path / "old.h5")
    assert record.spec == HHSpec(gL=0.05) and record.spec.model is HODGKIN_HUXLEY
