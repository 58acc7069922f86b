"""Pure functions of the torch backend (Norse's ``functional`` layer)."""

from .hh import HHRecurrentState, check_dt, hh_feed_forward_step, hh_recurrent_step, hh_step
from .parameters import (HHParameters, HHState, as_parameters, initial_state, parameters_type,
                         recurrent_state_type, resting_voltage, state_type)
from .surrogate import ReLUSurrogate, heaviside_relu, rising_edge, surrogate_scale

__all__ = ["HHRecurrentState", "check_dt", "hh_feed_forward_step", "hh_recurrent_step",
           "hh_step", "HHParameters", "HHState", "as_parameters", "initial_state",
           "parameters_type", "recurrent_state_type", "resting_voltage", "state_type", "ReLUSurrogate",
           "heaviside_relu", "rising_edge", "surrogate_scale"]
