"""The Brian2 state updater of each plugin integration method
(:mod:`hh_plugin.model.integrators`)."""

from __future__ import annotations

from hh_plugin.model.integrators import DEFAULT_METHOD, brian2_description, check_method

_UPDATERS: dict = {}


def state_updater(method: str):
    """The Brian2 method of a plugin integration method
    (:mod:`hh_plugin.model.integrators`): ``'exponential_euler'`` is Brian2's own; ``'rk4'``
    is a ``brian2.ExplicitStateUpdater`` generated from the plugin's RK4 tableau
    (:func:`~hh_plugin.model.integrators.brian2_description`, the same stages as the
    torch step; Brian2's own ``rk4`` but for the stage times: every stage is evaluated at
    the step's start, so that time-dependent inputs are held over the step)."""
    import brian2

    check_method(method)
    if method == DEFAULT_METHOD:
        return method
    if method not in _UPDATERS:
        _UPDATERS[method] = brian2.ExplicitStateUpdater(brian2_description())
    return _UPDATERS[method]
