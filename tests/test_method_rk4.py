"""The integration method declared once (HHSpec(method=...)): the RK4 step on torch and
Brian2 (same arithmetic: float64 max |dV| <= 1e-9 mV, identical spike steps), its dt
limits, and its gradients against central differences."""

import math

import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.model import HODGKIN_HUXLEY, MORRIS_LECAR, TRAUB_MILES, WANG_BUZSAKI
from hh_plugin.model.definition import ModelDefinition
from hh_plugin.model.integrators import METHODS, brian2_description, explicit_step
from hh_plugin.model.limits import StepTooLong
from hh_plugin.torch import HH, HHCell, hh_step, initial_state
from hh_plugin.torch.functional.parameters import parameters_type
from hh_plugin.torch.fused import PathUnavailable, hh_sequence
from hh_plugin.torch.fused.cpp import compiler_available
from hh_plugin.torch.fused.step import hh_step_fused

needs_compiler = pytest.mark.skipif(compiler_available() is not None,
                                    reason=f"no C++ toolchain: {compiler_available()}")
#: (model, constant drives in uA, dt in ms) for the agreement test: each model spikes
CASES = [(HODGKIN_HUXLEY, [5.0, 10.0, 20.0], 0.025),
         (WANG_BUZSAKI, [0.5, 1.0, 3.0], 0.025),
         (MORRIS_LECAR, [150.0, 200.0, 300.0], 0.1),
         (TRAUB_MILES, [2e-4, 5e-4, 1e-3], 0.025)]


# ------------------------------------------------------------------ the specification
def test_method_is_a_plain_string_option_with_the_reference_default():
    assert HHSpec().method == "exponential_euler"
    spec = HHSpec(method="rk4", gL=0.1)
    assert spec.method == "rk4" and isinstance(spec.method, str)
    assert spec.replace(gL=0.2).method == "rk4"
    assert spec.to_dict()["method"] == "rk4"
    assert "method" not in HHSpec().to_dict()  # older readers read default specs unchanged
    assert HHSpec.from_dict(spec.to_dict()) == spec
    assert "method='rk4'" in repr(spec) and "method" not in repr(HHSpec())
    assert METHODS == ("exponential_euler", "rk4")


@pytest.mark.parametrize("bad", ["RK4", "euler", "", None, 4])
def test_unknown_method_is_refused_naming_the_methods(bad):
    with pytest.raises(ValueError, match=r"unknown integration method.*'exponential_euler', 'rk4'"):
        HHSpec(method=bad)


def test_parameters_carry_the_method_to_the_torch_step():
    p = parameters_type(WANG_BUZSAKI).from_spec(HHSpec(model=WANG_BUZSAKI, method="rk4"))
    assert p.method == "rk4" and p.to_spec().method == "rk4"
    assert parameters_type(WANG_BUZSAKI)().method == "exponential_euler"
    assert p.double().method == "rk4"


# ------------------------------------------------------------------------ the method
def test_explicit_step_is_fourth_order_on_a_linear_equation():
    # y' = -y: one RK4 step is the Taylor polynomial of exp(-h) to h^4 (error h^5/120)
    for h in (0.1, 0.05):
        y, = explicit_step(lambda point: [-point[0]], [1.0], h)
        assert y == pytest.approx(1 - h + h**2 / 2 - h**3 / 6 + h**4 / 24, abs=1e-15)
        assert abs(y - math.exp(-h)) == pytest.approx(h**5 / 120, rel=0.1)


def test_brian2_description_is_the_classical_rk4_with_the_input_held():
    # Brian2's own rk4 but every stage at the step's start time t (inputs held)
    assert brian2_description().splitlines() == [
        "k_1 = dt*f(x,t)", "k_2 = dt*f(x+k_1/2,t)", "k_3 = dt*f(x+k_2/2,t)",
        "k_4 = dt*f(x+k_3,t)", "x_new = x+(k_1+2*k_2+2*k_3+k_4)/6"]


def test_brian2_updater_writes_the_same_code_as_brian2s_own_rk4():
    import brian2

    from hh_plugin.brian2 import equations
    from hh_plugin.brian2.methods import state_updater

    eqs = equations(HHSpec(model=WANG_BUZSAKI, method="rk4"))  # no explicit time in them
    assert state_updater("rk4")(eqs) == brian2.StateUpdateMethod.apply_stateupdater(
        eqs, {}, method="rk4")
    assert state_updater("exponential_euler") == "exponential_euler"


