"""Brian2 backend (:mod:`hh_plugin.brian2`) against the reference model.

Reference trajectories: ``tests/data/brainpy_hh_const_*.npz`` (BrainPy's
``brainpy.state.HH``, float64; see ``tests/data/REFERENCE_PROVENANCE.md``). Other checks
compare with the independent numpy step in ``tests/reference_step.py``. The numpy target
runs by default; the cython ones are marked ``slow`` (they compile).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

brian2 = pytest.importorskip("brian2")

from brian2 import (SpikeMonitor, StateMonitor, TimedArray, defaultclock, ms, mV,  # noqa: E402
                    prefs, start_scope, uA, msiemens, run)

from hh_plugin import HHSpec, HODGKIN_HUXLEY  # noqa: E402
from hh_plugin.brian2 import equations, neuron_group  # noqa: E402
from hh_plugin.model import (ChannelDefinition, GateDefinition, ModelDefinition,  # noqa: E402
                             ParameterDefinition, initial_voltage)

from reference_step import HH_RATES, hh_conductances, simulate  # noqa: E402

DATA = Path(__file__).parent / "data"
FILES = {0.1: DATA / "brainpy_hh_const_dt0.1_f64.npz",
         0.01: DATA / "brainpy_hh_const_dt0.01_f64_30ms.npz"}
TARGETS = ["numpy", pytest.param("cython", marks=pytest.mark.slow)]


@pytest.fixture
def target(request):
    """Set ``prefs.codegen.target`` for one test and restore it afterwards."""
    old_target, old_dt = prefs.codegen.target, defaultclock.dt
    start_scope()
    prefs.codegen.target = request.param
    yield request.param
    prefs.codegen.target = old_target
    defaultclock.dt = old_dt


@pytest.fixture
def numpy_target():
    old_target, old_dt = prefs.codegen.target, defaultclock.dt
    start_scope()
    prefs.codegen.target = "numpy"
    yield "numpy"
    prefs.codegen.target = old_target
    defaultclock.dt = old_dt


def _record(group, steps, dt, variables):
    """Run ``steps`` steps; rows k = state after step k and spike raster of step k."""
    defaultclock.dt = dt * ms
    state = StateMonitor(group, variables, record=True, when="end")
    spikes = SpikeMonitor(group)
    run(steps * dt * ms)
    out = {v: getattr(state, v).T.copy() for v in variables}
    out["V"] = np.asarray(state.V.T / mV)
    raster = np.zeros((steps, len(group)))
    rows = np.rint(np.asarray(spikes.t / ms) / dt).astype(int)
    raster[rows, np.asarray(spikes.i)] = 1.0
    out["spike"] = raster
    return out


def _compare(result, expected, gates=("m", "h", "n")):
    dV = np.abs(result["V"] - expected["V"]).max()
    dx = max(np.abs(result[g] - expected[g]).max() for g in gates)
    return dV, dx, np.array_equal(result["spike"], expected["spike"])


# --------------------------------------------------------------- reference data
@pytest.mark.parametrize("target", TARGETS, indirect=True)
@pytest.mark.parametrize("dt", [0.1, 0.01])
def test_matches_reference_model(target, dt):
    data = np.load(FILES[dt])
    assert float(data["dt"]) == dt
    steps, n = data["V"].shape
    group = neuron_group(n, HHSpec(), current=data["I"][0] * uA, V_init=data["V0"],
                         dt=dt * ms)
    group.m, group.h, group.n = data["m0"], data["h0"], data["n0"]
    result = _record(group, steps, dt, ["V", "m", "h", "n"])
    dV, dx, same = _compare(result, data)
    assert dV <= 1e-6, f"max |dV| = {dV} mV"
    assert dx <= 1e-9, f"max gate error = {dx}"
    assert same, "spike steps differ from the reference model"
    assert data["spike"].sum() > 0


# ------------------------------------------------- against the numpy reference step
def _check_against_reference(group, V0, I, params, dt, steps, gates=("m", "h", "n"),
                             **kwargs):
    result = _record(group, steps, dt, ["V", *gates])
    expected = simulate(V0, I, params, dt, steps, **kwargs)
    dV, dx, same = _compare(result, expected, gates)
    assert dV <= 1e-6 and dx <= 1e-9 and same, (dV, dx, same)
    return result


@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_heterogeneous_parameters(target):
    n = 6
    gL = np.linspace(0.01, 0.3, n)
    gNa = np.linspace(100.0, 140.0, n)
    V_th = np.array([5.0, 10.0, 20.0, 20.0, 30.0, -10.0])
    spec = HHSpec(gL=gL, gNa=gNa, V_th=V_th)
    V0 = np.full(n, -65.0)
    I = np.array([5.0, 10.0, 10.0, 20.0, 20.0, 8.0])
    group = neuron_group(n, spec, current=I * uA, V_init=V0)
    np.testing.assert_allclose(group.gL / msiemens, gL)
    np.testing.assert_allclose(group.V_th / mV, V_th)
    result = _check_against_reference(group, V0, I, spec.parameters, 0.05, 600)
    assert result["spike"].sum() > 0


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize("per_neuron", [False, True])
def test_reset_modes(numpy_target, mode, per_neuron):
    n = 4
    V_reset = np.array([-70.0, -60.0, -75.0, -65.0]) if per_neuron else -70.0
    spec = HHSpec(V_reset=V_reset, spk_reset=mode)
    V0 = np.full(n, -65.0)
    I = np.array([5.0, 10.0, 20.0, 40.0])
    group = neuron_group(n, spec, current=I * uA, V_init=V0)
    result = _check_against_reference(group, V0, I, spec.parameters, 0.02, 2000,
                                      V_reset=V_reset, spk_reset=mode)
    rows, cols = np.nonzero(result["spike"])
    assert len(rows) > 0
    # the state recorded in a spiking step is already reset
    if mode == "hard":
        np.testing.assert_allclose(result["V"][rows, cols],
                                   np.broadcast_to(V_reset, (n,))[cols])
    else:
        assert np.all(result["V"][rows, cols] < 20.0)


def test_reset_none_keeps_membrane(numpy_target):
    group = neuron_group(2, HHSpec(), current=10 * uA, V_init=-65.0)
    assert group.events["spike"] == "V >= V_th and V_start < V_th" and group.V_th == 20 * mV
    result = _check_against_reference(group, np.full(2, -65.0), 10.0, {}, 0.02, 1000)
    rows, cols = np.nonzero(result["spike"])
    assert np.all(result["V"][rows, cols] >= 20.0)


# ------------------------------------------------------------- other model definitions
def _modified_model():
    """The HH model with a slower n gate and an extra A-type potassium channel."""
    base = HODGKIN_HUXLEY
    return ModelDefinition(
        name="hh_test_modified",
        parameters=base.parameters + (ParameterDefinition("gA", 10.0, "mS", "A conductance"),
                                      ParameterDefinition("EA", -80.0, "mV", "A reversal")),
        gates=(base.gates[0], base.gates[1],
               GateDefinition("n", "0.05/exprel(-(V + 55)/10)", "0.0625*exp(-(V + 65)/80)"),
               GateDefinition.from_steady_state("a", "1/(1 + exp(-(V + 60)/8.5))", "2.0")),
        channels=base.channels + (ChannelDefinition("A", "gA*a**3", "EA"),),
    )


def test_other_model_definition(numpy_target):
    model = _modified_model()
    rates = {
        "m": HH_RATES["m"], "h": HH_RATES["h"],
        "n": (lambda V: 0.05 / (np.expm1(-(V + 55) / 10) / (-(V + 55) / 10)),
              lambda V: 0.0625 * np.exp(-(V + 65) / 80)),
        "a": (lambda V: (1 / (1 + np.exp(-(V + 60) / 8.5))) / 2.0,
              lambda V: (1 - 1 / (1 + np.exp(-(V + 60) / 8.5))) / 2.0),
    }

    def conductances(gates, p):
        return hh_conductances(gates, p) + [(p["gA"] * gates["a"] ** 3, p["EA"])]

    spec = HHSpec(model=model, gA=np.array([0.0, 5.0, 20.0]))
    eqs = equations(spec)
    assert {"V", "m", "h", "n", "a", "I", "I_A", "a_inf", "tau_a", "gA"} <= set(eqs.names)
    V0 = np.array([-64.0, -65.0, -66.0])
    I = np.array([10.0, 10.0, 20.0])
    group = neuron_group(3, spec, current=I * uA, V_init=V0)
    params = {**spec.parameters}
    _check_against_reference(group, V0, I, params, 0.02, 1500, gates=("m", "h", "n", "a"),
                             rates=rates, conductances=conductances)


def test_equations_content():
    eqs = equations(HHSpec(gL=[0.03, 0.3]), current="I0 + I_syn")
    assert eqs["I"].type == "subexpression" and str(eqs["I"].expr) == "I0 + I_syn"
    assert eqs["gL"].type == "parameter" and "constant" in eqs["gL"].flags
    assert "shared" not in eqs["gL"].flags  # per neuron
    # scalar parameters are shared parameters of the group, by name
    assert eqs["gNa"].type == "parameter" and {"constant", "shared"} <= set(eqs["gNa"].flags)
    assert str(eqs["I_Na"].expr) == "gNa*m**3*h*(V - ENa)"
    assert "hh_exprel(" in str(eqs["alpha_m"].expr) and "exp(" in str(eqs["alpha_m"].expr)
    assert "exprel(" in str(equations(exprel_form="brian2")["alpha_m"].expr)
    assert "hh_exprel" not in str(equations(exprel_form="brian2")["alpha_m"].expr)
    with pytest.raises(ValueError, match="exprel_form"):
        equations(exprel_form="fastest")
    assert equations()["I"].type == "parameter"


# ---------------------------------------------------------------- spikes and inputs
def test_no_spike_at_step0_when_starting_above_threshold(numpy_target):
    V0 = np.array([30.0, 25.0, -65.0])
    group = neuron_group(3, HHSpec(), current=0 * uA, V_init=V0)
    result = _check_against_reference(group, V0, 0.0, {}, 0.01, 300)
    assert result["spike"][0].sum() == 0


def test_timed_array_current(numpy_target):
    dt, steps, n = 0.02, 1500, 3
    t = np.arange(steps) * dt
    I = np.stack([np.where(t > 5.0, 10.0, 0.0), 4.0 * np.sin(t / 3.0) + 6.0,
                  np.where((t > 10.0) & (t < 20.0), 20.0, 0.0)], axis=1)
    I_stim = TimedArray(I * uA, dt=dt * ms)
    V0 = np.full(n, -65.0)
    group = neuron_group(n, HHSpec(), current="I_stim(t, i)", V_init=V0,
                         namespace={"I_stim": I_stim})
    result = _check_against_reference(group, V0, I, {}, dt, steps)
    assert result["spike"].sum() > 0


def test_constant_current_forms(numpy_target):
    assert np.allclose(neuron_group(3, current=5 * uA).I / uA, 5.0)
    assert np.allclose(neuron_group(3, current=[1.0, 2.0, 3.0]).I / uA, [1, 2, 3])
    assert np.allclose(neuron_group(2).I / uA, 0.0)


def test_seeded_initial_state_matches_numpy_generator(numpy_target):
    group = neuron_group(50, seed=123)
    V0 = initial_voltage(HODGKIN_HUXLEY, 50, seed=123)
    # Brian2 stores volts: mV -> V -> mV may change the last bit
    np.testing.assert_allclose(np.asarray(group.V / mV), V0, rtol=1e-15, atol=0)
    steady = {g: a(V0) / (a(V0) + b(V0)) for g, (a, b) in HH_RATES.items()}
    for g in "mhn":
        np.testing.assert_allclose(getattr(group, g)[:], steady[g], rtol=1e-12)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(N=0), ValueError, "N"),
    (dict(N=2.5), TypeError, "N"),
    (dict(N=True), TypeError, "N"),
    (dict(N=3, current=5 * mV), TypeError, "current"),
    (dict(N=3, current=[1.0, 2.0]), ValueError, "current"),
    (dict(N=3, current=object()), TypeError, "current"),
    (dict(N=3, current="5*mV"), TypeError, "current"),
    (dict(N=3, spec=HHSpec(gL=[0.1, 0.2])), ValueError, "per-neuron"),
    (dict(N=3, spec="hh"), TypeError, "HHSpec"),
    (dict(N=3, method="no_such_method"), ValueError, "method"),
    (dict(N=3, threshold="V > V_th and t > 5*ms"), TypeError, "threshold"),
    (dict(N=3, V_init="gaussian"), ValueError, "initial voltage"),
    (dict(N=3, current=""), ValueError, "current"),
])
def test_bad_input(numpy_target, kwargs, error, match):
    with pytest.raises(error, match=match):
        neuron_group(**kwargs)


# --------------------------------------------------------------- exprel, packaging
def test_hh_exprel_fast_numpy_path():
    from brian2.codegen.runtime.numpy_rt import NumpyCodeObject

    from hh_plugin.brian2.functions import exprel_function
    from hh_plugin.model.expressions import exprel_numpy

    numpy_impl = exprel_function().implementations[NumpyCodeObject].get_code(None)
    x = np.array([-800.0, -5.0, -1e-20, 0.0, 1e-10, 0.5, 700.0])
    with np.errstate(over="ignore"):
        values = numpy_impl(x, np.exp(x))
    np.testing.assert_array_equal(values, exprel_numpy(x))  # no unit-checking wrapper
    brian = brian2.DEFAULT_FUNCTIONS["exprel"].pyfunc(x)
    np.testing.assert_allclose(values, brian, rtol=1e-15)


def test_hh_plugin_imports_without_brian2():
    code = "import sys, hh_plugin, hh_plugin.model; assert 'brian2' not in sys.modules"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
