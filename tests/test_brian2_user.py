"""The plugin's Brian2 group as a Brian2 user uses it (issue 10, failures 1-8).

Each numbered failure of the issue has its test here: parameters as group variables (1),
a group extended with equations, events and reset (2), synaptic inputs that add up as
they should (3), plain numbers in the wrong unit refused (4), Brian2's seed governing the
initial draw (5), gates brought to steady state after V changes (6), readable equations
and a function that leaves Brian2's tables alone (7), Brian2 internals kept in one
module and ``set_device`` after ``use_device`` (8). Standalone builds and the Brian2 2.8
environment are marked ``slow``.
"""

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

brian2 = pytest.importorskip("brian2")

from brian2 import (EventMonitor, Hz, Network, NeuronGroup, PoissonGroup, PoissonInput,  # noqa: E402
                    SpikeGeneratorGroup, SpikeMonitor, StateMonitor, Synapses, TimedArray,
                    amp, defaultclock, get_device, mV, ms, msiemens, nA, nS, prefs, run,
                    start_scope, uA)

from hh_plugin import HHSpec, HODGKIN_HUXLEY  # noqa: E402
from hh_plugin.brian2 import equations, neuron_group, use_device  # noqa: E402
from hh_plugin.model import TRAUB_MILES, initial_voltage  # noqa: E402

from reference_step import HH_RATES, simulate, steady_state  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def numpy_target():
    old_target, old_dt = prefs.codegen.target, defaultclock.dt
    start_scope()
    prefs.codegen.target = "numpy"
    yield "numpy"
    if get_device().__class__.__name__ != "RuntimeDevice":  # a failed test left it
        brian2.set_device("runtime")
    prefs.codegen.target = old_target
    defaultclock.dt = old_dt
    start_scope()


def _trace(group, steps, dt, variables=("V", "m", "h", "n"), others=()):
    """Run ``steps`` steps of ``group`` and ``others``; rows k = state after step k (mV
    for V), spikes as (step, i)."""
    defaultclock.dt = dt * ms
    state = StateMonitor(group, list(variables), record=True, when="end")
    spikes = SpikeMonitor(group)
    if others:  # objects the magic network would not find from here
        Network(group, state, spikes, *others).run(steps * dt * ms)
    else:
        run(steps * dt * ms)
    out = {v: np.asarray(getattr(state, v + "_")).T.copy() for v in variables}
    out["V"] = out["V"] * 1e3
    out["spike_steps"] = np.rint(np.asarray(spikes.t / ms) / dt).astype(int)
    out["spike_i"] = np.asarray(spikes.i)
    return out


def _raster(result, steps, n):
    raster = np.zeros((steps, n))
    raster[result["spike_steps"], result["spike_i"]] = 1.0
    return raster


# ------------------------------------------------------- 1. parameters are variables
def test_1_scalar_parameters_are_group_variables_settable_between_runs(numpy_target):
    spec = HHSpec(gL=[0.03, 0.1, 0.3])
    group = neuron_group(3, spec, current=10 * uA, V_init=-65.0)
    assert group.gNa == 120 * msiemens and group.variables["gNa"].scalar
    assert not group.variables["gL"].scalar
    np.testing.assert_allclose(group.gL / msiemens, [0.03, 0.1, 0.3])
    first = _trace(group, 500, 0.02)
    group.gNa = 60 * msiemens          # between runs, as a Brian2 user does
    group.EK = -80 * mV
    second = _trace(group, 500, 0.02)

    params = spec.parameters
    expected1 = simulate(np.full(3, -65.0), 10.0, params, 0.02, 500)
    gates = {g: expected1[g][-1] for g in "mhn"}
    expected2 = simulate(expected1["V"][-1], 10.0, {**params, "gNa": 60.0, "EK": -80.0},
                         0.02, 500, gates0=gates)
    for got, want in ((first, expected1), (second, expected2)):
        assert np.abs(got["V"] - want["V"]).max() <= 1e-9
        np.testing.assert_array_equal(_raster(got, 500, 3), want["spike"])
    with pytest.raises(brian2.DimensionMismatchError):
        group.gNa = 60  # a plain number is not a conductance (Brian2's own check)