def test_rk4_step_reevaluates_the_instantaneous_gate_at_each_stage():
    # Wang-Buzsaki's m = m_inf(V): held over the step (as Brian2's '(constant over dt)'
    # would), the step is first order; re-evaluated it matches a fine run to O(dt^4).
    spec = HHSpec(model=WANG_BUZSAKI, method="rk4")
    p = parameters_type(WANG_BUZSAKI).from_spec(spec)
    s0 = initial_state(p, (1,), V=-40.0, dtype=torch.float64)
    I = torch.tensor([1.0], dtype=torch.float64)

    def run(dt_ms, steps):
        s = s0
        for _ in range(steps):
            _, s = hh_step(I, s, p, dt_ms * 1e-3)
        return float(s.V)

    fine = run(0.0025, 40)
    errors = [abs(run(0.05, 2) - fine), abs(run(0.025, 4) - fine)]
    assert errors[0] / errors[1] > 12  # order > 3.5 (a frozen m gives a ratio near 2)


# ---------------------------------------------------------------- torch and Brian2
def _brian2_run(spec, drives, dt, T, **group_options):
    import brian2 as b2

    b2.start_scope()
    group = neuron_group(len(drives), spec, current=np.array(drives), V_init=-65.0,
                         dt=dt * b2.ms, **group_options)
    mon = b2.StateMonitor(group, "V", record=True, when="end")
    spikes = b2.SpikeMonitor(group)
    b2.run(int(round(T / dt)) * dt * b2.ms)
    steps = np.round(np.asarray(spikes.t / b2.ms) / dt).astype(int)
    return mon.V.T / b2.mV, sorted(zip(np.asarray(spikes.i).tolist(), steps.tolist()))


def _torch_run(spec, drives, dt, T):
    module = HH(p=spec, dt=dt * 1e-3, record_states=("V",))
    s0 = initial_state(module.p, (len(drives),), V=-65.0, dtype=torch.float64)
    current = torch.tensor(drives, dtype=torch.float64).expand(int(round(T / dt)), -1)
    with torch.no_grad():
        z, states = module(current.contiguous(), s0)
    events = sorted((int(j), int(k)) for k, j in np.argwhere(z.numpy() > 0))
    return states.V.numpy(), events


@pytest.mark.parametrize("model,drives,dt", CASES, ids=[c[0].name for c in CASES])
def test_torch_and_brian2_rk4_agree_to_round_off(numpy_target, model, drives, dt):
    spec = HHSpec(model=model, method="rk4")
    T = 30.0
    V_b, spikes_b = _brian2_run(spec, drives, dt, T)
    V_t, spikes_t = _torch_run(spec, drives, dt, T)
    assert len(spikes_t) >= 3  # a spiking case
    assert spikes_t == spikes_b
    assert np.abs(V_t - V_b).max() <= 1e-9


