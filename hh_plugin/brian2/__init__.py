r"""Brian2 backend: equations and ``NeuronGroup`` generated from a model definition.

Importing this subpackage imports Brian2 and changes nothing in it: the plugin's
``hh_exprel`` function travels in each group's namespace
(:mod:`hh_plugin.brian2.functions`). The rest of :mod:`hh_plugin` never imports Brian2.

Example:
    >>> from brian2 import run, ms, uA, SpikeMonitor
    >>> from hh_plugin import HHSpec
    >>> from hh_plugin.brian2 import neuron_group
    >>> group = neuron_group(10, HHSpec(), current=10 * uA)
    >>> group.gNa                                  # parameters are group variables
    120. * msiemens
    >>> spikes = SpikeMonitor(group)
    >>> run(50 * ms)  # doctest: +SKIP

C++ standalone or Brian2CUDA is one call away (:func:`use_device`)::

    with use_device("cpp_standalone", directory="hh_cpp", threads=2):
        group = neuron_group(10_000, HHSpec(), current=10 * uA)
        run(100 * ms)
"""

from . import functions
from .device import DEVICES, BuildStalled, DeviceSession, use_device
from .equations import equations
from .functions import namespace
from .group import neuron_group, set_steady_state
from .spike_times import spike_time_monitor, spike_times

__all__ = ["equations", "neuron_group", "set_steady_state", "namespace", "functions",
           "use_device", "DeviceSession", "DEVICES", "BuildStalled", "spike_time_monitor", "spike_times"]