# ------------------------------------------- 2. extended groups: equations, events, reset
COBA = dict(extra_equations="dge/dt = -ge/taue : siemens", current="ge*(Ee - V)",
            namespace={"taue": 5 * ms, "Ee": 0 * mV})


def test_2_extra_equations_current_and_namespace(numpy_target):
    spec = HHSpec(model=TRAUB_MILES)
    group = neuron_group(2, spec, V_init=-65 * mV, **COBA)
    source = SpikeGeneratorGroup(1, [0, 0], [1.0, 3.0] * ms)
    synapses = Synapses(source, group, on_pre="ge_post += 6*nS")
    synapses.connect(i=0, j=0)
    state = StateMonitor(group, ["ge", "V"], record=True, when="end")
    spikes = SpikeMonitor(group)
    defaultclock.dt = 0.01 * ms
    run(6 * ms)
    t = state.t / ms
    # delivered in the spike's step; exponential Euler decays it exactly
    expected = sum(np.where(t > ts - 1e-9, 6.0 * np.exp(-(t - ts) / 5.0), 0.0)
                   for ts in (1.0, 3.0))
    np.testing.assert_allclose(state.ge[0] / nS, expected, atol=1e-9)
    assert np.all(state.ge[1] == 0)
    assert state.V[0, -1] > state.V[1, -1] + 1 * mV  # the excitatory input depolarises
    assert group.events["spike"] == "V >= V_th and V_start < V_th"  # the plugin's rule stays
    assert spikes.num_spikes == 0 or np.all(spikes.i == 0)


def test_2_mistakes_in_added_code_are_reported_when_the_group_is_made(numpy_target):
    with pytest.raises(ValueError, match=r"current expression 'ge\*\(Ee - V\)'.*'Ee', 'ge'"):
        neuron_group(2, current="ge*(Ee - V)")
    with pytest.raises(ValueError, match=r"extra_equations uses \['taue'\].*namespace"):
        neuron_group(2, extra_equations="dge/dt = -ge/taue : siemens",
                     current="ge*(0*mV - V)")
    with pytest.raises(TypeError, match="current expression must be in amp"):
        neuron_group(2, extra_equations="dge/dt = -ge/(5*ms) : siemens", current="ge")
    with pytest.raises(ValueError, match=r"\['gNa'\].*already define"):
        neuron_group(2, extra_equations="gNa : siemens")
    with pytest.raises(ValueError, match="extra_equations cannot be parsed"):
        neuron_group(2, extra_equations="dge/dt = -ge/taue siemens")
    with pytest.raises(ValueError, match=r"event 'up' uses \['V_up'\]"):
        neuron_group(2, events={"up": "V > V_up"})


def test_2_names_resolve_from_the_callers_scope(numpy_target):
    taue, Ee = 5 * ms, 0 * mV  # noqa: F841  (found by name, as Brian2 does)
    group = neuron_group(2, extra_equations="dge/dt = -ge/taue : siemens",
                         current="ge*(Ee - V)")
    group.ge = 1 * nS
    run(1 * ms)
    assert 0 < group.ge[0] < 1 * nS


