"""HHSpec and the model definition: defaults, units, validation, round trips, other models."""

import numpy as np
import pytest

from hh_plugin import HHSpec
from hh_plugin.model.spec import ZERO_THRESHOLD_SCALE
from hh_plugin.model import (HODGKIN_HUXLEY, ChannelDefinition, GateDefinition, ModelDefinition,
                             ParameterDefinition, initial_state, steady_state_gates)


def test_defaults_are_the_reference_models():
    spec = HHSpec()
    assert spec.parameters == {"ENa": 50.0, "gNa": 120.0, "EK": -77.0, "gK": 36.0,
                               "EL": -54.387, "gL": 0.03, "V_th": 20.0, "C": 1.0}
    assert (spec.spk_reset, spec.alpha, spec.width, spec.V_reset) == ("soft", 0.3, 1.0, None)


def test_dict_round_trip_is_lossless_with_arrays():
    spec = HHSpec(gL=np.linspace(0.01, 0.05, 7), ENa=55.5, V_reset=-70.0, spk_reset="hard")
    back = HHSpec.from_dict(spec.to_dict())
    assert back == spec
    np.testing.assert_array_equal(back.gL, spec.gL)
    assert back.size == 7


def test_brian2_quantities_are_converted():
    b2 = pytest.importorskip("brian2")
    spec = HHSpec(ENa=0.05 * b2.volt, gL=3e-5 * b2.siemens, C=1e-6 * b2.farad)
    assert spec.ENa == pytest.approx(50.0) and spec.gL == pytest.approx(0.03)
    assert spec.C == pytest.approx(1.0)
    with pytest.raises(TypeError, match="ENa.*mV"):
        HHSpec(ENa=5 * b2.ms)


@pytest.mark.parametrize("kwargs, message", [
    (dict(C=-1.0), "C must be > 0"),
    (dict(V_scale=0.0), "V_scale must be > 0"),
    (dict(V_scale=-2.0), "V_scale must be > 0"),
    (dict(V_scale=np.ones(3)), "V_scale must be a scalar"),
    (dict(V_scale=float("inf")), "V_scale contains NaN or infinite"),
    (dict(gNa=float("nan")), "gNa contains NaN"),
    (dict(spk_reset="sometimes"), "spk_reset must be one of"),
    (dict(gK=-1.0), "gK must be >= 0"),
    (dict(foo=1.0), "unknown parameter"),
    (dict(gL=np.ones(3), ENa=np.ones(4)), "different lengths"),
    (dict(gL=np.ones((2, 2))), "1-D"),
    (dict(width=0.0), "width must be > 0"),
])
def test_bad_parameters_name_the_problem(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        HHSpec(**kwargs)


def test_surrogate_scale_rule():
    """V_scale None: |V_th| (the reference), 1 mV where V_th = 0; a given V_scale wins.
    Any threshold is valid; V_scale travels through to_dict/from_dict only when set."""
    assert HHSpec().surrogate_scale == 20.0
    assert HHSpec(V_th=-15.0).surrogate_scale == 15.0
    assert HHSpec(V_th=0.0).surrogate_scale == ZERO_THRESHOLD_SCALE == 1.0
    assert HHSpec(V_th=0.0, V_scale=20.0).surrogate_scale == 20.0
    per_neuron = HHSpec(V_th=np.array([0.0, -3.0, 20.0])).surrogate_scale
    np.testing.assert_array_equal(per_neuron, [1.0, 3.0, 20.0])
    assert "V_scale" not in HHSpec().to_dict() and "V_scale" not in HHSpec().to_dict()["units"]
    spec = HHSpec(V_th=0.0, V_scale=5.0)
    assert spec.to_dict()["V_scale"] == 5.0 and HHSpec.from_dict(spec.to_dict()) == spec
    assert spec.replace(V_th=10.0).V_scale == 5.0
    assert HHSpec(V_scale=5.0) != HHSpec()


def test_immutable_and_replace():
    spec = HHSpec()
    with pytest.raises(AttributeError):
        spec.gL = 0.3
    assert spec.replace(gL=0.3).gL == 0.3 and spec.gL == 0.03


def test_from_dict_refuses_foreign_units_and_keys():
    data = HHSpec().to_dict()
    data["units"]["ENa"] = "V"
    with pytest.raises(ValueError, match="unit of 'ENa'"):
        HHSpec.from_dict(data)
    with pytest.raises(ValueError, match="unknown key"):
        HHSpec.from_dict({**HHSpec().to_dict(), "colour": "blue"})
    with pytest.raises(ValueError, match="unknown model"):
        HHSpec.from_dict({**HHSpec().to_dict(), "model": "nope"})


def test_steady_state_is_finite_at_removable_singularities():
    gates = steady_state_gates(HODGKIN_HUXLEY, np.array([-40.0, -55.0, -40.0 + 1e-12]))
    for values in gates.values():
        assert np.all(np.isfinite(values)) and np.all((values > 0) & (values < 1))
    # alpha_m(-40) = 1 and alpha_n(-55) = 0.1 exactly (the limits of x/(1-exp(-x)))
    compiled = HODGKIN_HUXLEY.compiled("numpy")
    am = compiled.evaluate_intermediates("m", {"V": np.array(-40.0)})["alpha"]
    an = compiled.evaluate_intermediates("n", {"V": np.array(-55.0)})["alpha"]
    assert am == pytest.approx(1.0, rel=1e-15)
    assert an == pytest.approx(0.1, rel=1e-15)


def test_uniform_initial_voltage_is_seeded_and_in_range():
    a = initial_state(HODGKIN_HUXLEY, (100,), seed=3)
    b = initial_state(HODGKIN_HUXLEY, (100,), seed=3)
    np.testing.assert_array_equal(a["V"], b["V"])
    assert a["V"].min() >= -70 and a["V"].max() <= -60


def test_model_definition_rejects_bad_expressions():
    with pytest.raises(ValueError, match="unknown name"):
        ModelDefinition("bad", HODGKIN_HUXLEY.parameters,
                        (GateDefinition("m", "1/exprel(-(U + 40)/10)", "1"),),
                        (ChannelDefinition("L", "gL", "EL"),))
    with pytest.raises(ValueError, match="not a parameter"):
        ModelDefinition("bad2", (ParameterDefinition("C", 1.0, "uF", "cap"),
                                 ParameterDefinition("V_th", 20.0, "mV", "th")),
                        (), (ChannelDefinition("L", "1", "EL"),))


def test_definitions_with_the_legacy_nonzero_threshold_still_load():
    """Files written before V_scale carry V_th declared 'nonzero'; they read as the
    registered model. Any other difference is still refused."""
    data = HHSpec().to_dict(include_definition=True)
    for p in data["definition"]["parameters"]:
        if p["name"] == "V_th":
            p["constraint"] = "nonzero"
    assert HHSpec.from_dict(data).model is HODGKIN_HUXLEY
    data["definition"]["parameters"][0]["default"] = 51.0
    with pytest.raises(ValueError, match="differs from the registered model"):
        HHSpec.from_dict(data)
