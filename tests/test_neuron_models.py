"""NEURON backend, single neurons: the generated NMODL mechanism, the cells' units and the
agreement of NEURON (CVODE, tight tolerance) with the converged reference solution of
every shipped model and a user-defined one (spike times within 0.01 ms over 100 ms)."""

import math

import numpy as np
import pytest

from hh_plugin import HHSpec
from hh_plugin.model.definition import ChannelDefinition, GateDefinition, ModelDefinition
from hh_plugin.model.definition import ParameterDefinition
from hh_plugin.model.hodgkin_huxley import HODGKIN_HUXLEY
from hh_plugin.model.morris_lecar import MORRIS_LECAR
from hh_plugin.model.reference import converged_spike_times
from hh_plugin.model.traub_miles import TRAUB_MILES
from hh_plugin.model.wang_buzsaki import WANG_BUZSAKI
from hh_plugin.neuron import Integration, generate_mechanism
from hh_plugin.neuron.nmodl import content_hash

import neuron_support
from neuron_support import USER_MODEL

mechanisms = neuron_support.mechanisms  # the session fixture

#: (model, constant current in uA): 100 ms of regular firing each (Morris-Lecar, slow: 2
#: spikes; the others 5 to 11).
DRIVES = [(HODGKIN_HUXLEY, 10.0), (WANG_BUZSAKI, 1.0), (MORRIS_LECAR, 150.0),
          (TRAUB_MILES, 5e-4), (USER_MODEL, 10.0)]
DURATION = 100.0
TOLERANCE_MS = 0.01


# ------------------------------------------------------------------ generated NMODL
def test_mechanism_is_generated_from_the_definition():
    mech = generate_mechanism(WANG_BUZSAKI)
    src = mech.source
    assert mech.suffix == f"wang_buzsaki_{content_hash(WANG_BUZSAKI)}"
    assert f"SUFFIX {mech.suffix}" in src and "THREADSAFE" in src
    # defaults from the definition, capacitance and threshold left to the cell
    assert "gNa = 35.0 (mS)" in src and "phi = 5.0 (1)" in src
    assert "C = " not in src and "V_th" not in src
    # instantaneous m is ASSIGNED, computed from its rates; h and n are states
    assert "STATE {\n    h\n    n\n}" in src
    assert "m = (alpha_m*(1.0/(alpha_m + beta_m)))" in src
    # the rate factor multiplies the derivative, exprel is a helper function
    assert "h' = (phi_h*" in src and "phi_h = phi" in src and "FUNCTION exprel(x)" in src
    assert mech.range_name("gNa") == f"gNa_{mech.suffix}"


def test_relaxing_gate_and_content_hash():
    mech = generate_mechanism(MORRIS_LECAR)
    assert "W' = ((1.0/tau_W)*(inf_W + ((-1.0)*W)))" in mech.source or \
        "W' = ((inf_W + ((-1.0)*W))*(1.0/tau_W))" in mech.source
    changed = ModelDefinition(**{**{k: getattr(MORRIS_LECAR, k) for k in (
        "name", "gates", "channels", "initial_voltage", "initial_gates")},
        "parameters": tuple(p if p.name != "g_K" else ParameterDefinition("g_K", 9.0, "mS")
                            for p in MORRIS_LECAR.parameters)})
    assert content_hash(changed) != content_hash(MORRIS_LECAR)
    assert generate_mechanism(changed).suffix != mech.suffix


def _tiny(parameter_names, gate="x"):
    params = tuple(ParameterDefinition(n, 1.0, "mV" if n.startswith("E") else "mS")
                   for n in parameter_names)
    params += (ParameterDefinition("V_th", 0.0, "mV"), ParameterDefinition("C", 1.0, "uF"))
    return ModelDefinition("tiny", params, (GateDefinition(gate, "0.1", "0.1"),),
                           (ChannelDefinition("a", f"{parameter_names[0]}*{gate}",
                                              parameter_names[1]),))


def test_reserved_names_are_renamed():
    mech = generate_mechanism(_tiny(["area", "E1"]))
    assert mech.names["area"] == "area_p"
    assert "area_p = 1.0 (mS)" in mech.source
    assert "(area_p*x)*(v - E1)" in mech.source


def test_name_clashing_with_a_generated_one_is_refused():
    with pytest.raises(ValueError, match="'alpha_x' is both a name of the model"):
        generate_mechanism(_tiny(["alpha_x", "E1"]))


def test_integration_choices_are_checked():
    assert Integration().method == "cvode" and Integration().atol == 1e-6
    assert Integration.fixed(0.01, order=0).order == 0
    with pytest.raises(ValueError, match="order must be 0"):
        Integration.fixed(0.01, order=1)
    with pytest.raises(ValueError, match="atol must be"):
        Integration.cvode(atol=-1)
    with pytest.raises(ValueError, match="must be an Integration"):
        Integration.coerce("euler")


# ------------------------------------------------------------------ cells and units
def test_cell_area_makes_the_units_exact(mechanisms):
    from hh_plugin.neuron.cell import HHCell, mechanism_for

    for spec, area in ((HHSpec(), 1e8), (HHSpec(model=TRAUB_MILES), 2e4)):
        cell = HHCell(spec, mechanism_for(spec))
        assert math.isclose(cell.area, area, rel_tol=1e-12)
        C = spec.parameters[spec.model.capacitance]
        assert math.isclose(cell.sec.cm * cell.area * 1e-8, C, rel_tol=1e-12)  # uF
    # Traub-Miles: 0.02 mS on 20,000 um2 is 100 mS/cm2, the literature's density
    assert math.isclose(0.02 / (2e4 * 1e-8), 100.0)


