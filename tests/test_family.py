"""The model family (Wang-Buzsaki, Morris-Lecar, Traub-Miles) on both backends.

* torch (step loop and fused C++ kernel) and Brian2 reproduce BrainPy's
  ``WangBuzsakiHH`` and ``MorrisLecar`` files (dt = 0.01 ms): max |dV| <= 1e-6 mV, other
  states <= 1e-9, identical spike steps; at dt = 0.1 ms the same against the independent
  numpy implementation of ``family_reference_step.py`` (itself checked against the files);
* Traub-Miles reproduces Brian2's ``examples/COBAHH.py`` neuron written by hand;
* gradients match central finite differences, and the fused kernel equals the step loop
  forward and backward, for every model.
"""

import numpy as np
import pytest
import torch

from family_reference_step import simulate_family
from hh_plugin import HHSpec
from hh_plugin.model import (HODGKIN_HUXLEY, MORRIS_LECAR, TRAUB_MILES, WANG_BUZSAKI,
                             initial_state)
from hh_plugin.torch import HH
from hh_plugin.torch.functional.parameters import as_parameters, state_type
from hh_plugin.torch.functional.parameters import initial_state as torch_initial_state
from hh_plugin.torch.fused import hh_sequence
from hh_plugin.torch.fused.cpp import compiler_available

from conftest import DATA

b2 = pytest.importorskip("brian2")
from hh_plugin.brian2 import neuron_group  # noqa: E402

needs_compiler = pytest.mark.skipif(compiler_available() is not None,
                                    reason=f"no C++ toolchain: {compiler_available()}")

FAMILY = {"wang_buzsaki": WANG_BUZSAKI, "morris_lecar": MORRIS_LECAR}
ALL_MODELS = {"hodgkin_huxley": HODGKIN_HUXLEY, **FAMILY, "traub_miles": TRAUB_MILES}


def _family_reference(name):
    with np.load(DATA / "family" / f"{name}_const_dt0.01_f64.npz") as data:
        return {k: data[k] for k in data.files}


def _initial(model, ref):
    return {k: ref[k + "0"] for k in model.state_names}


def _run_torch(model, I, state0, dt_ms, path):
    module = HH(p=HHSpec(model=model), dt=dt_ms * 1e-3, record_states=True, path=path)
    s0 = state_type(model)(*(torch.tensor(state0[k], dtype=torch.float64)
                             for k in model.state_names))
    with torch.no_grad():
        z, states = module(torch.tensor(I, dtype=torch.float64), s0)
    return {"spike": z.numpy(), **{k: getattr(states, k).numpy() for k in model.state_names}}


def _run_brian2(spec, I, state0, dt_ms, target="numpy"):
    """Brian2 group driven by the (steps, N) current; rows as in the reference files."""
    model = spec.model
    steps, n = I.shape
    b2.start_scope()
    old = b2.prefs.codegen.target
    b2.prefs.codegen.target = target
    try:
        stim = b2.TimedArray(I * b2.uA, dt=dt_ms * b2.ms)
        group = neuron_group(n, spec, current="stim(t, i)", V_init=state0["V"],
                             dt=dt_ms * b2.ms, namespace={"stim": stim})
        for gate in model.gate_names:
            setattr(group, gate, state0[gate])
        mon = b2.StateMonitor(group, list(model.state_names), record=True, when="end")
        spikes = b2.SpikeMonitor(group)
        net = b2.Network(group, mon, spikes)
        net.run(steps * dt_ms * b2.ms)
    finally:
        b2.prefs.codegen.target = old
    raster = np.zeros((steps, n))
    rows = np.round(np.asarray(spikes.t / b2.ms) / dt_ms).astype(int)
    raster[rows, np.asarray(spikes.i)] = 1
    out = {k: getattr(mon, k).T.copy() for k in model.state_names}
    out["V"] = np.asarray(mon.V / b2.mV).T
    out["spike"] = raster
    return out


def _assert_agree(result, expected, states, dV=1e-6, dx=1e-9):
    np.testing.assert_array_equal(result["spike"], expected["spike"])
    assert np.abs(result["V"] - expected["V"]).max() <= dV
    for name in states:
        if name != "V":
            assert np.abs(result[name] - expected[name]).max() <= dx, name


# ----------------------------------------------------------- reference files, dt 0.01
@pytest.mark.parametrize("name", sorted(FAMILY))
def test_independent_numpy_step_reproduces_family_files(name):
    ref = _family_reference(name)
    model = FAMILY[name]
    out = simulate_family(name, ref["V0"], {g: ref[g + "0"] for g in model.gate_names},
                          ref["I"], float(ref["dt"]))
    _assert_agree(out, ref, model.state_names, dV=1e-9, dx=1e-12)


