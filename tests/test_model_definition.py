"""The definition language: what it accepts, what it refuses (when the model is made), and
definitions that travel as data (``to_dict``/``from_dict``, expressions never evaluated)."""

import json

import numpy as np
import pytest

from hh_plugin import HHSpec
from hh_plugin.model import (HODGKIN_HUXLEY, MORRIS_LECAR, TRAUB_MILES, WANG_BUZSAKI,
                             ChannelDefinition, GateDefinition, ModelDefinition,
                             ParameterDefinition, VoltageDistribution)
from hh_plugin.model.expressions import parse

P = ParameterDefinition


def _model(**changes):
    """A small valid model; ``changes`` replace its fields."""
    fields = dict(
        name="definition_test",
        parameters=(P("E", 0.0, "mV"), P("g", 1.0, "mS", constraint="nonnegative"),
                    P("EL", -65.0, "mV"), P("gL", 0.1, "mS"), P("V_th", 0.0, "mV"),
                    P("C", 1.0, "uF", constraint="positive")),
        gates=(GateDefinition("x", alpha="0.1*exp(V/20)", beta="0.1*exp(-V/20)"),),
        channels=(ChannelDefinition("X", "g*x", "E"), ChannelDefinition("L", "gL", "EL")),
    )
    fields.update(changes)
    return ModelDefinition(**fields)


def test_valid_model_builds():
    model = _model()
    assert model.state_names == ("V", "x")


@pytest.mark.parametrize("changes, message", [
    # unknown symbol in a rate
    (dict(gates=(GateDefinition("x", alpha="0.1*exp(V/k)", beta="0.1"),)), r"unknown name.*'k'"),
    # gate name clashing with a parameter
    (dict(gates=(GateDefinition("g", alpha="0.1", beta="0.1"),)), "gate name 'g' clashes"),
    # missing threshold parameter
    (dict(threshold="V_spike"), "threshold parameter 'V_spike' is not a parameter"),
    # a rate that is not finite over -100..+60 mV (a removable singularity written as 0/0)
    (dict(gates=(GateDefinition("x", alpha="(V + 40)/(1 - exp(-(V + 40)/10))",
                                beta="0.1"),)), r"alpha of gate 'x' is not finite at V = -40"),
    (dict(gates=(GateDefinition("x", alpha="exp(V*20)", beta="0.1"),)), "not finite"),
    (dict(gates=(GateDefinition.relaxing("x", "0.5", "V + 50"),)), "tau of gate 'x' is not positive"),
    (dict(channels=(ChannelDefinition("X", "g*x", "Enope"),)), "reversal 'Enope'"),
    (dict(gates=(GateDefinition("x", alpha="0.1", beta="0.1", rate_factor="V"),)),
     r"unknown name.*'V'"),
    (dict(gates=(GateDefinition("x", alpha="0.1", beta="0.1"),
                 GateDefinition("x", alpha="0.2", beta="0.1"))), "gate name 'x' clashes"),
    (dict(initial_gates={"y": 0.5}), "not a dynamic gate"),
    (dict(initial_gates={"x": 1.5}), r"not a number in \[0, 1\]"),
    (dict(max_dt=float("nan")), "max_dt"),
    (dict(name="has space"), "not a valid identifier"),
])
def test_broken_definitions_are_refused_when_made(changes, message):
    with pytest.raises(ValueError, match=message):
        _model(**changes)


def test_non_finite_default_is_refused():
    with pytest.raises(ValueError, match="not finite"):
        P("g", float("nan"), "mS")
    with pytest.raises(ValueError, match="not finite"):
        P("g", float("inf"), "mS")
    with pytest.raises(ValueError, match="unit"):
        P("g", 1.0, "nS")


def test_gate_kinds_need_consistent_fields():
    with pytest.raises(ValueError, match="both alpha and beta"):
        GateDefinition("x", alpha="1")
    with pytest.raises(ValueError, match="either alpha and beta, or x_inf"):
        GateDefinition("x", alpha="1", beta="1", x_inf="0.5", tau="1")
    with pytest.raises(ValueError, match="needs tau"):
        GateDefinition("x", x_inf="0.5")
    with pytest.raises(ValueError, match="no tau or rate_factor"):
        GateDefinition("x", x_inf="0.5", tau="1", is_instantaneous=True)
    assert GateDefinition.instantaneous("x", x_inf="0.5").kind == "instantaneous"
    assert GateDefinition.relaxing("x", "0.5", "2").kind == "relaxing"


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')", "V.__class__", "[V]", "V if V else 1", "lambda: 1",
    "9**9**9", "((9**64)**64)**64", "exp(V, 2)", "open('x')", "V^2", "1/0", "x" * 3000,
    "(" * 400 + "V" + ")" * 400])
def test_expressions_are_parsed_never_evaluated(text):
    with pytest.raises(ValueError):
        parse(text, ["V"])


def test_parser_equals_sympify_on_shipped_models():
    import sympy

    from hh_plugin.model.expressions import ALLOWED_FUNCTIONS

    for model in (HODGKIN_HUXLEY, WANG_BUZSAKI, MORRIS_LECAR, TRAUB_MILES):
        names = set(model.parameter_names) | {"V"}
        local = {n: sympy.Symbol(n, real=True) for n in names}
        local.update(ALLOWED_FUNCTIONS)
        for gate in model.gates:
            for text in (gate.alpha, gate.beta, gate.x_inf, gate.tau):
                if text is not None:
                    assert parse(text, names) == sympy.sympify(text, locals=local,
                                                               rational=False)


@pytest.mark.parametrize("model", [HODGKIN_HUXLEY, WANG_BUZSAKI, MORRIS_LECAR, TRAUB_MILES])
def test_definition_round_trips_through_json(model):
    data = json.loads(json.dumps(model.to_dict()))
    assert ModelDefinition.from_dict(data) == model


def test_spec_with_definition_loads_where_the_model_is_unknown():
    model = _model(name="travelling_model", initial_voltage=VoltageDistribution.normal(-60, 2))
    spec = HHSpec(model=model, g=np.array([1.0, 2.0]))
    data = json.loads(json.dumps(spec.to_dict(include_definition=True)))
    with pytest.raises(ValueError, match="unknown model 'travelling_model'"):
        HHSpec.from_dict({k: v for k, v in data.items() if k != "definition"})
    back = HHSpec.from_dict(data)
    assert back.model == model and back == spec


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["definition"].update(name="hodgkin_huxley"), "names model"),
    (lambda d: (d.update(model="hodgkin_huxley"),
                d["definition"].update(name="hodgkin_huxley")), "differs from the registered"),
    (lambda d: d["definition"]["gates"][0].update(alpha="__import__('os')"),
     "unsupported function"),
    (lambda d: d["definition"].update(extra=1), "unknown key"),
    (lambda d: d["definition"]["gates"][0].update(kind="relaxing"), "declared 'relaxing'"),
    (lambda d: d["definition"].update(parameters="x"), "wrong type"),
    (lambda d: d["definition"].update(gates=[{"name": "x"}] * 300), "at most 256"),
])
def test_hostile_definitions_are_refused(mutate, message):
    data = json.loads(json.dumps(HHSpec(model=WANG_BUZSAKI).to_dict(include_definition=True)))
    data["definition"]["name"] = data["model"] = "wb_copy"
    mutate(data)
    with pytest.raises(ValueError, match=message):
        HHSpec.from_dict(data)
