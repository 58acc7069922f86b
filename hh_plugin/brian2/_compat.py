"""Every use of Brian2 beyond its documented user API, in one place.

The rest of :mod:`hh_plugin.brian2` uses Brian2's user API only (``NeuronGroup``,
``Equations``, ``Function`` and its ``implementations``, ``set_device``, ``device.build`` /
``device.run``, ``get_local_namespace``, ``Group.resolve_all``). What is here reads
attributes that Brian2 does not document; each function names what it relies on, and
``tests/test_brian2_user.py`` checks them on the installed Brian2 (2.8 and 2.9 are tested).
"""

from __future__ import annotations

from typing import Optional


def equation_errors():
    """Exceptions Brian2 raises for equations it cannot parse (its ``EquationError`` is
    not exported by ``brian2``)."""
    from brian2.equations.equations import EquationError

    return (EquationError, SyntaxError, ValueError, TypeError)


def integration_methods():
    """Names of the registered integration methods (``StateUpdateMethod.stateupdaters``,
    the registry that ``StateUpdateMethod.register`` fills)."""
    from brian2 import StateUpdateMethod

    return StateUpdateMethod.stateupdaters


def fresh_device(name: str):
    """A new, never-built instance of the device class registered as ``name``.

    ``brian2.devices.device.all_devices`` maps names to the one instance per device
    class that ``set_device(name)`` activates. A standalone device refuses a second build
    once it has been run, so :func:`~hh_plugin.brian2.use_device` builds on an instance
    of its own and leaves the registered one untouched for ``set_device``.
    """
    from brian2.devices.device import all_devices

    return type(all_devices[name])()


def restore_previous_device() -> None:
    """Re-activate the device that was active before the last ``set_device`` call, with
    its build options (``brian2.devices.device.reset_device``, not exported by ``brian2``)."""
    from brian2.devices.device import reset_device

    reset_device()


def last_run_time(device) -> Optional[float]:
    """Seconds of the last ``run`` inside a standalone binary (``device._last_run_time``,
    which Brian2 reads from the binary's ``results/last_run_info.txt``), or ``None``."""
    value = getattr(device, "_last_run_time", None)
    return None if value is None else float(value)


def make_time(device) -> Optional[float]:
    """Seconds ``make`` took in the last standalone build (``device.timers``), or ``None``."""
    timers = getattr(device, "timers", None) or {}
    return (timers.get("compile") or {}).get("make")


def binary_time(device) -> Optional[float]:
    """Seconds the last run of the standalone binary took (``device.timers``), or ``None``."""
    timers = getattr(device, "timers", None) or {}
    return timers.get("run_binary")


def default_functions():
    """Brian2's functions known to every group, by name (``rand``, ``exp``...:
    ``brian2.core.functions.DEFAULT_FUNCTIONS``); a ``Function``'s ``stateless`` is
    ``False`` for the random ones."""
    from brian2.core.functions import DEFAULT_FUNCTIONS

    return DEFAULT_FUNCTIONS


def magic_network():
    """The network that Brian2's magic ``run()`` runs (``brian2.core.magic.magic_network``,
    an instance of ``MagicNetwork``; the objects it prepares have its ``id`` in their
    ``_network`` attribute)."""
    from brian2.core.magic import magic_network as network

    return network