def test_a_timed_array_input_is_held_over_the_step_on_both_backends(numpy_target):
    # random piecewise-constant input, changed every 4 steps: Brian2's own rk4 would read
    # the next sample at t + dt/2 (about 1.6 mV off); the plugin's holds it as torch does
    b2 = numpy_target
    dt, steps, N = 0.025, 400, 3
    current = np.repeat(np.random.default_rng(0).uniform(0.0, 25.0, (steps // 4, N)), 4,
                        axis=0)
    spec = HHSpec(method="rk4")
    stim = b2.TimedArray(current * b2.uA, dt=dt * b2.ms)
    group = neuron_group(N, spec, current="stim(t, i)", V_init=-65.0, dt=dt * b2.ms,
                         namespace={"stim": stim})
    mon = b2.StateMonitor(group, "V", record=True, when="end")
    b2.run(steps * dt * b2.ms)
    module = HH(p=spec, dt=dt * 1e-3, record_states=("V",))
    s0 = initial_state(module.p, (N,), V=-65.0, dtype=torch.float64)
    with torch.no_grad():
        z, states = module(torch.tensor(current), s0)
    assert z.sum() >= 3
    assert np.abs(states.V.numpy() - mon.V.T / b2.mV).max() <= 1e-9


def test_brian2_method_argument_selects_the_plugin_rk4(numpy_target):
    # neuron_group(method='rk4') on an exponential-Euler spec integrates the spec with
    # the plugin's RK4 (instantaneous gates re-evaluated), not Brian2's rk4 on frozen gates
    spec = HHSpec(model=WANG_BUZSAKI)
    V_arg, spikes_arg = _brian2_run(spec, [1.0, 3.0], 0.025, 20.0, method="rk4")
    V_spec, spikes_spec = _brian2_run(spec.replace(method="rk4"), [1.0, 3.0], 0.025, 20.0)
    assert spikes_arg == spikes_spec
    np.testing.assert_array_equal(V_arg, V_spec)


def test_brian2_equations_hold_instantaneous_gates_only_for_exponential_euler():
    from hh_plugin.brian2 import equations

    euler = str(equations(HHSpec(model=WANG_BUZSAKI)))
    rk4 = str(equations(HHSpec(model=WANG_BUZSAKI, method="rk4")))
    assert "constant over dt" in euler
    assert "constant over dt" not in rk4


# ----------------------------------------------------------------------- dt limits
def test_max_dt_is_per_model_and_method():
    assert HODGKIN_HUXLEY.max_step() == HODGKIN_HUXLEY.max_dt == 0.1
    assert HODGKIN_HUXLEY.max_step("rk4") == 0.05
    assert WANG_BUZSAKI.max_step("rk4") == 0.05
    assert TRAUB_MILES.max_step("rk4") == 0.04
    assert MORRIS_LECAR.max_step("rk4") == 1.0
    with pytest.raises(ValueError, match="unknown integration method"):
        HODGKIN_HUXLEY.max_step("heun")


def test_a_definition_refuses_a_bad_method_limit():
    data = HODGKIN_HUXLEY.to_dict()
    kwargs = dict(name="hh_copy", parameters=HODGKIN_HUXLEY.parameters,
                  gates=HODGKIN_HUXLEY.gates, channels=HODGKIN_HUXLEY.channels)
    assert ModelDefinition(**kwargs).max_step("rk4") == data["max_dt"]  # not measured
    with pytest.raises(ValueError, match="max_dt_by_method"):
        ModelDefinition(**kwargs, max_dt_by_method={"rk4": -1.0})
    with pytest.raises(ValueError, match="unknown integration method"):
        ModelDefinition(**kwargs, max_dt_by_method={"rk5": 0.01})


@pytest.mark.parametrize("module", [HH, HHCell])
def test_torch_refuses_a_step_beyond_the_methods_limit_naming_it(module):
    module(p=HHSpec(), dt=0.08e-3)  # exponential Euler: within 0.1 ms
    with pytest.raises(StepTooLong, match=r"longer than 0.05 ms.*with method 'rk4'"):
        module(p=HHSpec(method="rk4"), dt=0.08e-3)
    p = parameters_type(HODGKIN_HUXLEY).from_spec(HHSpec(method="rk4"))
    s = initial_state(p, (1,), dtype=torch.float64)
    with pytest.raises(StepTooLong, match="'rk4'"):
        hh_step(torch.zeros(1, dtype=torch.float64), s, p, 0.08e-3)


def test_brian2_refuses_a_step_beyond_the_methods_limit_naming_it(numpy_target):
    b2 = numpy_target
    neuron_group(1, HHSpec(), dt=0.08 * b2.ms)
    with pytest.raises(StepTooLong, match=r"longer than 0.05 ms.*with method 'rk4'"):
        neuron_group(1, HHSpec(method="rk4"), dt=0.08 * b2.ms)
    with pytest.raises(StepTooLong, match="'rk4'"):
        neuron_group(1, HHSpec(), dt=0.08 * b2.ms, method="rk4")


# ----------------------------------------------------------------------- gradients
def _loss(method, path, gNa, current, steps=120, dt=0.025e-3):
    spec = HHSpec(method=method)
    p = parameters_type(HODGKIN_HUXLEY).from_spec(spec)._replace(gNa=gNa)
    s0 = initial_state(p, (2,), V=-65.0, dtype=torch.float64)
    if path == "cell":
        cell, s, total = HHCell(p=p, dt=dt), s0, 0.0
        for t in range(steps):
            _, s = cell(current[t], s)
            total = total + (s.V ** 2).sum() * 1e-3
        return total
    _, V = hh_sequence(current, s0, p, dt, record_states=("V",), path=path)
    return (V.V ** 2).sum() * 1e-3


@pytest.mark.parametrize("path", [pytest.param("fused_cpp", marks=needs_compiler),
                                  "naive", pytest.param("cell", marks=needs_compiler)])
def test_rk4_gradients_match_central_differences(path):
    torch.manual_seed(0)
    current = (8.0 + 4.0 * torch.rand(120, 2, dtype=torch.float64)).requires_grad_(True)
    gNa = torch.tensor(120.0, dtype=torch.float64, requires_grad=True)
    loss = _loss("rk4", path, gNa, current)
    g_current, g_gNa = torch.autograd.grad(loss, (current, gNa))
    eps = 1e-6
    with torch.no_grad():
        def at(gna, cur):
            return float(_loss("rk4", path, gna, cur))
        fd_gNa = (at(gNa + eps, current) - at(gNa - eps, current)) / (2 * eps)
        bump = torch.zeros_like(current)
        bump[60, 1] = eps
        fd_current = (at(gNa, current + bump) - at(gNa, current - bump)) / (2 * eps)
    assert float(g_gNa) == pytest.approx(fd_gNa, rel=1e-5)
    assert float(g_current[60, 1]) == pytest.approx(fd_current, rel=1e-5)
    assert float(g_current[60, 1]) != 0.0


# ----------------------------------------------------------------- fused kernels
FUSED_CASES = [pytest.param(*CASES[0], id="hodgkin_huxley"),
               pytest.param(*CASES[1], id="wang_buzsaki"),
               pytest.param(*CASES[2], id="morris_lecar", marks=pytest.mark.slow),
               pytest.param(*CASES[3], id="traub_miles", marks=pytest.mark.slow)]


@needs_compiler
@pytest.mark.parametrize("model,drives,dt", FUSED_CASES)
def test_fused_rk4_kernels_equal_the_torch_step(model, drives, dt):
    # the sequence kernel and the single-step op, generated from the same tableau
    p = parameters_type(model).from_spec(HHSpec(model=model, method="rk4"))
    s0 = initial_state(p, (len(drives),), V=-65.0, dtype=torch.float64)
    current = torch.tensor(drives, dtype=torch.float64).expand(int(round(20.0 / dt)), -1)
    current = current.contiguous()
    with torch.no_grad():
        z_naive, naive = hh_sequence(current, s0, p, dt * 1e-3, path="naive",
                                     record_states=True)
        z_fused, fused = hh_sequence(current, s0, p, dt * 1e-3, path="fused_cpp",
                                     record_states=True)
        s, z_step, V_step = s0, [], []
        for t in range(current.shape[0]):
            z, s = hh_step_fused(current[t], s, p, dt * 1e-3)
            z_step.append(z)
            V_step.append(s.V)
    assert z_naive.sum() >= 2
    torch.testing.assert_close(z_fused, z_naive, rtol=0, atol=0)
    torch.testing.assert_close(torch.stack(z_step), z_naive, rtol=0, atol=0)
    assert float((fused.V - naive.V).abs().max()) <= 1e-9
    assert float((torch.stack(V_step) - naive.V).abs().max()) <= 1e-9


def test_paths_report_the_methods_their_kernels_implement():
    from hh_plugin.torch.fused.codegen import FUSED_METHODS, step_program, TRITON
    from hh_plugin.torch.fused.triton_source import generate_triton

    assert FUSED_METHODS == {"fused_cpp": ("exponential_euler", "rk4"),
                             "triton": ("exponential_euler", "rk4")}
    source = generate_triton(WANG_BUZSAKI, "rk4")
    compile(source, "hh_triton_rk4", "exec")  # valid Python (Triton itself is not here)
    assert "f_k4_V" in source and "f_k4_V" not in generate_triton(WANG_BUZSAKI)
    with pytest.raises(ValueError, match="synaptic"):
        step_program(HODGKIN_HUXLEY, TRITON, synaptic=True, method="rk4")


def test_network_module_runs_rk4_populations_on_the_step_loop():
    from hh_plugin.network import NetworkSpec, Population
    from hh_plugin.torch.network import NetworkModule

    spec = NetworkSpec([Population("E", 2, HHSpec(method="rk4"))], dt=0.025)
    module = NetworkModule(spec, dtype=torch.float64)
    with pytest.raises(PathUnavailable, match="exponential Euler only"):
        module(steps=10, path="fused")
    with torch.no_grad():
        module(currents={"E": torch.full((10, 2), 10.0, dtype=torch.float64)}, steps=10)


from hh_plugin.brian2 import neuron_group  # noqa: E402  (after the torch-only tests' imports)


@needs_compiler
@pytest.mark.parametrize("model,drives,dt", [FUSED_CASES[1], FUSED_CASES[2]])
def test_fused_rk4_backward_equals_autograd_through_the_step(model, drives, dt):
    # models with an instantaneous gate (m of Wang-Buzsaki, M of Morris-Lecar): the
    # generated adjoint differentiates it at every stage
    torch.manual_seed(1)
    current = (torch.tensor(drives, dtype=torch.float64)
               * (0.8 + 0.4 * torch.rand(200, len(drives), dtype=torch.float64)))
    grads = {}
    for path in ("naive", "fused_cpp"):
        I = current.clone().requires_grad_(True)
        p = parameters_type(model).from_spec(HHSpec(model=model, method="rk4"))
        leaves = {k: getattr(p, k).clone().requires_grad_(True) for k in model.parameter_names}
        p = p._replace(**leaves)
        s0 = initial_state(p, (len(drives),), V=-65.0, dtype=torch.float64)
        _, states = hh_sequence(I, s0, p, dt * 1e-3, path=path, record_states=("V",))
        loss = (states.V ** 2).sum() * 1e-3
        inputs = [I, *leaves.values()]
        grads[path] = [torch.zeros_like(x) if g is None else g for x, g in zip(
            inputs, torch.autograd.grad(loss, inputs, allow_unused=True))]
    assert float(grads["naive"][0].abs().max()) > 0
    for name, a, b in zip(["I", *model.parameter_names], grads["naive"], grads["fused_cpp"]):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12, msg=name)
