r"""Biophysical parameters as trainable :class:`torch.nn.Parameter`\ s of an HH module.

``HHCell(p, trainable=("gNa", "gK", "EL"))`` registers those parameters of the model
(their values in ``p``, a scalar or one per neuron) on the module: they appear in
``module.parameters()`` and ``state_dict()``, an optimiser updates them, and every step
reads their current values. Each keeps the constraint its model declares
(:class:`~hh_plugin.model.definition.ParameterDefinition`): a ``'positive'`` or
``'nonnegative'`` parameter (conductances, the capacitance) is trained through its
logarithm,

.. math::
    g = e^{\theta}, \qquad \theta \in \mathbb R,

with :func:`torch.nn.utils.parametrize.register_parametrization`, so no optimiser step
can make it negative (``state_dict`` then holds :math:`\theta` under
``parametrizations.<name>.original``); any other parameter (reversal potentials, the
threshold) is trained as it is. ``module.p`` always holds the current values, so
``module.p.to_spec()`` is the fitted specification, ready for the Brian2 backend.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch.nn.utils import parametrize

from ..options import checked_names

#: Constraints trained through the logarithm (the value stays above 0).
_POSITIVE = ("positive", "nonnegative")


class Positive(torch.nn.Module):
    r"""The parametrisation :math:`\theta \mapsto e^{\theta}` (and back, :math:`\log`)."""

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.exp(theta)

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return torch.log(value)


def trainable_names(trainable, model) -> Tuple[str, ...]:
    """``trainable`` checked: model parameter names (a name or a sequence of names),
    each once; ``()`` for none."""
    if trainable is None:
        return ()
    names = checked_names(trainable, model.parameter_names, "trainable", "parameter",
                          model.name, "parameter names such as ('gNa', 'gK')")
    if len(set(names)) != len(names):
        raise ValueError(f"trainable: a parameter is named twice in {names}")
    return names


def register_trainable(module: torch.nn.Module, p, names: Tuple[str, ...]) -> None:
    """Register each of ``names`` on ``module`` as an ``nn.Parameter`` initialised from
    ``p`` (float64 unless ``p`` holds another floating dtype), constrained as its model
    declares."""
    model = type(p).model
    for name in names:
        value = torch.as_tensor(getattr(p, name)).detach().clone()
        if not value.is_floating_point():
            value = value.to(torch.float64)
        constraint = model.parameter(name).constraint
        if constraint in _POSITIVE and not bool((value > 0).all()):
            raise ValueError(f"trainable: {name} must be > 0 to be trained through its "
                             f"logarithm ({constraint} parameter), got {value}")
        module.register_parameter(name, torch.nn.Parameter(value))
        if constraint in _POSITIVE:
            parametrize.register_parametrization(module, name, Positive())


def current_parameters(module: torch.nn.Module, base, names: Tuple[str, ...]):
    """``base`` with the trainable fields replaced by the module's current values."""
    if not names:
        return base
    return base._replace(**{name: getattr(module, name) for name in names})
