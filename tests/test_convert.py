"""Issue 12, from Norse to the network: the leaky-integrator population, the converter,
and the digits model transferred to Brian2 with identical spikes and predictions."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import norse.torch as norse
from norse.torch.functional.leaky_integrator import LIParameters

from hh_plugin import HHSpec
from hh_plugin.convert import network_from_norse
from hh_plugin.network import (CurrentInput, Dense, NetworkSpec, Population, Projection,
                               current_pulse, exponential_conductance, exponential_current)
from hh_plugin.network.leaky_integrator import LISpec
from hh_plugin.torch import HH, HHRecurrent
from hh_plugin.torch.network import NetworkModule

ROOT = Path(__file__).resolve().parents[1]
DT = 0.1e-3  # s
LI64 = LIParameters(tau_syn_inv=torch.tensor(1 / 1e-3, dtype=torch.float64),
                    tau_mem_inv=torch.tensor(1 / 2e-3, dtype=torch.float64))


def small_model(recurrent=False):
    torch.manual_seed(0)
    # the default initial state: rest (-70.68 mV), which the converter passes on as a number
    hidden = (HHRecurrent(12, 12, p=HHSpec(), dt=DT) if recurrent
              else HH(p=HHSpec(), dt=DT))
    return norse.SequentialState(torch.nn.Linear(8, 12), torch.nn.ReLU(), hidden,
                                 torch.nn.Linear(12, 4), norse.LI(p=LI64, dt=DT),
                                 return_hidden=True).double()


def norse_run(model, x, steps):
    with torch.no_grad():
        outputs, _ = model(x.unsqueeze(0).expand(steps, *x.shape))
    return outputs[2].numpy(), outputs[4].numpy()


# --------------------------------------------------------------- leaky integrator
def test_leaky_integrator_defaults_and_dict_are_norses():
    norse_defaults = LIParameters()
    spec = LISpec()
    for name in LISpec.parameter_names:
        assert getattr(spec, name) == float(getattr(norse_defaults, name))
    assert LISpec.from_dict(spec.to_dict()) == spec
    assert LISpec.from_norse(LI64) == LISpec(1000.0, 500.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        LISpec(tau_mem_inv=float("nan"))
    with pytest.raises(ValueError, match="unknown"):
        LISpec.from_dict({"kind": "leaky_integrator", "tau": 1.0})


def li_network():
    rng = np.random.default_rng(0)
    return NetworkSpec(
        [Population("H", 20, HHSpec(), initial={"V": -65.0}),
         Population("R", 3, LISpec(1000.0, 500.0, -0.5), initial={"i": 0.2})],
        [Projection("H", "R", Dense(rng.normal(0, 1, (3, 20))), current_pulse("p"), delay=0),
         Projection("H", "R", Dense(rng.normal(0, 1, (3, 20))), exponential_current("x", 2.0),
                    delay=2)],
        [CurrentInput("H", rng.uniform(5, 20, 20)), CurrentInput("R", [0.1, 0.2, 0.3])],
        dt=0.1)


def test_leaky_integrator_population_is_norses_step_on_both_backends(numpy_target):
    from hh_plugin.brian2.network import build_network

    spec = li_network()
    steps = 80
    with torch.no_grad():
        out = NetworkModule(spec, dtype=torch.float64)(steps=steps, record=("v", "i", "I_x"))
    # Norse's own step, fed the input the population received
    x = out.traces["R"]["I_x"].numpy()  # recorded after the step's decay
    W = torch.tensor(spec.connections["H_to_R_p"].weight_matrix)
    state = norse.LICell(p=LIParameters(*(torch.tensor(v, dtype=torch.float64) for v in
                                          (1000.0, 500.0, -0.5))), dt=1e-4)
    s = None
    z = out.spikes["H"]
    vs = []
    used = x / np.exp(-0.1 / 2.0)  # the value each step used, before its decay
    for k in range(steps):
        current = z[k] @ W.T + torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
        current = current + torch.as_tensor(used[k])
        if s is None:
            from norse.torch.functional.leaky_integrator import LIState
            s = LIState(torch.full((3,), -0.5, dtype=torch.float64),
                        torch.full((3,), 0.2, dtype=torch.float64))
        v, s = state(current, s)
        vs.append(v.numpy())
    assert z.sum() > 10
    np.testing.assert_allclose(out.traces["R"]["v"].numpy(), np.array(vs), atol=1e-12)

    net = build_network(spec, steps, record=("V", "v", "i"))
    net.run()
    np.testing.assert_array_equal(net.spike_raster("H", steps), z.numpy())
    assert np.abs(net.trace("R", "v") - out.traces["R"]["v"].numpy()).max() <= 1e-12
    assert np.abs(net.trace("R", "i") - out.traces["R"]["i"].numpy()).max() <= 1e-12
    assert not net.spike_raster("R", steps).any()


def test_leaky_integrator_refusals_and_round_trip():
    with pytest.raises(ValueError, match="emits no spikes"):
        NetworkSpec([Population("R", 2, LISpec()), Population("H", 2)],
                    [Projection("R", "H", Dense(np.ones((2, 2))), current_pulse())])
    with pytest.raises(ValueError, match="current synapses only"):
        NetworkSpec([Population("H", 2), Population("R", 2, LISpec())],
                    [Projection("H", "R", Dense(np.ones((2, 2)) * 0.01),
                                exponential_conductance("e", 5.0, 0.0))])
    with pytest.raises(ValueError, match="refractory"):
        Population("R", 2, LISpec(), refractory=1.0)
    spec = li_network()
    again = NetworkSpec.from_dict(spec.to_dict())
    assert again.populations["R"].spec == spec.populations["R"].spec
    np.testing.assert_array_equal(again.initial_state("R")["i"], [0.2, 0.2, 0.2])


# --------------------------------------------------------------------- converter
@pytest.mark.parametrize("recurrent", [False, True])
def test_converted_model_gives_norses_spikes_and_readout(numpy_target, recurrent):
    from hh_plugin.brian2.network import build_network

    model = small_model(recurrent)
    x = torch.rand(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 40
    steps = 60
    z_ref, v_ref = norse_run(model, x, steps)
    converted = network_from_norse(model, x, steps=steps)
    hh, ro = converted.layers[2], converted.layers[4]
    rest = model[2].resting_state()
    for name, value in converted.spec.initial_state(hh).items():
        if name in rest:
            np.testing.assert_allclose(value, rest[name], rtol=1e-12, atol=0)
    with torch.no_grad():
        out = NetworkModule(converted.spec, dtype=torch.float64)(steps=steps, record=("v",))
    z = converted.per_sample(out.spikes[hh], hh)
    v = converted.per_sample(out.traces[ro]["v"], ro)
    assert z_ref.sum() > 10
    np.testing.assert_array_equal(z, z_ref)
    assert np.abs(v - v_ref).max() <= 1e-12

    net = build_network(converted.spec, steps, record=("v",))
    net.run()
    np.testing.assert_array_equal(converted.per_sample(net.spike_raster(hh, steps), hh), z_ref)
    assert np.abs(converted.per_sample(net.trace(ro, "v"), ro) - v_ref).max() <= 1e-12


def test_converter_names_what_it_cannot_represent():
    x = torch.rand(2, 8, dtype=torch.float64)
    hh = HH(p=HHSpec(), dt=DT, V_init=-70.0)
    li = norse.LI(p=LI64, dt=DT)
    bad = norse.SequentialState(torch.nn.Linear(8, 4), hh, torch.nn.Dropout(),
                                torch.nn.Linear(4, 3), li)
    with pytest.raises(TypeError, match=r"layer 2 \(Dropout\)"):
        network_from_norse(bad, x, steps=5)
    twice = norse.SequentialState(torch.nn.Linear(8, 4), hh, torch.nn.Linear(4, 4),
                                  torch.nn.Linear(4, 3), li)
    with pytest.raises(TypeError, match="two Linear layers in a row"):
        network_from_norse(twice, x, steps=5)
    with pytest.raises(TypeError, match="ends the model"):
        network_from_norse(norse.SequentialState(torch.nn.Linear(8, 4), hh,
                                                 torch.nn.Linear(4, 3)), x, steps=5)
    with pytest.raises(ValueError, match="no neuron layer"):
        network_from_norse(torch.nn.Sequential(torch.nn.Linear(8, 4)), x, steps=5)
    random = HH(p=HHSpec(), dt=DT, V_init="uniform")
    with pytest.raises(TypeError, match="random"):
        network_from_norse(torch.nn.Sequential(torch.nn.Linear(8, 4), random), x, steps=5)
    with pytest.raises(ValueError, match="steps"):
        network_from_norse(torch.nn.Sequential(torch.nn.Linear(8, 4), hh), x)
    other_dt = norse.LI(p=LI64, dt=2 * DT)
    with pytest.raises(ValueError, match="different time steps"):
        network_from_norse(torch.nn.Sequential(torch.nn.Linear(8, 4), hh,
                                               torch.nn.Linear(4, 3), other_dt), x, steps=5)
    model = small_model()
    before = model[0].weight.dtype
    network_from_norse(model.float(), x.float(), steps=3)
    assert model[0].weight.dtype == torch.float32 != before  # the user's model is untouched


# ------------------------------------------------------------------- digits transfer
@pytest.mark.slow
def test_trained_digits_model_runs_in_brian2_with_identical_predictions():
    """``examples/digits_in_brian2.py --quick``: quick training, 40 test images, Norse,
    the torch network, Brian2 runtime and C++ standalone in float64."""
    proc = subprocess.run([sys.executable, "examples/digits_in_brian2.py", "--quick",
                           "--no-plots"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines()
            if line.startswith(("Norse", "plugin", "Brian2 runtime", "Brian2 C++"))]
    assert len(rows) == 4, proc.stdout
    for row in rows:
        fields = row.split()
        assert "True True" in " ".join(fields), row  # identical spikes, same predictions
    print(proc.stdout[-1500:])


def test_network_without_projections_keeps_its_dtype():
    spec = NetworkSpec([Population("R", 2, LISpec())], [], [CurrentInput("R", 1.0)], dt=0.1)
    with torch.no_grad():
        out = NetworkModule(spec, dtype=torch.float64)(steps=3, record=("v",))
    assert out.traces["R"]["v"].dtype == torch.float64