def test_v_reset_is_refused(mechanisms):
    from hh_plugin.neuron import run_neurons

    with pytest.raises(ValueError, match="V_reset = -70.0 mV cannot be represented"):
        run_neurons(HHSpec(V_reset=-70.0), 10.0)


def test_initial_state_above_threshold_is_refused(mechanisms):
    """The plugin's rising-edge rule: starting above V_th is not a crossing, but NEURON
    counts it as a spike at t = 0."""
    from hh_plugin.neuron import run_neurons

    with pytest.raises(ValueError, match="neuron 1 starts at V = 30 mV, at or above"):
        run_neurons(HHSpec(), 1.0, n=2, V=np.array([-65.0, 30.0]))


# ------------------------------------------------------------------ agreement
@pytest.mark.parametrize("model,current", DRIVES, ids=[m.name for m, _ in DRIVES])
def test_spike_times_agree_with_the_converged_reference(mechanisms, model, current):
    from hh_plugin.neuron import run_neurons

    reference = converged_spike_times(model, current, DURATION, V0=-65.0)
    run = run_neurons(HHSpec(model=model), DURATION, current=current, V=-65.0,
                      integration=Integration.cvode(atol=1e-9))
    times = run.spike_times[0]
    assert len(reference) >= 2, "the drive must make the model fire"
    assert len(times) == len(reference)
    assert np.abs(times - reference).max() < TOLERANCE_MS


def test_heterogeneous_parameters_and_fixed_step(mechanisms):
    """Per-neuron parameters reach each cell; the fixed second-order step at 0.01 ms
    keeps spike times within 0.05 ms of CVODE."""
    from hh_plugin.neuron import run_neurons

    spec = HHSpec(gL=np.array([0.03, 0.3]))
    accurate = run_neurons(spec, 50.0, current=10.0, V=-65.0,
                           integration=Integration.cvode(atol=1e-9))
    fixed = run_neurons(spec, 50.0, current=10.0, V=-65.0,
                        integration=Integration.fixed(0.01, order=2))
    for i, gL in enumerate((0.03, 0.3)):
        reference = converged_spike_times(HODGKIN_HUXLEY, 10.0, 50.0, V0=-65.0,
                                          parameters={"gL": gL})
        assert np.abs(accurate.spike_times[i] - reference).max() < TOLERANCE_MS
        assert len(fixed.spike_times[i]) == len(reference)
        assert np.abs(fixed.spike_times[i] - reference).max() < 0.05
    assert not np.allclose(accurate.spike_times[0][:3], accurate.spike_times[1][:3])


# ------------------------------------------------------------------ build cache
def test_builds_are_cached_by_content(mechanisms, tmp_path, monkeypatch):
    from hh_plugin.neuron import mechanism_sources
    from hh_plugin.neuron.build import NeuronBuildError, build_key, compile_mechanisms

    from neuron_support import MODELS

    sources = mechanism_sources(MODELS)
    first = compile_mechanisms(sources)  # the session's build: taken from the cache
    assert compile_mechanisms(dict(sources)) == first
    assert build_key(sources) in str(first)
    changed = {**sources, "hhp_ExpCurrent": sources["hhp_ExpCurrent"] + "\n"}
    assert build_key(changed) != build_key(sources)
    monkeypatch.setenv("HH_PLUGIN_CACHE_DIR", str(tmp_path))
    with pytest.raises(NeuronBuildError, match="nrnivmodl failed"):
        compile_mechanisms({"broken": "NEURON { SUFFIX broken }\nBREAKPOINT { x = }\n"})


def test_a_run_leaves_neurons_process_wide_settings_as_it_found_them(mechanisms):
    """NEURON's integration settings are global to the process: a plugin run with CVODE or
    a second-order fixed step once left them set, and the user-model example's own NEURON
    cell (backward Euler) in the same process then drifted 0.05 ms in 50 ms
    (tests/test_user_model.py failed after the NEURON tests in one worker)."""
    from neuron import h

    from hh_plugin.neuron import run_neurons
    from hh_plugin.neuron.network import run_network
    from hh_plugin.network import CurrentInput, NetworkSpec, Population

    cvode = h.CVode()
    cvode.active(0)
    h.secondorder, h.dt = 0, 0.025
    before = (int(cvode.active()), int(h.secondorder), float(h.dt))
    run_neurons(HHSpec(), 5.0, current=10.0, V=-65.0, integration=Integration.cvode(1e-8))
    run_neurons(HHSpec(), 5.0, current=10.0, V=-65.0,
                integration=Integration.fixed(0.01, order=2))
    spec = NetworkSpec([Population("A", 2, HHSpec(), initial={"V": -65.0})], [],
                       [CurrentInput("A", 10.0)], dt=0.01)
    run_network(spec, 200, integration=Integration.cvode())
    assert (int(cvode.active()), int(h.secondorder), float(h.dt)) == before


def test_a_network_run_without_spikes_returns_empty_spike_lists(mechanisms):
    """numpy cannot convert an empty NEURON Vector: a silent network used to raise
    ``ValueError: setting an array element with a sequence``."""
    from hh_plugin.neuron.network import run_network
    from hh_plugin.network import NetworkSpec, Population

    spec = NetworkSpec([Population("A", 3, HHSpec(), initial={"V": -65.0})], dt=0.01)
    run = run_network(spec, 100, record=("V",), integration=Integration.fixed())
    times, index = run.spikes["A"]
    assert times.shape == index.shape == (0,)
    assert run.traces["A"]["V"].shape == (100, 3)
