"""PyTorch / Norse backend of hh_plugin.

Functional layer (:mod:`hh_plugin.torch.functional`): pure ``hh_step`` and the
NamedTuples ``HHParameters`` and ``HHState``. Module layer (:mod:`hh_plugin.torch.module`):
``HHCell``, ``HH``, ``HHRecurrentCell``, ``HHRecurrent`` (Norse ``SNNCell``/``SNN`` subclasses).
"""

from .functional import (HHParameters, HHRecurrentState, HHState, ReLUSurrogate, hh_step,
                         initial_state, parameters_type, recurrent_state_type,
                         resting_voltage, state_type)
from .module import HH, HHCell, HHRecurrent, HHRecurrentCell
from .spike_times import spike_times

__all__ = ["HHParameters", "HHRecurrentState", "HHState", "ReLUSurrogate", "hh_step",
           "initial_state", "parameters_type", "recurrent_state_type", "resting_voltage", "state_type", "HH",
           "HHCell", "HHRecurrent", "HHRecurrentCell", "spike_times"]
