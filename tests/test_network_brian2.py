"""The Brian2 side of networks: neuron_group's extension (extra equations, refractory
period), build_network's schedule and delay convention, agreement with the torch module on
the runtime target, C++ standalone and Brian2CUDA code generation."""

import numpy as np
import pytest
import torch

brian2 = pytest.importorskip("brian2")

from brian2 import (SpikeMonitor, StateMonitor, defaultclock, ms, mV, msiemens,  # noqa: E402
                    run, start_scope, uA)

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.brian2 import equations, namespace, neuron_group, use_device  # noqa: E402
from hh_plugin.brian2.network import build_network  # noqa: E402
from hh_plugin.model import TRAUB_MILES  # noqa: E402
from hh_plugin.network import (CurrentInput, NetworkSpec, OneToOne, Population,  # noqa: E402
                               Projection, SpikeTrains, current_pulse, exponential_conductance,
                               exponential_current)
from hh_plugin.torch.network import NetworkModule  # noqa: E402

from test_network_torch import _mixed_net, first_changed_row, single_spike_net  # noqa: E402


def run_brian2(spec, steps, record=("V",), prefix=""):
    net = build_network(spec, steps=steps, record=record, name_prefix=prefix)
    net.run()
    return net


def run_torch(spec, steps, record=("V",)):
    with torch.no_grad():
        return NetworkModule(spec, dtype=torch.float64)(steps=steps, record=record)


# -------------------------------------------------------------- neuron_group extension
def test_extra_equations_add_synaptic_variables_and_keep_the_plugins_group(numpy_target):
    spec = HHSpec()
    plain = neuron_group(3, spec, current=10 * uA, V_init=-65.0)
    group = neuron_group(3, spec, current="I0 + ge*(Ee - V)", V_init=-65.0,
                         extra_equations="dge/dt = -ge/taue : siemens\nI0 : amp",
                         namespace={"Ee": 0 * mV, "taue": 5 * ms})
    # the plugin's initial state and spike rule are kept
    np.testing.assert_allclose(group.m[:], plain.m[:])
    assert group.m[0] > 0.01
    assert group.events == plain.events
    assert group._refractory == plain._refractory
    group.I0 = 10 * uA
    group.ge = 0.5 * msiemens
    mon = StateMonitor(group, ["ge"], record=[0], when="end")
    run(1 * ms)
    # exponential Euler decays ge exactly: ge(t) = ge(0) exp(-t/taue)
    assert mon.ge[0][-1] / msiemens == pytest.approx(0.5 * np.exp(-1.0 / 5.0), rel=1e-12)


def test_extra_equations_are_checked(numpy_target):
    with pytest.raises(ValueError, match=r"define \['m'\]"):
        neuron_group(2, current="parameter", extra_equations="m : 1")
    with pytest.raises(TypeError, match="extra_equations must be"):
        neuron_group(2, extra_equations=3)
    with pytest.raises(TypeError, match="does not take threshold"):
        neuron_group(2, threshold="V > 0*mV and t > 1*ms")


def test_refractory_period_is_brian2s_rule(numpy_target):
    """``refractory=3*ms`` spikes as a hand-written group with threshold 'V >= V_th' and
    refractory=3*ms; the default rule gives one spike per upward crossing."""
    defaultclock.dt = 0.1 * ms
    spec = HHSpec(model=TRAUB_MILES)
    current = 5e-3  # uA: fast repetitive firing
    ours = neuron_group(1, spec, current=current * uA, V_init=-65.0, refractory=3 * ms)
    eqs = equations(spec)
    hand = brian2.NeuronGroup(1, eqs, threshold="V >= -20*mV", refractory=3 * ms,
                              method="exponential_euler", namespace=namespace())
    hand.V = -65 * mV
    for name in spec.parameters:
        setattr(hand, name, getattr(ours, name)[:])
    for gate in TRAUB_MILES.gate_names:
        setattr(hand, gate, getattr(ours, gate)[:])
    hand.I = current * uA
    a, b = SpikeMonitor(ours), SpikeMonitor(hand)
    run(50 * ms)
    assert a.num_spikes > 5
    np.testing.assert_array_equal(a.t / ms, b.t / ms)
    with pytest.raises(ValueError, match="refractory"):
        neuron_group(1, refractory=-1.0)
    with pytest.raises(TypeError, match="ms"):
        neuron_group(1, refractory=3 * mV)


