"""Shared pieces of the NEURON tests: a user-defined model with all three gate kinds and
rate factors, and a session fixture compiling every mechanism the tests use in one
``nrnivmodl`` run (cached on disk by content; later sessions load it)."""

import pytest

from hh_plugin.model.definition import ChannelDefinition as Ch
from hh_plugin.model.definition import GateDefinition as G
from hh_plugin.model.definition import ModelDefinition
from hh_plugin.model.definition import ParameterDefinition as P
from hh_plugin.model.hodgkin_huxley import HODGKIN_HUXLEY
from hh_plugin.model.morris_lecar import MORRIS_LECAR
from hh_plugin.model.traub_miles import TRAUB_MILES
from hh_plugin.model.wang_buzsaki import WANG_BUZSAKI

neuron = pytest.importorskip("neuron", reason="NEURON is not installed (pip install neuron)")

_AN = "0.1/exprel(-(V + 55)/10)"
_BN = "0.125*exp(-(V + 65)/80)"
#: A user's model: instantaneous m, kinetic h and relaxing n, the dynamic gates sped up by
#: a temperature factor q10**((T - 6.3)/10) (T in degrees, a plain number).
USER_MODEL = ModelDefinition(
    name="user_q10",
    parameters=(P("ENa", 50.0, "mV"), P("gNa", 120.0, "mS"), P("EK", -77.0, "mV"),
                P("gK", 36.0, "mS"), P("EL", -54.387, "mV"), P("gL", 0.3, "mS"),
                P("V_th", 0.0, "mV"), P("C", 1.0, "uF"), P("q10", 3.0, "1"),
                P("T", 9.3, "1")),
    gates=(G.instantaneous("m", alpha="1/exprel(-(V + 40)/10)", beta="4*exp(-(V + 65)/18)"),
           G("h", "0.07*exp(-(V + 65)/20)", "1/(1 + exp(-(V + 35)/10))",
             rate_factor="q10**((T - 6.3)/10)"),
           G.relaxing("n", x_inf=f"({_AN})/({_AN} + {_BN})", tau=f"1/({_AN} + {_BN})",
                      rate_factor="q10**((T - 6.3)/10)")),
    channels=(Ch("Na", "gNa*m**3*h", "ENa"), Ch("K", "gK*n**4", "EK"), Ch("L", "gL", "EL")),
    initial_voltage=-65.0)

MODELS = (HODGKIN_HUXLEY, WANG_BUZSAKI, MORRIS_LECAR, TRAUB_MILES, USER_MODEL)


@pytest.fixture(scope="session")
def mechanisms():
    """Every mechanism of :data:`MODELS` and the synapse point processes, loaded."""
    from hh_plugin.neuron import mechanism_sources
    from hh_plugin.neuron.build import ensure_mechanisms

    ensure_mechanisms(mechanism_sources(MODELS))
    return True