@pytest.mark.parametrize("path", ["naive", pytest.param("fused_cpp", marks=needs_compiler)])
@pytest.mark.parametrize("name", sorted(FAMILY))
def test_torch_reproduces_family_files(name, path):
    ref = _family_reference(name)
    model = FAMILY[name]
    out = _run_torch(model, ref["I"], _initial(model, ref), float(ref["dt"]), path)
    assert ref["spike"].sum() >= 4  # the files really spike
    _assert_agree(out, ref, model.state_names)


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_brian2_reproduces_family_files(name):
    ref = _family_reference(name)
    model = FAMILY[name]
    out = _run_brian2(HHSpec(model=model), ref["I"], _initial(model, ref), float(ref["dt"]))
    _assert_agree(out, ref, model.state_names)


# ----------------------------------------------------------- dt 0.1 ms, own reference
@pytest.mark.parametrize("name", sorted(FAMILY))
def test_both_backends_at_dt_0_1_against_independent_step(name):
    ref = _family_reference(name)
    model = FAMILY[name]
    I = ref["I"][::10]  # the files' constant inputs, 1000 steps of 0.1 ms
    state0 = _initial(model, ref)
    expected = simulate_family(name, state0["V"], {g: state0[g] for g in model.gate_names},
                               I, 0.1)
    assert expected["spike"].sum() >= 3
    for result in (_run_torch(model, I, state0, 0.1, "naive"),
                   _run_torch(model, I, state0, 0.1, "auto"),
                   _run_brian2(HHSpec(model=model), I, state0, 0.1)):
        _assert_agree(result, expected, model.state_names)


# ----------------------------------------------------------- Traub-Miles vs COBAHH.py
def _cobahh_neuron_by_hand(n, I, V0, dt_ms, steps):
    """Brian2's examples/COBAHH.py neuron, written as the example writes it, with the
    synaptic conductances replaced by an external current ``I``."""
    from brian2 import (NeuronGroup, Network, SpikeMonitor, StateMonitor, TimedArray,
                        cm, exp, ms, msiemens, mV, siemens, uA, ufarad, umetre)  # noqa: F401

    area = 20000 * umetre ** 2
    Cm = (1 * ufarad * cm ** -2) * area
    gl = (5e-5 * siemens * cm ** -2) * area
    El = -60 * mV
    EK = -90 * mV
    ENa = 50 * mV
    g_na = (100 * msiemens * cm ** -2) * area
    g_kd = (30 * msiemens * cm ** -2) * area
    VT = -63 * mV
    stim = TimedArray(I * uA, dt=dt_ms * ms)  # noqa: F841 (used by the equations)
    eqs = '''
    dv/dt = (gl*(El-v)+stim(t, i)-
             g_na*(m*m*m)*h*(v-ENa)-
             g_kd*(n*n*n*n)*(v-EK))/Cm : volt
    dm/dt = alpha_m*(1-m)-beta_m*m : 1
    dn/dt = alpha_n*(1-n)-beta_n*n : 1
    dh/dt = alpha_h*(1-h)-beta_h*h : 1
    alpha_m = 0.32*(mV**-1)*(13*mV-v+VT)/
             (exp((13*mV-v+VT)/(4*mV))-1.)/ms : Hz
    beta_m = 0.28*(mV**-1)*(v-VT-40*mV)/
            (exp((v-VT-40*mV)/(5*mV))-1)/ms : Hz
    alpha_h = 0.128*exp((17*mV-v+VT)/(18*mV))/ms : Hz
    beta_h = 4./(1+exp((40*mV-v+VT)/(5*mV)))/ms : Hz
    alpha_n = 0.032*(mV**-1)*(15*mV-v+VT)/
             (exp((15*mV-v+VT)/(5*mV))-1.)/ms : Hz
    beta_n = .5*exp((10*mV-v+VT)/(40*mV))/ms : Hz
    '''
    P = NeuronGroup(n, model=eqs, threshold='v>-20*mV', refractory=3*ms,
                    method='exponential_euler', dt=dt_ms * ms)
    P.v = V0 * mV
    mon = StateMonitor(P, ["v", "m", "n", "h"], record=True, when="end")
    spikes = SpikeMonitor(P)
    Network(P, mon, spikes).run(steps * dt_ms * ms)
    raster = np.zeros((steps, n))
    raster[np.round(np.asarray(spikes.t / ms) / dt_ms).astype(int), np.asarray(spikes.i)] = 1
    return {"V": np.asarray(mon.v / mV).T, "m": mon.m.T.copy(), "n": mon.n.T.copy(),
            "h": mon.h.T.copy(), "spike": raster}


