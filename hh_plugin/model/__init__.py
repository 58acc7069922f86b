"""The model specification that every backend reads: definitions, `HHSpec`, initial states."""

from .definition import (ChannelDefinition, GateDefinition, ModelDefinition,
                         ParameterDefinition, VoltageDistribution, get_model, known_models,
                         register_model)
from .hodgkin_huxley import HODGKIN_HUXLEY
from .initial import (DEFAULT, REST, UNIFORM, initial_state, initial_voltage,
                      steady_state_gates)
from .morris_lecar import MORRIS_LECAR
from .rest import resting_state
from .spec import HHSpec
from .traub_miles import TRAUB_MILES
from .wang_buzsaki import WANG_BUZSAKI

__all__ = ["ChannelDefinition", "GateDefinition", "ModelDefinition", "ParameterDefinition",
           "VoltageDistribution", "get_model", "known_models", "register_model",
           "HODGKIN_HUXLEY", "WANG_BUZSAKI", "MORRIS_LECAR", "TRAUB_MILES", "DEFAULT",
           "UNIFORM", "REST", "initial_state", "initial_voltage", "steady_state_gates",
           "resting_state", "HHSpec"]