# ------------------------------------------------------------------ schedule and delays
@pytest.mark.parametrize("delay", [0, 1, 3])
@pytest.mark.parametrize("kind", ["pulse", "exp_current", "exp_conductance"])
def test_delay_convention_matches_the_torch_module(numpy_target, delay, kind):
    synapse = {"pulse": current_pulse("p"), "exp_current": exponential_current("x", 2.0),
               "exp_conductance": exponential_conductance("e", 5.0, 0.0)}[kind]
    weight = 0.05 if kind == "exp_conductance" else 5.0
    net = run_brian2(single_spike_net(synapse, delay, weight), 20, prefix="a_")
    base = run_brian2(single_spike_net(synapse, delay, 0.0), 20, prefix="b_")
    v, v0 = net.trace("T", "V")[:, 0], base.trace("T", "V")[:, 0]
    assert first_changed_row(v, v0) == 5 + delay
    torch_v = run_torch(single_spike_net(synapse, delay, weight), 20).traces["T"]["V"]
    assert np.abs(torch_v[:, 0].numpy() - v).max() <= 1e-9


def test_zero_delay_between_populations_uses_the_same_step(numpy_target):
    def net(delay, weight):
        return NetworkSpec([Population("A", 1, initial={"V": -65.0}),
                            Population("B", 1, initial={"V": -65.0})],
                           [Projection("A", "B", OneToOne(weight), current_pulse(), delay=delay)],
                           [CurrentInput("A", 40.0)])
    base = run_brian2(net(0, 0.0), 300, prefix="base_")
    k_spike = int(base.spikes("A")[0][0])
    for delay in (0, 1):
        b = run_brian2(net(delay, 20.0), 300, prefix=f"d{delay}_")
        assert first_changed_row(b.trace("B", "V")[:, 0], base.trace("B", "V")[:, 0]) == \
            k_spike + delay


def test_mixed_network_agrees_with_torch_on_the_runtime_target(numpy_target):
    """Two models, three synapse models, per-synapse delays, zero delay, Poisson input,
    time-varying and constant currents, a refractory population, dense and sparse."""
    for dense in (False, True):
        spec = _mixed_net(dense)
        steps = 1000
        record = ("V", "g_e", "I_x")
        b = run_brian2(spec, steps, record, prefix=f"m{int(dense)}_")
        t = run_torch(spec, steps, record)
        for pop in spec.populations:
            spikes = t.spikes[pop].numpy()
            assert spikes.sum() > 5
            np.testing.assert_array_equal(spikes, b.spike_raster(pop, steps))
            for var, values in t.traces[pop].items():
                scale = max(1.0, values.abs().max().item())
                assert np.abs(values.numpy() - b.trace(pop, var)).max() <= 1e-9 * scale, var


def test_build_network_checks_its_arguments(numpy_target):
    spec = _mixed_net(False)
    with pytest.raises(ValueError, match="give steps"):
        build_network(spec)
    with pytest.raises(ValueError, match="3000 steps"):
        build_network(spec, steps=4000)
    net = build_network(spec, steps=100)
    with pytest.raises(ValueError, match="built for 100"):
        net.run(200)
    with pytest.raises(TypeError, match="NetworkSpec"):
        build_network(HHSpec())


def test_brian2_objects_are_readable_brian2(numpy_target):
    spec = NetworkSpec([Population("E", 4, HHSpec(model=TRAUB_MILES))],
                       [Projection("S", "E", OneToOne(6e-6), exponential_conductance(
                           "e", 5.0, 0.0), delay=2)],
                       [SpikeTrains("S", 4, [1, 2], [0, 3])], dt=0.1)
    net = build_network(spec, steps=10)
    group = net.groups["E"]
    assert "dg_e/dt" in str(group.equations) or "g_e" in group.equations.diff_eq_names
    assert "g_e*(" in str(group.equations["I"].expr)
    (syn,) = net.synapses["S_to_E_e"]
    assert float(syn.delay[:]) == pytest.approx(float(0.1 * ms))  # d = 2 steps: (d - 1) dt
    assert np.allclose(syn.w[:] / msiemens, 6e-6)


# ------------------------------------------------------------------ C++ standalone
@pytest.mark.slow
def test_mixed_network_agrees_with_torch_in_cpp_standalone(tmp_path):
    spec = _mixed_net(False)
    steps = 2000
    start_scope()
    with use_device("cpp_standalone", directory=str(tmp_path / "net"), build_on_run=False) \
            as session:
        net = build_network(spec, steps, record=("V",))
        net.run()
        session.build(with_output=False)
    t = run_torch(spec, steps)
    for pop in spec.populations:
        np.testing.assert_array_equal(t.spikes[pop].numpy(), net.spike_raster(pop, steps))
        assert np.abs(t.traces[pop]["V"].numpy() - net.trace(pop, "V")).max() <= 1e-6
    start_scope()


# -------------------------------------------------- Brian2CUDA code generation (slow)
from test_standalone import cuda_env  # noqa: E402,F401  (fixture: the Brian2CUDA environment)