@pytest.fixture
def numpy_target():
    old = b2.prefs.codegen.target
    b2.prefs.codegen.target = "numpy"
    yield "numpy"
    b2.prefs.codegen.target = old


@pytest.mark.parametrize("dt_ms, steps", [(0.1, 2000), (0.01, 5000)])
def test_traub_miles_reproduces_cobahh_neuron(numpy_target, dt_ms, steps):
    rng = np.random.default_rng(7)
    n = 6
    # piecewise-constant input (uA; the patch needs about 0.2-1 nA), changed every 5 ms
    blocks = rng.uniform(0.0, 1.2e-3, size=(int(np.ceil(steps * dt_ms / 5.0)), n))
    I = np.repeat(blocks, int(round(5.0 / dt_ms)), axis=0)[:steps]
    V0 = -60.0 + (rng.standard_normal(n) * 5 - 5)  # the example's El + (randn()*5 - 5) mV
    state0 = {"V": V0, "m": np.zeros(n), "n": np.zeros(n), "h": np.zeros(n)}  # gates at 0
    expected = _cobahh_neuron_by_hand(n, I, V0, dt_ms, steps)
    assert expected["spike"].sum() >= 10
    for result in (_run_brian2(HHSpec(model=TRAUB_MILES), I, state0, dt_ms),
                   _run_torch(TRAUB_MILES, I, state0, dt_ms, "naive"),
                   _run_torch(TRAUB_MILES, I, state0, dt_ms, "auto")):
        _assert_agree(result, expected, TRAUB_MILES.state_names)


def test_traub_miles_defaults_are_the_cobahh_patch():
    from brian2 import cm, msiemens, siemens, ufarad, umetre

    area = 20000 * umetre ** 2
    spec = HHSpec(model=TRAUB_MILES)
    assert spec.Cm == pytest.approx(float((1 * ufarad * cm ** -2) * area / ufarad), rel=1e-12)
    assert spec.gl == pytest.approx(float((5e-5 * siemens * cm ** -2) * area / msiemens),
                                    rel=1e-12)
    assert spec.g_na == pytest.approx(float((100 * msiemens * cm ** -2) * area / msiemens))
    assert spec.g_kd == pytest.approx(float((30 * msiemens * cm ** -2) * area / msiemens))
    assert (spec.VT, spec.V_th, spec.El, spec.EK, spec.ENa) == (-63.0, -20.0, -60.0, -90.0, 50.0)


# ----------------------------------------------------------- defaults and initial states
def test_reference_defaults_of_the_family():
    wb = HHSpec(model=WANG_BUZSAKI)
    assert wb.parameters == dict(ENa=55.0, gNa=35.0, EK=-90.0, gK=9.0, EL=-65.0, gL=0.1,
                                 V_th=20.0, phi=5.0, C=1.0)
    ml = HHSpec(model=MORRIS_LECAR)
    assert ml.parameters == dict(V_Ca=130.0, g_Ca=4.4, V_K=-84.0, g_K=8.0, V_leak=-60.0,
                                 g_leak=2.0, C=20.0, V1=-1.2, V2=18.0, V3=2.0, V4=30.0,
                                 phi=0.04, V_th=10.0)


def test_default_initial_states_follow_the_models():
    wb = initial_state(WANG_BUZSAKI, 4)
    np.testing.assert_array_equal(wb["V"], -65.0)
    np.testing.assert_array_equal(wb["h"], 0.6)
    np.testing.assert_array_equal(wb["n"], 0.32)
    ml = initial_state(MORRIS_LECAR, 1000, seed=1)
    assert ml["V"].min() >= -70.0 and ml["V"].max() <= -60.0
    np.testing.assert_array_equal(ml["W"], 0.02)
    tm = initial_state(TRAUB_MILES, 20000, seed=2)
    assert abs(tm["V"].mean() + 65.0) < 0.2 and abs(tm["V"].std() - 5.0) < 0.1
    # gates at steady state at V, with the rates' VT
    for gate in TRAUB_MILES.gate_names:
        assert np.all((tm[gate] > 0) & (tm[gate] < 1))
    shifted = initial_state(TRAUB_MILES, 3, V=-65.0, parameters={"VT": -53.0})
    assert shifted["m"][0] < initial_state(TRAUB_MILES, 3, V=-65.0)["m"][0]
    # a seed gives the same draw on the torch side as the Brian2 side uses
    p = as_parameters(HHSpec(model=TRAUB_MILES))
    s = torch_initial_state(p, (5,), seed=4, dtype=torch.float64)
    np.testing.assert_array_equal(s.V.numpy(), initial_state(TRAUB_MILES, 5, seed=4)["V"])
    wb_torch = torch_initial_state(as_parameters(HHSpec(model=WANG_BUZSAKI)), (2, 3))
    assert torch.all(wb_torch.V == -65.0) and torch.all(wb_torch.h == 0.6)


