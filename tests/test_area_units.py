"""Values as the literature writes them (issue 22, items 3 and 4): per-area quantities
converted with each model's declared patch area, unit expressions in HHSpec, the
plausibility warning on plain-number currents scaled by the capacitance, and per-neuron
values for shared parameters refused with the reason instead of collapsed."""

import warnings

import numpy as np
import pytest

brian2 = pytest.importorskip("brian2")

from brian2 import cm, msiemens, nA, siemens, uA, uF, um, ms  # noqa: E402

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.brian2 import neuron_group  # noqa: E402
from hh_plugin.model import (HODGKIN_HUXLEY, MORRIS_LECAR, TRAUB_MILES,  # noqa: E402
                             WANG_BUZSAKI, ModelDefinition)
from hh_plugin.model.limits import ImplausibleInputWarning  # noqa: E402


# ---------------------------------------------------------------- declared areas
@pytest.mark.parametrize("model, area", [(HODGKIN_HUXLEY, 1e8), (WANG_BUZSAKI, 1e8),
                                         (MORRIS_LECAR, 1e8), (TRAUB_MILES, 2e4)])
def test_each_model_declares_its_patch_area(model, area):
    assert model.area == area
    assert HHSpec(model=model).area == area
    assert ModelDefinition.from_dict(model.to_dict()).area == area


def test_wang_buzsaki_from_the_papers_densities_is_the_model():
    """Wang & Buzsaki (1996): gNa = 35, gK = 9, gL = 0.1 mS/cm2, C = 1 uF/cm2."""
    spec = HHSpec(model=WANG_BUZSAKI, gNa=35 * msiemens / cm**2, gK=9 * msiemens / cm**2,
                  gL=0.1 * msiemens / cm**2, C=1 * uF / cm**2)
    assert spec == HHSpec(model=WANG_BUZSAKI)
    assert (spec.gNa, spec.gK, spec.gL, spec.C) == (35.0, 9.0, 0.1, 1.0)


def test_traub_miles_densities_use_its_20000_um2_patch():
    spec = HHSpec(model=TRAUB_MILES, g_na=100 * msiemens / cm**2, g_kd=30 * msiemens / cm**2,
                  gl=5e-5 * siemens / cm**2, Cm=1 * uF / cm**2)
    assert spec == HHSpec(model=TRAUB_MILES)  # COBAHH's values are these densities
    np.testing.assert_allclose(HHSpec(model=TRAUB_MILES, g_na=np.array([100.0, 50.0])
                                      * msiemens / cm**2).g_na, [0.02, 0.01], rtol=1e-14)


def test_the_area_can_be_overridden_and_travels_with_the_spec():
    spec = HHSpec(model=TRAUB_MILES, area=1 * cm**2, g_na=100 * msiemens / cm**2)
    assert spec.area == 1e8 and spec.g_na == 100.0
    assert HHSpec(model=TRAUB_MILES, area=20000 * um**2).area == 2e4
    assert HHSpec(model=TRAUB_MILES, area=5e4).area == 5e4  # a number is um2
    assert HHSpec.from_dict(spec.to_dict()) == spec
    assert spec.replace(VT=-60.0).area == 1e8
    assert "area" not in HHSpec(model=TRAUB_MILES).to_dict()  # files as before
    with pytest.raises(TypeError, match="expected an area"):
        HHSpec(area=1 * ms)
    with pytest.raises(ValueError, match="positive"):
        HHSpec(area=-1.0)


def test_a_model_without_an_area_refuses_densities_naming_the_remedy():
    data = HODGKIN_HUXLEY.to_dict()
    data.pop("area")
    data["name"] = "hh_without_area"
    model = ModelDefinition.from_dict(data)
    assert model.area is None
    with pytest.raises(ValueError, match=r"no patch area.*HHSpec\(area=\.\.\.\)"):
        HHSpec(model=model, gNa=120 * msiemens / cm**2)
    assert HHSpec(model=model, area=1 * cm**2, gNa=120 * msiemens / cm**2).gNa == 120.0


def test_area_does_not_change_a_models_identity():
    """A file written before models declared an area still reads as the registered model."""
    data = WANG_BUZSAKI.to_dict()
    data.pop("area")
    assert ModelDefinition.from_dict(data) == WANG_BUZSAKI


def test_wrong_dimensions_still_name_the_parameter():
    with pytest.raises(TypeError, match="gNa: expected a quantity in mS"):
        HHSpec(gNa=35 * uA / cm**2)


# ------------------------------------------------------------------ unit strings
def test_unit_expressions_in_hhspec():
    assert HHSpec(gNa="35*msiemens").gNa == 35.0
    assert HHSpec(model=WANG_BUZSAKI, gNa="35*msiemens/cm**2").gNa == 35.0
    assert HHSpec(ENa="50*mV").ENa == 50.0


@pytest.mark.parametrize("text, reason", [
    ("0.02*msiemens*(0.9 + 0.2*rand())", r"calls rand\(\)"),
    ("i*msiemens", "'i', which is not a unit"),
    ("__import__('os').getcwd()", "calls"),
    ("35*", "not a Brian2 expression"),
])
def test_per_neuron_or_invalid_expressions_are_refused_with_the_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        HHSpec(gNa=text)


