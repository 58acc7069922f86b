r"""Shared parameters of a plugin group keep one value, and say so.

A model parameter that the :class:`~hh_plugin.model.HHSpec` gives as one number is a
``(constant, shared)`` variable of the group (:mod:`hh_plugin.brian2.equations`): one
value for all neurons, which keeps the group small and lets ``group.gNa = 100*msiemens``
change it for everyone. A per-neuron value cannot go into it: Brian2 would evaluate a
random expression such as ``'0.02*msiemens*(0.9 + 0.2*rand())'`` once, silently giving
every neuron the same draw, and refuse an array with a message about sequences. The
group's ``__setattr__`` calls :func:`check_shared_assignment`, which refuses both with the
reason and the remedy: a spec with a per-neuron array (``HHSpec(gNa=numpy.full(N, 120.0))``)
makes the parameter per-neuron, and the expression or array then goes in as Brian2 would
put it.
"""

from __future__ import annotations

import brian2
import numpy as np

from . import _compat


def check_shared_assignment(group, key, value) -> None:
    """Refuse a per-neuron value for a shared parameter, which Brian2 would collapse.

    A model parameter given as a scalar in the spec is ``(constant, shared)``: one value
    for the group. Brian2 evaluates a random expression (``rand()``, ``randn()``) once for
    it, silently giving every neuron the same draw, and refuses an array with a message
    about sequences. Both are refused here with the reason and the remedy.
    """
    model = group.__dict__.get("_hh_model")
    if model is None or key not in (*model.parameter_names, "V_reset"):
        return
    variable = group.variables[key] if key in group.variables else None
    if variable is None or not variable.scalar:
        return
    remedy = (f"give the spec a per-neuron array (HHSpec({key}=numpy.full(N, value), ...)), "
              f"which makes {key} a per-neuron parameter, then assign the expression or "
              f"array to it")
    if isinstance(value, str):
        try:
            identifiers = brian2.Expression(value).identifiers
        except (SyntaxError, ValueError):
            return  # Brian2 reports it
        namespace = group.namespace or {}
        random = sorted(n for n in identifiers
                        if not getattr(namespace.get(n, _compat.default_functions().get(n)),
                                       "stateless", True))
        if random:
            raise ValueError(
                f"{group.name}.{key} is shared (one value for the group, as the spec gave "
                f"one number), so the expression {value!r} would be evaluated once "
                f"({', '.join(random)}() drawn once for all neurons): {remedy}")
    elif np.size(value) > 1:
        raise ValueError(f"{group.name}.{key} is shared (one value for the group, as the "
                         f"spec gave one number) and cannot take {np.size(value)} values: "
                         f"{remedy}")


__all__ = ["check_shared_assignment"]
