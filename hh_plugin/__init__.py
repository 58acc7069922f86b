"""hh_plugin: one Hodgkin-Huxley specification for Brian2 and Norse/PyTorch.

Backends live in subpackages and import their simulator lazily:
:mod:`hh_plugin.torch` (Norse cells) and :mod:`hh_plugin.brian2` (``NeuronGroup``).
"""

from .model import HODGKIN_HUXLEY, HHSpec, ModelDefinition, initial_state

__version__ = "0.1.0"
__all__ = ["HHSpec", "HODGKIN_HUXLEY", "ModelDefinition", "initial_state", "__version__"]
