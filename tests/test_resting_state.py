"""The resting steady state (hh_plugin.model.rest) and the Norse modules' deterministic
default initial state built from it (issue 21: Norse's state contract)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.model import (HODGKIN_HUXLEY, MORRIS_LECAR, TRAUB_MILES, WANG_BUZSAKI,
                             ChannelDefinition, GateDefinition, ModelDefinition,
                             ParameterDefinition as P, initial_voltage, steady_state_gates)
from hh_plugin.model.rest import NoRestingState, UnstableRest, is_stable, resting_state
from hh_plugin.model.vector_field import evaluate
from hh_plugin.torch import (HH, HHCell, HHParameters, HHRecurrent, HHRecurrentCell,
                             initial_state, resting_voltage)

STABLE_MODELS = [HODGKIN_HUXLEY, WANG_BUZSAKI, MORRIS_LECAR]


def _derivatives(model, state, parameters=None):
    values = {**model.defaults, **(parameters or {})}
    point = [state["V"], *(state[g] for g in model.gate_names)]
    return evaluate(model, "numpy", values, point, 0.0)[0]


def _user_model(name, parameters, gates, channels):
    return ModelDefinition(name=name, parameters=parameters + (P("C", 1.0, "uF"),
                                                               P("V_th", 0.0, "mV")),
                           gates=gates, channels=channels)


# ------------------------------------------------------------------ hh_plugin.model.rest
@pytest.mark.parametrize("model", STABLE_MODELS + [TRAUB_MILES], ids=lambda m: m.name)
def test_rest_is_an_equilibrium_with_gates_at_steady_state(model):
    state = resting_state(model)
    assert set(state) == set(model.state_names)
    for derivative in _derivatives(model, state):      # dV/dt (mV/ms), dx/dt (1/ms)
        assert abs(float(derivative)) < 1e-9
    steady = steady_state_gates(model, state["V"])
    for gate in model.gate_names:
        assert state[gate] == pytest.approx(float(steady[gate]), rel=1e-12)


@pytest.mark.parametrize("model", STABLE_MODELS, ids=lambda m: m.name)
def test_a_module_started_at_rest_stays_there(model):
    # the integrator is the independent check: 20 ms at zero input, float64
    dt_ms = model.max_step() / 2
    steps = int(round(20.0 / dt_ms))
    module = HH(p=HHSpec(model=model), dt=dt_ms * 1e-3, record_states=True)
    assert bool(is_stable(model, resting_state(model)["V"]))
    with torch.no_grad():
        z, states = module(torch.zeros(steps, 2, dtype=torch.float64))
    assert z.sum() == 0
    rest = resting_state(model)
    for name in model.state_names:
        assert np.abs(getattr(states, name).numpy() - rest[name]).max() < 1e-9


def test_user_models_rest_where_the_currents_balance():
    # two ohmic channels: V* = (gA EA + gB EB)/(gA + gB), whatever the solver
    ohmic = _user_model("rest_test_two_ohmic", (P("EA", -80.0, "mV"), P("gA", 0.2, "mS"),
                                                P("EB", 10.0, "mV"), P("gB", 0.05, "mS")),
                        (), (ChannelDefinition("A", "gA", "EA"),
                             ChannelDefinition("B", "gB", "EB")))
    assert float(resting_state(ohmic)["V"]) == pytest.approx((0.2 * -80 + 0.05 * 10) / 0.25,
                                                             abs=1e-10)
    per_neuron = resting_state(ohmic, {"gB": np.array([0.0, 0.2])})["V"]
    np.testing.assert_allclose(per_neuron, [-80.0, -35.0], atol=1e-10)


def test_bistable_user_model_rests_at_the_hyperpolarised_stable_state():
    # a leak and an instantaneous persistent sodium current: an N-shaped I-V curve with
    # three equilibria; the middle one is unstable, rest is the lowest
    model = _user_model("rest_test_bistable",
                        (P("EL", -70.0, "mV"), P("gL", 1.0, "mS"), P("ENa", 50.0, "mV"),
                         P("gP", 3.0, "mS")),
                        (GateDefinition.instantaneous("p", x_inf="1/(1 + exp(-(V + 40)/4))"),),
                        (ChannelDefinition("L", "gL", "EL"),
                         ChannelDefinition("NaP", "gP*p", "ENa")))
    V = np.linspace(-100, 60, 16001)
    F = np.asarray(_derivatives(model, {"V": V})[0])  # dV/dt, mV/ms
    zeros = V[:-1][np.sign(F[:-1]) != np.sign(F[1:])]
    assert len(zeros) == 3
    rest = float(resting_state(model)["V"])
    assert rest == pytest.approx(zeros[0], abs=0.01)
    assert list(is_stable(model, zeros + 0.005)) == [True, False, True]


def test_models_without_a_rest():
    # Traub-Miles with COBAHH's values fires on its own: one equilibrium, unstable
    V = resting_state(TRAUB_MILES)["V"]
    assert not is_stable(TRAUB_MILES, V)
    with pytest.raises(NoRestingState, match="no stable equilibrium"):
        resting_state(TRAUB_MILES, stable_only=True)
    depolarising = _user_model("rest_test_no_equilibrium", (P("EL", 100.0, "mV"),
                                                            P("gL", 0.1, "mS")),
                               (), (ChannelDefinition("L", "gL", "EL"),))
    with pytest.raises(NoRestingState, match="no equilibrium"):
        resting_state(depolarising)
    with pytest.raises(ValueError, match="no parameter 'gX'"):
        resting_state(HODGKIN_HUXLEY, {"gX": 1.0})
    with pytest.raises(ValueError, match="NaN"):
        resting_state(HODGKIN_HUXLEY, {"gL": float("nan")})
    with pytest.raises(ValueError, match="different lengths"):
        resting_state(HODGKIN_HUXLEY, {"gL": [0.1, 0.2], "gK": [30.0, 35.0, 40.0]})
    with pytest.raises(ValueError, match="1-D"):
        resting_state(HODGKIN_HUXLEY, {"gL": [[0.1, 0.2]]})


def test_per_neuron_parameters_rest_per_neuron():
    gL = np.array([0.01, 0.03, 0.3, 1.0])
    V = resting_state(HODGKIN_HUXLEY, {"gL": gL})["V"]
    assert V.shape == (4,)
    for j in range(4):
        assert V[j] == float(resting_state(HODGKIN_HUXLEY, {"gL": gL[j]})["V"])
    assert np.all(np.diff(V) > 0)  # more leak towards EL = -54.4 mV: depolarised
    # repeated parameter sets (solved once each) and a population of one shape
    tiled = resting_state(HODGKIN_HUXLEY, {"gL": np.tile(gL, 3), "gK": 36.0})
    np.testing.assert_array_equal(tiled["V"], np.tile(V, 3))
    assert all(value.shape == (12,) for value in tiled.values())
    # Traub-Miles' rates shifted by VT = -55 mV: a stable rest where -63 mV has none
    both = resting_state(TRAUB_MILES, {"VT": [-63.0, -55.0]})["V"]
    assert list(is_stable(TRAUB_MILES, both, {"VT": [-63.0, -55.0]})) == [False, True]


def test_documented_resting_potentials():
    import hh_plugin.model.rest as rest_module

    text = " ".join(rest_module.__doc__.split())
    stated = dict(re.findall(r"(reference HH|Wang-Buzsaki|Morris-Lecar) (-\d+\.\d\d) mV", text))
    for label, model in (("reference HH", HODGKIN_HUXLEY), ("Wang-Buzsaki", WANG_BUZSAKI),
                         ("Morris-Lecar", MORRIS_LECAR)):
        assert f"{float(resting_state(model)['V']):.2f}" == stated[label]
    equilibrium = re.search(r"only equilibrium, (-\d+\.\d\d) mV, is unstable", text).group(1)
    assert f"{float(resting_state(TRAUB_MILES)['V']):.2f}" == equilibrium


# ------------------------------------------------------------------- the Norse modules
def test_default_initial_state_is_deterministic_as_norses():
    # issue 21, failure 6: the default V was drawn anew on every call
    cell = HHCell()
    x = torch.full((2, 3), 5.0)
    z1, s1 = cell(x)
    z2, s2 = cell(x)
    assert torch.equal(z1, z2) and all(torch.equal(a, b) for a, b in zip(s1, s2))
    assert s1.V.requires_grad                         # and it requires grad, as Norse's
    state = initial_state(cell.p, (2, 3), V="rest", dtype=torch.float64)
    rest = resting_state(HODGKIN_HUXLEY)
    for name in HODGKIN_HUXLEY.state_names:
        torch.testing.assert_close(getattr(state, name),
                                   torch.full((2, 3), float(rest[name]), dtype=torch.float64),
                                   rtol=1e-12, atol=0)
    for module, x in ((HH(), torch.zeros(4, 2, 3)), (HHRecurrentCell(3, 3), torch.zeros(2, 3)),
                      (HHRecurrent(3, 3), torch.zeros(4, 2, 3))):
        _, state = module(x)
        torch.testing.assert_close(state.V, torch.full_like(state.V, float(rest["V"])))


def test_the_reference_draw_is_one_argument_away():
    x = torch.zeros(1, 50, dtype=torch.float64)
    _, a = HHCell(V_init="default")(x)
    _, b = HHCell(V_init="default")(x)
    assert not torch.equal(a.V, b.V)
    assert bool(((a.V > -70.1) & (a.V < -59.9)).all())   # U(-70, -60) mV, one small step
    seeded = HH(V_init="default", seed=4).initial_state(x)   # the Brian2 backend's draw
    np.testing.assert_array_equal(seeded.V.detach().numpy(),
                                  initial_voltage(HODGKIN_HUXLEY, (1, 50), "default", 4))


def test_bad_initial_voltage_options_are_refused():
    with pytest.raises(ValueError, match="draws nothing"):
        HHCell(seed=0)
    with pytest.raises(ValueError, match="draws nothing"):
        HHRecurrent(2, 3, V_init="rest", seed=1)
    with pytest.raises(ValueError, match="'rest'"):
        HH(V_init="resting")


def test_rest_follows_the_parameters():
    gL = [0.01, 0.1, 1.0]
    cell = HHCell(HHSpec(gL=gL))
    before = resting_voltage(HHParameters.from_spec(HHSpec(gL=gL)))
    assert before.shape == (3,)
    np.testing.assert_allclose(cell.initial_state(torch.zeros(2, 3)).V.detach().numpy(),
                               np.broadcast_to(before, (2, 3)), rtol=1e-6)
    # a trained leak reversal moves the rest: solved again for the new values
    trained = HHCell(trainable=("EL",))
    with torch.no_grad():
        trained.EL.fill_(-60.0)
    expected = float(resting_state(HODGKIN_HUXLEY, {"EL": -60.0})["V"])
    V = trained.initial_state(torch.zeros(1, 2, dtype=torch.float64)).V
    torch.testing.assert_close(V, torch.full_like(V, expected))
    assert expected < float(resting_state(HODGKIN_HUXLEY)["V"]) - 0.5  # EL 5.6 mV lower


def test_a_model_without_stable_rest_warns_and_starts_at_its_equilibrium():
    # built silently (a module always given a state needs no rest); the first use warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = HH(HHSpec(model=TRAUB_MILES), path="naive")
    with pytest.warns(UnstableRest, match="traub_miles.*fires on its own"):
        state = module.initial_state(torch.zeros(1, 2, dtype=torch.float64))
    assert float(state.V[0, 0].detach()) == pytest.approx(
        float(resting_state(TRAUB_MILES)["V"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module(torch.zeros(3, 1, 2))             # said once
        HH(HHSpec(model=TRAUB_MILES), V_init=-65.0, path="naive")(torch.zeros(3, 1, 2))


def test_a_model_without_equilibrium_runs_from_given_states_only():
    depolarising = _user_model("rest_test_module_no_equilibrium",
                               (P("EL", 100.0, "mV"), P("gL", 0.1, "mS")),
                               (), (ChannelDefinition("L", "gL", "EL"),))
    module = HH(HHSpec(model=depolarising), path="naive")
    z, state = module(torch.zeros(3, 1, 2), initial_state(module.p, (1, 2), V=-65.0))
    assert bool((state.V > -65.0).all())        # pulled up towards EL = 100 mV
    with pytest.raises(NoRestingState, match="no equilibrium"):
        module(torch.zeros(3, 1, 2))
