"""hh_plugin: one Hodgkin-Huxley specification for Brian2 and Norse/PyTorch.

Backends live in subpackages and import their simulator lazily:
:mod:`hh_plugin.torch` (Norse cells) and :mod:`hh_plugin.brian2` (``NeuronGroup``).
The names below come from :mod:`hh_plugin.model`, imported at first use (so that the
``hh-plugin`` command starts, and handles Ctrl-C, before any heavy import).
"""

__version__ = "0.1.0"
__all__ = ["HHSpec", "HODGKIN_HUXLEY", "ModelDefinition", "initial_state", "__version__"]

_FROM_MODEL = ("HHSpec", "HODGKIN_HUXLEY", "ModelDefinition", "initial_state")


def __getattr__(name):
    if name in _FROM_MODEL:
        from . import model

        value = getattr(model, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hh_plugin' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