_CUDA_SCRIPT = r"""
import sys
sys.path.insert(0, "tests")
import numpy as np, brian2
from hh_plugin.brian2 import use_device
from hh_plugin.brian2.network import build_network
from hh_plugin.network import (CurrentInput, FixedProbability, NetworkSpec, PoissonInput,
    Population, Projection, RandomDelay, current_pulse, exponential_conductance,
    exponential_current)
from hh_plugin import HHSpec
from hh_plugin.model import TRAUB_MILES
pops = [Population("A", 50, HHSpec(method="rk4"), seed=1),  # RK4 reaches CUDA code too
        Population("B", 20, HHSpec(model=TRAUB_MILES), seed=2, refractory=1.0)]
spec = NetworkSpec(pops, [
    Projection("A", "B", FixedProbability(0.2, 1e-5, seed=3),
               exponential_conductance("e", 3.0, 0.0), delay=0),
    Projection("B", "A", FixedProbability(0.2, 1.0, seed=4), exponential_current("x", 2.0),
               delay=RandomDelay(1, 4, 5)),
    Projection("S", "A", FixedProbability(0.2, 50.0, seed=6), current_pulse(), delay=2)],
    [CurrentInput("A", 8.0), PoissonInput("S", 10, 100.0, seed=7)], dt=0.05)
with use_device("cuda_standalone", directory=sys.argv[1], build_on_run=False,
                compute_capability=9.0) as session:
    # a compile check: optimisation does not change whether the generated code compiles
    # for sm_90, and -O0 (NVVM, ptxas) takes 5-25 % off each nvcc run
    # (Brian2CUDA's preferences exist once use_device has loaded it)
    brian2.prefs["devices.cuda_standalone.cuda_backend.extra_compile_args_nvcc"] = list(
        brian2.prefs["devices.cuda_standalone.cuda_backend.extra_compile_args_nvcc"]) + [
        "-Xcompiler", "-O0", "-Xcicc", "-O0", "-Xptxas", "-O0"]
    net = build_network(spec, steps=200, record=())
    net.run()
    session.build(compile=False, run=False, with_output=False)
print("generated")
"""


# The code objects that carry the plugin's generated code: the state updaters (its
# equations, RK4 for A), thresholds (its spike rule), the synapses' on_pre, the gates'
# steady-state initialisation (exprel), the spike rule's V_start and the current pulses'
# clearing, and the Poisson input. Brian2CUDA's own templates (spike queues, synapse
# creation, monitors) and static files are Brian2CUDA's, tested by Brian2CUDA; compiling
# them as well tripled this test's nvcc time (37 objects at ~9 s of CPU each on the 2-core
# Zen 4, the front end dominating), and `benchmarks/cuda_build_time.py` builds and links a
# whole project.
_PLUGIN_CODE_OBJECTS = ("A_stateupdater_codeobject", "B_stateupdater_codeobject",
                        "A_spike_thresholder_codeobject", "B_spike_thresholder_codeobject",
                        "A_to_B_e_d0_pre_codeobject", "B_to_A_x_pre_codeobject",
                        "S_to_A_syn_pre_codeobject", "A_group_variable_set_conditional_codeobject",
                        "A_V_start_codeobject", "A_clear_pulses_codeobject", "S_codeobject")


@pytest.mark.slow
def test_network_cuda_standalone_code_objects_compile_for_sm90(cuda_env, tmp_path):  # noqa: F811
    import subprocess

    from test_standalone import ROOT

    python, environ = cuda_env
    project = tmp_path / "cuda_net"
    proc = subprocess.run([str(python), "-c", _CUDA_SCRIPT, str(project)], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    assert "generated" in proc.stdout
    code_objects = project / "code_objects"
    generated = {p.stem for p in code_objects.glob("*.cu")}
    missing = set(_PLUGIN_CODE_OBJECTS) - generated
    assert not missing, f"code objects not generated: {sorted(missing)} (there are {sorted(generated)})"
    # population A integrates with the plugin's RK4: four stages in its CUDA state updater
    updater = (code_objects / "A_stateupdater_codeobject.cu").read_text()
    assert "__k_1_V" in updater and "__k_4_V" in updater and "__global__" in updater
    assert "g_e" in (code_objects / "B_stateupdater_codeobject.cu").read_text()
    # nvcc compiles each of them for sm_90 with the project's own makefile rule and flags
    targets = [f"code_objects/{name}.o" for name in _PLUGIN_CODE_OBJECTS]
    make = subprocess.run(["make", "-j2", *targets], cwd=project, env=environ,
                          capture_output=True, text=True, timeout=1200)
    assert make.returncode == 0, make.stdout[-4000:] + make.stderr[-6000:]
    for target in targets:
        assert (project / target).stat().st_size > 0, target