# ------------------------------------------------------------------- currents
def test_current_densities_into_a_group(numpy_target):
    group = neuron_group(2, HHSpec(model=WANG_BUZSAKI), current=1 * uA / cm**2)
    np.testing.assert_allclose(group.I_[:], 1e-6)
    group = neuron_group(2, HHSpec(model=TRAUB_MILES), current=1 * uA / cm**2)
    np.testing.assert_allclose(group.I_[:], 2e-10)  # 1 uA/cm2 * 20,000 um2 = 0.2 nA


def test_plain_number_current_is_judged_with_the_models_capacitance(numpy_target):
    with pytest.warns(ImplausibleInputWarning, match=r"0\.5 uA into model 'traub_miles'.*nA"):
        neuron_group(1, HHSpec(model=TRAUB_MILES), current=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplausibleInputWarning)
        neuron_group(1, HHSpec(model=TRAUB_MILES), current=0.5 * nA)  # a quantity: meant
        neuron_group(1, HHSpec(model=TRAUB_MILES), current=5e-4)     # 0.5 nA as uA
        neuron_group(1, HHSpec(), current=10.0)                       # 10 uA into 1 uF


def test_no_brian2_only_threshold_warning(numpy_target):
    from brian2.utils.logger import catch_logs

    with catch_logs() as logs:
        neuron_group(2, HHSpec(), current=10 * uA)
    assert not [entry for entry in logs if "only_threshold" in entry[1]]


# ------------------------------------------------------- shared parameters (item 4)
def test_random_expression_for_a_shared_parameter_is_refused(numpy_target):
    E = neuron_group(4, HHSpec(model=TRAUB_MILES))
    before = float(np.asarray(E.g_na_))
    with pytest.raises(ValueError, match=r"g_na is shared.*rand\(\).*per-neuron array"):
        E.g_na = "0.02*msiemens*(0.9 + 0.2*rand())"
    with pytest.raises(ValueError, match=r"g_na is shared.*cannot take 4 values"):
        E.g_na = np.full(4, 0.02) * msiemens
    assert float(np.asarray(E.g_na_)) == before
    E.g_na = "0.03*msiemens"  # one value for the group: fine
    E.g_na = 0.02 * msiemens
    assert float(np.asarray(E.g_na_)) == pytest.approx(2e-5)


def test_a_per_neuron_parameter_takes_the_expression(numpy_target):
    brian2.seed(3)
    E = neuron_group(4, HHSpec(model=TRAUB_MILES, g_na=np.full(4, 0.02)))
    E.g_na = "0.02*msiemens*(0.9 + 0.2*rand())"
    values = np.asarray(E.g_na_[:])
    assert len(set(values)) == 4 and np.all((values >= 1.8e-5) & (values <= 2.2e-5))


# ------------------------------------------------------------------------ docs
DOCS = __import__("pathlib").Path(__file__).resolve().parents[1] / "docs" / "models.md"


def test_the_docs_table_shows_each_models_area():
    from hh_plugin.model import get_model

    rows = [line for line in DOCS.read_text().splitlines() if line.startswith("| `")]
    assert len(rows) == 4
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        area = cells[-1].replace(",", "")
        value = float(area.split()[0]) * (1e8 if area.endswith("cm2") else 1.0)
        assert get_model(cells[0].strip("`")).area == value


def test_the_docs_per_area_example_runs(numpy_target):
    text = DOCS.read_text()
    block = text[text.index("**Per area"):]
    code = block[block.index("```python") + len("```python"):block.index("```\n", 10)]
    namespace = {"HHSpec": HHSpec, "WANG_BUZSAKI": WANG_BUZSAKI, "TRAUB_MILES": TRAUB_MILES,
                 "neuron_group": neuron_group}
    exec(compile(code, str(DOCS), "exec"), namespace)
    assert namespace["spec"] == HHSpec(model=WANG_BUZSAKI)
    np.testing.assert_allclose(namespace["group"].I_[:], 1e-6)


def test_current_density_into_a_network_population():
    from hh_plugin.network import CurrentInput, NetworkSpec, Population

    spec = NetworkSpec([Population("W", 2, HHSpec(model=WANG_BUZSAKI)),
                        Population("T", 3, HHSpec(model=TRAUB_MILES))], [],
                       [CurrentInput("W", 1 * uA / cm**2),
                        CurrentInput("T", np.full((5, 3), 1.0) * uA / cm**2)], dt=0.05)
    np.testing.assert_allclose(spec.current_table("W", 1), 1.0)
    np.testing.assert_allclose(spec.current_table("T", 5), 2e-4)  # uA: 0.2 nA


def test_assignments_resolve_the_callers_names(numpy_target):
    """The shared-parameter check keeps Brian2's name resolution in the caller's frame."""
    E = neuron_group(4, HHSpec(model=TRAUB_MILES, g_na=np.full(4, 0.02)))
    g_scale = 0.5  # noqa: F841 - resolved in this frame
    E.g_na = "0.02*msiemens*g_scale"
    E.I = "g_scale*nA*i"
    np.testing.assert_allclose(E.g_na_[:], 1e-5)
    np.testing.assert_allclose(E.I_[:], 0.5e-9 * np.arange(4))