@pytest.mark.parametrize("kwargs, match", [
    (dict(threshold="V > V_th and t > 1*ms"), r"threshold=.*spike rule.*V_th.*events="),
    (dict(refractory="V > 0*mV"), "refractory takes a duration.*spike rule"),
    (dict(model="dv/dt = -v/(10*ms) : volt"), "model=.*extra_equations"),
    (dict(events={"spike": "V > 0*mV"}), "'spike' is the model's own event"),
])
def test_2_spike_rule_is_kept_and_refusals_explain(numpy_target, kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        neuron_group(2, **kwargs)


def test_2_absolute_refractory_period_as_brian2_scripts_write_it(numpy_target):
    """Threshold below rest: the plugin's rule never fires (no upward crossing); with a
    refractory period the neuron fires once the period is over, again and again."""
    spec = HHSpec(V_th=-80.0)
    crossing = neuron_group(1, spec, V_init=-65.0)
    period = neuron_group(1, spec, V_init=-65.0, refractory=2 * ms)
    in_ms = neuron_group(1, spec, V_init=-65.0, refractory=2.0)
    monitors = [SpikeMonitor(g) for g in (crossing, period, in_ms)]
    defaultclock.dt = 0.1 * ms
    Network(crossing, period, in_ms, *monitors).run(10 * ms)
    assert monitors[0].num_spikes == 0
    t = np.asarray(monitors[1].t / ms)
    assert len(t) >= 4 and np.allclose(np.diff(t), np.diff(t)[0]) and 2.0 <= np.diff(t)[0] <= 2.2
    np.testing.assert_array_equal(monitors[2].t, monitors[1].t)


def test_2_custom_events_and_reset_statements(numpy_target):
    spec = HHSpec(V_reset=-70.0, spk_reset="hard")
    plain = neuron_group(3, spec, current=[5.0, 10.0, 20.0], V_init=-65.0)
    group = neuron_group(3, spec, current=[5.0, 10.0, 20.0], V_init=-65.0,
                         extra_equations="count : 1", reset="count += 1",
                         events={"depolarised": "V > -40*mV"})
    spikes, plain_spikes = SpikeMonitor(group), SpikeMonitor(plain)
    depolarised = EventMonitor(group, "depolarised")
    state = StateMonitor(group, "V", record=True, when="end")
    defaultclock.dt = 0.02 * ms
    run(30 * ms)
    np.testing.assert_array_equal(spikes.i, plain_spikes.i)   # same spike rule
    np.testing.assert_array_equal(spikes.t, plain_spikes.t)
    np.testing.assert_array_equal(group.count, np.bincount(spikes.i, minlength=3))
    assert spikes.num_spikes > 0 and depolarised.num_events > spikes.num_spikes
    rows = np.rint(np.asarray(spikes.t / ms) / 0.02).astype(int)
    np.testing.assert_allclose(state.V[spikes.i, rows] / mV, -70.0)  # the plugin's reset ran


# ------------------------------------------------------- 3. synaptic inputs add up
def test_3_poisson_inputs_into_a_decaying_conductance(numpy_target):
    defaultclock.dt = 0.05 * ms  # PoissonInput needs its dt before it is made
    brian2.seed(3)
    group = neuron_group(2, HHSpec(model=TRAUB_MILES), V_init=-65 * mV, **COBA)
    poisson_input = PoissonInput(group[:1], "ge", N=100, rate=50 * Hz, weight=1 * nS)
    poisson = PoissonGroup(100, 50 * Hz)
    synapses = Synapses(poisson, group[1:], on_pre="ge_post += 1*nS")
    synapses.connect()
    state = StateMonitor(group, "ge", record=True, dt=0.5 * ms)
    run(400 * ms)
    assert poisson_input.N == 100
    ge = state.ge / nS
    # stationary mean: N * rate * w * tau = 100 * 50 Hz * 1 nS * 5 ms = 25 nS
    for row in ge:
        late, early = row[400:].mean(), row[100:400].mean()
        assert 20 < late < 30 and 20 < early < 30, (early, late)


def test_3_one_step_current_pulses_cleared_after_each_step(numpy_target):
    """``I_pulse`` receives ``w`` per presynaptic spike and is cleared after the update:
    a spike in step k adds w to the current of step k + 1 only."""
    dt, steps, w = 0.02, 1000, 40.0
    spike_steps = np.arange(0, steps, 3)
    source = SpikeGeneratorGroup(1, np.zeros(len(spike_steps), int), spike_steps * dt * ms,
                                 dt=dt * ms)
    group = neuron_group(1, extra_equations="I_pulse : amp", current="I_pulse",
                         V_init=-65.0, dt=dt * ms)
    group.run_regularly("I_pulse = 0*amp", when="after_groups")
    synapses = Synapses(source, group, on_pre=f"I_pulse_post += {w}*uA", dt=dt * ms)
    synapses.connect()
    result = _trace(group, steps, dt, ("V",), others=(source, synapses))

    current = np.zeros((steps, 1))
    current[spike_steps[spike_steps + 1 < steps] + 1] = w
    start_scope()
    reference = neuron_group(1, current="I_ref(t, i)", V_init=-65.0, dt=dt * ms,
                             namespace={"I_ref": TimedArray(current * uA, dt=dt * ms)})
    expected = _trace(reference, steps, dt, ("V",))
    assert len(result["spike_steps"]) > 0
    np.testing.assert_allclose(result["V"], expected["V"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(result["spike_steps"], expected["spike_steps"])


# ---------------------------------------------------- 4. plain numbers, wrong unit
@pytest.mark.parametrize("kwargs, match", [
    (dict(V_init=-0.065), r"plain numbers are membrane potentials in mV.*-65\*mV"),
    (dict(V_init=[-0.07, -0.06]), "in mV"),
    (dict(V_init=-65000.0), "in mV"),
    (dict(current=1e-9), r"plain numbers are in uA.*10\*uA"),
    (dict(current=[1e-9, 2e-9]), "in uA"),
    (dict(current=5e6), "in uA"),
])
def test_4_implausible_plain_numbers_are_refused_with_a_unit_hint(numpy_target, kwargs,
                                                                   match):
    with pytest.raises(ValueError, match=match):
        neuron_group(2, **kwargs)


def test_4_plain_numbers_in_the_documented_units_and_quantities_pass(numpy_target):
    from hh_plugin.brian2 import set_steady_state

    group = neuron_group(2, current=10.0, V_init=-65.0)
    assert np.allclose(group.I / uA, 10.0) and np.allclose(group.V / mV, -65.0)
    group = neuron_group(2, current=1 * nA, V_init=-0.065 * brian2.volt)
    assert np.allclose(group.I / nA, 1.0) and np.allclose(group.V / mV, -65.0)
    # Traub-Miles: C = 2e-4 uF, so 1 nA (1e-3 uA) is a plausible number
    tm = neuron_group(2, HHSpec(model=TRAUB_MILES), current=1e-3)
    assert np.allclose(tm.I / nA, 1.0)
    assert np.allclose(neuron_group(2, current=0.0).I / uA, 0.0)
    with pytest.raises(ValueError, match="in mV"):
        set_steady_state(group, -0.065)


# ---------------------------------------------------- 5. brian2.seed governs the draw
def _initial(V_init="uniform", seed=None, spec=None, N=200):
    start_scope()
    group = neuron_group(N, spec or HHSpec(), V_init=V_init, seed=seed)
    return {k: np.asarray(getattr(group, k + "_")[:]).copy() for k in ("V", "m", "h", "n")}


def test_5_brian2_seed_makes_the_initial_draw_reproducible(numpy_target):
    brian2.seed(42)
    a = _initial()
    brian2.seed(42)
    b = _initial()
    brian2.seed(43)
    c = _initial()
    np.testing.assert_array_equal(a["V"], b["V"])
    assert not np.array_equal(a["V"], c["V"])
    V = a["V"] * 1e3
    assert V.min() >= -70.0 and V.max() <= -60.0 and V.std() > 2.0
    for gate, value in steady_state(V).items():  # gates at steady state of the drawn V
        np.testing.assert_allclose(a[gate], value, rtol=1e-12)


def test_5_normal_default_draw_uses_randn(numpy_target):
    brian2.seed(1)
    V = _initial("default", spec=HHSpec(model=TRAUB_MILES), N=4000)["V"] * 1e3
    assert abs(V.mean() + 65.0) < 0.3 and abs(V.std() - 5.0) < 0.3


def test_5_seed_option_gives_the_torch_backends_draw(numpy_target):
    state = _initial(seed=5)
    V0 = initial_voltage(HODGKIN_HUXLEY, 200, "uniform", seed=5)
    np.testing.assert_allclose(state["V"] * 1e3, V0, rtol=1e-15, atol=0)
    for gate, value in steady_state(V0).items():
        np.testing.assert_allclose(state[gate], value, rtol=1e-12)


def test_5_expression_as_initial_voltage(numpy_target):
    brian2.seed(9)
    state = _initial("-65*mV + 2*mV*randn()")
    assert abs(state["V"].mean() * 1e3 + 65.0) < 0.5
    with pytest.raises(ValueError, match="seed applies"):
        neuron_group(2, V_init="-65*mV", seed=1)


# ---------------------------------------- 6. gates follow V: set_steady_state, run_args
def test_6_set_steady_state_after_creation_without_a_spurious_spike(numpy_target):
    from hh_plugin.brian2 import set_steady_state

    group = neuron_group(3, current=0 * uA, V_init=-65.0)
    set_steady_state(group, 30 * mV)
    for gate, value in steady_state(np.full(3, 30.0)).items():
        np.testing.assert_allclose(getattr(group, gate)[:], value, rtol=1e-12)
    result = _trace(group, 300, 0.01)
    expected = simulate(np.full(3, 30.0), 0.0, {}, 0.01, 300)  # gates at steady state
    assert 0 not in result["spike_steps"]
    assert np.abs(result["V"] - expected["V"]).max() <= 1e-9
    np.testing.assert_array_equal(_raster(result, 300, 3), expected["spike"])


def test_6_set_steady_state_on_a_subgroup_and_with_an_expression(numpy_target):
    from hh_plugin.brian2 import set_steady_state

    group = neuron_group(4, current=0 * uA, V_init=-65.0)
    set_steady_state(group[:2], "-50*mV")
    np.testing.assert_allclose(group.V / mV, [-50, -50, -65, -65])
    np.testing.assert_allclose(group.m[:], steady_state(np.array([-50, -50, -65, -65.0]))["m"],
                               rtol=1e-12)
    set_steady_state(group)  # V unchanged: the gates stay
    np.testing.assert_allclose(group.V / mV, [-50, -50, -65, -65])
    with pytest.raises(TypeError, match="neuron_group"):
        set_steady_state(NeuronGroup(2, "v : volt"))


# --------------------------------------------------------- 7. readable equations
def test_7_equations_read_like_the_model():
    eqs = equations()
    assert str(eqs["alpha_m"].expr) == \
        "1.0/hh_exprel(-(V/mV + 40.0)/10.0, exp(-(V/mV + 40.0)/10.0))/ms"
    assert str(eqs["beta_h"].expr) == "1.0/(1.0 + exp(-(V/mV + 35.0)/10.0))/ms"
    assert str(eqs["I_Na"].expr) == "gNa*m**3*h*(V - ENa)"
    assert str(eqs["m_inf"].expr) == "alpha_m/(alpha_m + beta_m)"
    assert max(len(line) for line in str(eqs).splitlines()) <= 80  # was 400 for alpha_m
    from hh_plugin.model import MORRIS_LECAR, WANG_BUZSAKI

    ml = equations(HHSpec(model=MORRIS_LECAR))
    assert str(ml["tau_W"].expr) == "1.0/(phi*cosh((V - V3)/(2.0*V4)))"  # as written
    assert str(ml["M"].expr) == "0.5*(1.0 + tanh((V - V1)/V2))"
    tm = equations(HHSpec(model=TRAUB_MILES))
    assert str(tm["beta_h"].expr) == "4.0/(1.0 + exp((40.0 - V/mV + VT/mV)/5.0))/ms"
    wb = equations(HHSpec(model=WANG_BUZSAKI))
    assert str(wb["h"].expr).startswith("phi*(") and "constant over dt" in str(wb["m"])


def test_7_hh_exprel_is_a_function_object_with_every_target():
    from brian2.codegen.runtime.cython_rt import CythonCodeObject
    from brian2.codegen.runtime.numpy_rt import NumpyCodeObject
    from brian2.devices.cpp_standalone.codeobject import CPPStandaloneCodeObject

    from hh_plugin.brian2 import namespace
    from hh_plugin.brian2.functions import exprel_function

    function = exprel_function()
    assert namespace() == {"hh_exprel": function}
    impl = function.implementations
    x = np.array([0.0, 1e-9, 1.0, -30.0])
    np.testing.assert_allclose(impl[NumpyCodeObject].get_code(None)(x, np.exp(x)),
                               [1.0, 1.0 + 5e-10, np.e - 1.0, (1 - np.exp(-30)) / 30], rtol=1e-15)
    for codeobj in (CythonCodeObject, CPPStandaloneCodeObject):
        assert "fabs(x) < 0.001" in impl[codeobj].get_code(None)
    cuda = impl[types.SimpleNamespace(class_name="cuda")].get_code(None)
    assert "__host__ __device__" in cuda and "fabsf(x) < 0.05f" in cuda
    assert "hh_exprel" not in brian2.DEFAULT_FUNCTIONS


# ------------------------------------------------------ 8. Brian2's globals, internals
def test_8_importing_and_using_the_plugin_leaves_brian2_tables_alone():
    code = (
        "import brian2\n"
        "from brian2.core.functions import DEFAULT_FUNCTIONS\n"
        "before = dict(DEFAULT_FUNCTIONS)\n"
        "import hh_plugin.brian2 as hb\n"
        "g = hb.neuron_group(3, current=10*brian2.uA)\n"
        "brian2.run(0.5*brian2.ms)\n"
        "assert dict(DEFAULT_FUNCTIONS) == before, set(DEFAULT_FUNCTIONS) ^ set(before)\n"
        "print('unchanged')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "unchanged" in proc.stdout, proc.stderr[-3000:]


def test_8_brian2_internals_only_in_the_compat_module():
    package = ROOT / "hh_plugin" / "brian2"
    internal = re.compile(r"(from|import)\s+brian2\.|\._implementations|\._last_run_time|"
                          r"previous_devices|all_devices|\.timers\b")
    offenders = [f"{path.name}:{number}: {line.strip()}"
                 for path in sorted(package.glob("*.py")) if path.name != "_compat.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if internal.search(line)]
    assert offenders == []


def test_8_compat_functions_work_on_this_brian2():
    from hh_plugin.brian2 import _compat

    assert "exponential_euler" in _compat.integration_methods()
    fresh = _compat.fresh_device("cpp_standalone")
    assert type(fresh).__name__ == "CPPStandaloneDevice" and fresh is not \
        brian2.devices.device.all_devices["cpp_standalone"]
    assert _compat.last_run_time(fresh) in (None, 0.0)
    assert _compat.make_time(fresh) is None and _compat.binary_time(fresh) is None


# ------------------------------------------------------ standalone (slow): 1, 5, 6, 8
@pytest.mark.slow
def test_1_5_6_standalone_run_args_parameters_seed_and_gates(numpy_target, tmp_path):
    """One C++ standalone build, the binary run several times: Brian2's seed draws V in
    the binary, run_args change a parameter and V without recompiling, and the gates
    follow the new V (run_args applied before set_steady_state)."""
    from brian2 import device

    from hh_plugin.brian2 import set_steady_state

    dt, steps, n = 0.01, 600, 20
    defaultclock.dt = dt * ms
    with use_device("cpp_standalone", directory=str(tmp_path / "p"),
                    build_on_run=False) as session:
        brian2.seed(7)
        group = neuron_group(n, current=10 * uA, V_init="uniform")
        device.apply_run_args()
        set_steady_state(group)
        first = StateMonitor(group, ["V", "m", "h", "n"], record=True, when="start",
                             dt=steps * dt * ms)  # the state before step 0
        state = StateMonitor(group, "V", record=True, when="end")
        spikes = SpikeMonitor(group)
        run(steps * dt * ms)
        session.build(with_output=False)

        def results():
            return ({k: np.asarray(getattr(first, k + "_"))[:, 0].copy() for k in "Vmhn"},
                    np.asarray(state.V_).T * 1e3, np.asarray(spikes.i).copy(),
                    np.rint(np.asarray(spikes.t_) * 1e3 / dt).astype(int))

        init, V, _, _ = results()
        session.run(with_output=False)           # same binary, same seed: same draw
        init2, _, _, _ = results()
        np.testing.assert_array_equal(init["V"], init2["V"])
        V0 = init["V"] * 1e3
        assert V0.min() >= -70 and V0.max() <= -60 and V0.std() > 1
        for gate, value in steady_state(V0).items():
            np.testing.assert_allclose(init[gate], value, rtol=1e-12)

        session.run(with_output=False, run_args={group.V: -60 * mV, group.gNa: 100 * msiemens,
                                                 group.I: 15 * uA})
        init, V, i, k = results()
    np.testing.assert_allclose(init["V"] * 1e3, -60.0)
    for gate, value in steady_state(np.full(n, -60.0)).items():
        np.testing.assert_allclose(init[gate], value, rtol=1e-12)
    expected = simulate(np.full(n, -60.0), 15.0, {"gNa": 100.0}, dt, steps)
    assert np.abs(V - expected["V"]).max() <= 1e-9
    raster = np.zeros((steps, n))
    raster[k, i] = 1
    np.testing.assert_array_equal(raster, expected["spike"])
    assert raster.sum() > 0 and raster[0].sum() == 0


@pytest.mark.slow
def test_8_set_device_after_a_use_device_block(numpy_target, tmp_path):
    with use_device("cpp_standalone", directory=str(tmp_path / "first")):
        group = neuron_group(5, current=10 * uA, V_init=-65.0)
        spikes = SpikeMonitor(group)
        run(5 * ms)
    first = np.asarray(spikes.t_).copy()
    assert get_device().__class__.__name__ == "RuntimeDevice"
    brian2.set_device("cpp_standalone", directory=str(tmp_path / "second"))
    try:
        group = neuron_group(5, current=10 * uA, V_init=-65.0)
        spikes = SpikeMonitor(group)
        run(5 * ms)
        np.testing.assert_array_equal(np.asarray(spikes.t_), first)
    finally:
        brian2.devices.device.reset_device()
        brian2.devices.device.all_devices["cpp_standalone"].reinit()
    assert len(first) > 0


# ------------------------------------------------------------ Brian2 2.8 (slow)
@pytest.fixture(scope="module")
def brian2_28_env():
    """The Brian2 2.8 environment of ``tests/environments.py`` (installed by install.sh
    with ``HH_PLUGIN_TEST_ENVS=all``, never by the tests)."""
    import environments

    python = environments.brian28_env_python()
    if python is None:
        pytest.skip(f"no Brian2 2.8 environment at {environments.brian28_env_path()}: "
                    + environments.INSTALL_HINT.format("brian28"))
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    environ["PYTHONPATH"] = str(ROOT)
    return python, environ


#: Run in the Brian2 2.8 environment (Python 3.11 cannot install Brian2 2.10, which
#: needs Python >= 3.12; 2.9 is this environment's).
BRIAN2_28_TESTS = ["tests/test_brian2_backend.py", "tests/test_brian2_user.py",
                   "tests/test_standalone.py", "tests/test_brian2_network_objects.py",
                   "tests/test_brian2_spike_rule.py", "tests/test_area_units.py"]


@pytest.mark.slow
def test_8_brian2_tests_pass_on_brian2_2_8(brian2_28_env):
    python, environ = brian2_28_env
    # -o addopts=: that environment has no pytest-xdist (one process is enough here)
    proc = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-o", "addopts=", "-m", "not slow", *BRIAN2_28_TESTS],
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    version = subprocess.run([str(python), "-c", "import brian2; print(brian2.__version__)"],
                             env=environ, capture_output=True, text=True).stdout.strip()
    assert version == "2.8.0"
