"""The model specification that every backend reads: definitions, `HHSpec`, initial states."""

from .definition import (ChannelDefinition, GateDefinition, ModelDefinition,
                         ParameterDefinition, get_model, register_model)
from .hodgkin_huxley import HODGKIN_HUXLEY
from .initial import UNIFORM, initial_state, initial_voltage, steady_state_gates
from .spec import HHSpec

__all__ = ["ChannelDefinition", "GateDefinition", "ModelDefinition", "ParameterDefinition",
           "get_model", "register_model", "HODGKIN_HUXLEY", "UNIFORM", "initial_state",
           "initial_voltage", "steady_state_gates", "HHSpec"]