def test_brian2_group_starts_from_the_model_default():
    group = neuron_group(3, HHSpec(model=WANG_BUZSAKI))
    np.testing.assert_array_equal(np.asarray(group.V / b2.mV), -65.0)
    np.testing.assert_array_equal(group.h[:], 0.6)
    np.testing.assert_array_equal(group.n[:], 0.32)


# ----------------------------------------------------------- gradients
def _gradient_case(model, param, path, p_value=None, I_value=None, steps=400):
    spec = HHSpec(model=model)
    P = as_parameters(spec).to(dtype=torch.float64)
    value = torch.tensor(getattr(spec, param) if p_value is None else p_value,
                         dtype=torch.float64, requires_grad=True)
    P = P._replace(**{param: value})
    drive = {"hodgkin_huxley": 8.0, "wang_buzsaki": 1.5, "morris_lecar": 100.0,
             "traub_miles": 8e-4}[model.name]
    I = torch.as_tensor(drive * np.array([0.6, 1.0, 1.4]) if I_value is None else I_value,
                        dtype=torch.float64).detach().clone().requires_grad_(True)
    s0 = torch_initial_state(P, (3,), V=-62.0, dtype=torch.float64)
    dt = {"morris_lecar": 1e-4}.get(model.name, 2e-5)
    z, states = hh_sequence(I.expand(steps, 3), s0, P, dt, path=path, record_states=True)
    # a smooth loss of every state variable (the spike output has surrogate gradients only)
    loss = 1e-2 * states.V.sum() + sum(getattr(states, g).sum() for g in model.gate_names)
    return loss, I, value, z


PARAMETERS = {"hodgkin_huxley": "gNa", "wang_buzsaki": "phi", "morris_lecar": "V3",
              "traub_miles": "VT"}


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_gradients_match_central_finite_differences(name):
    model, param = ALL_MODELS[name], PARAMETERS[name]
    loss, I, value, z = _gradient_case(model, param, "naive")
    assert z.sum() >= 1  # the window contains a spike
    gI, gp = torch.autograd.grad(loss, [I, value])
    h_I = 1e-6 * I.detach().abs().max().item()
    h_p = 1e-6 * max(abs(value.item()), 1.0)
    with torch.no_grad():
        for j in range(3):
            up, down = I.detach().clone(), I.detach().clone()
            up[j] += h_I
            down[j] -= h_I
            fd = (_gradient_case(model, param, "naive", I_value=up)[0]
                  - _gradient_case(model, param, "naive", I_value=down)[0]) / (2 * h_I)
            assert gI[j].item() == pytest.approx(fd.item(), rel=1e-4)
        fd = (_gradient_case(model, param, "naive", p_value=value.item() + h_p)[0]
              - _gradient_case(model, param, "naive", p_value=value.item() - h_p)[0]) / (2 * h_p)
    assert gp.item() == pytest.approx(fd.item(), rel=1e-4)


@needs_compiler
@pytest.mark.parametrize("name", sorted(set(ALL_MODELS) - {"hodgkin_huxley"}))
def test_fused_kernel_equals_step_loop_forward_and_backward(name):
    model, param = ALL_MODELS[name], PARAMETERS[name]
    out = {}
    for path in ("naive", "fused_cpp"):
        loss, I, value, z = _gradient_case(model, param, path)
        loss = loss + z.sum()  # through the surrogate too
        out[path] = (z.detach(), loss.detach(), torch.autograd.grad(loss, [I, value]))
    torch.testing.assert_close(out["fused_cpp"][0], out["naive"][0], rtol=0, atol=0)
    assert out["fused_cpp"][1].item() == pytest.approx(out["naive"][1].item(), rel=1e-12)
    for a, b in zip(out["naive"][2], out["fused_cpp"][2]):
        assert (a - b).abs().max() <= 1e-9 * a.abs().max()
