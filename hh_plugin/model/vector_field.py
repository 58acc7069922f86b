r"""The right-hand side of a model's equations, for any array type.

For the state :math:`y = (V, x_1, \dots)` (V in mV, dynamic gates) of a
:class:`~hh_plugin.model.ModelDefinition`, :func:`evaluate` returns

.. math::
    \dot V = \frac{I - \sum_c g_c(V, x)(V - E_c) - (G_s V - J_s)}{C}, \qquad
    \dot x = \phi(\alpha_x(1-x) - \beta_x x) \ \text{or}\ \phi\,(x_\infty - x)/\tau_x

(mV/ms and 1/ms), with instantaneous gates evaluated at :math:`V`, and the rates of
their linear parts: the total conductance :math:`G = \sum_c g_c + G_s` (mS) and each
gate's decay rate :math:`\lambda_x = \phi(\alpha_x + \beta_x)` or :math:`\phi/\tau_x`
(1/ms), which exponential Euler uses. :math:`I` (uA), the synaptic conductance
:math:`G_s` (mS) and :math:`J_s = \sum_s g_s E_s` (uA) are inputs held by the caller.
It is written once and evaluated with the model's compiled callables of one backend:
numpy (the converged references, :mod:`hh_plugin.model.reference`) or torch (the step of
:mod:`hh_plugin.torch.functional.hh`, both methods).
"""

from __future__ import annotations

from typing import Any, List, Mapping, Sequence, Tuple

from .definition import steady_state


def gate_derivative_and_decay(intermediates, x, factor=None):
    r""":math:`\dot x` and the decay rate :math:`\lambda` of a dynamic gate (1/ms).

    Kinetic: :math:`\phi(\alpha(1-x) - \beta x)`, :math:`\phi(\alpha+\beta)`;
    relaxing: :math:`\phi(x_\infty - x)/\tau`, :math:`\phi/\tau`
    (:math:`\phi` = ``factor``, 1 when ``None``).
    """
    if "alpha" in intermediates:
        a, b = intermediates["alpha"], intermediates["beta"]
        derivative, decay = a * (1.0 - x) - b * x, a + b
    else:
        tau = intermediates["tau"]
        derivative, decay = (intermediates["x_inf"] - x) / tau, 1.0 / tau
    if factor is not None:
        derivative, decay = factor * derivative, factor * decay
    return derivative, decay


def evaluate(model, backend: str, values: Mapping[str, Any], point: Sequence, current,
             conductance=None, conductance_current=None) -> Tuple[List, List]:
    """``(derivatives, rates)`` at ``point`` = ``[V, x_1, ...]`` (see the module docs);
    ``values``: the parameters by name, ``backend``: ``'numpy'`` or ``'torch'``."""
    compiled = model.compiled(backend)
    V = point[0]
    gates = dict(zip(model.gate_names, point[1:]))
    symbols = {**values, **gates, "V": V}
    for name in model.instantaneous_gate_names:
        symbols[name] = steady_state(compiled.evaluate_intermediates(name, symbols))
    conductance_total = 0.0
    ionic_current = 0.0
    for channel in model.channels:
        args = compiled.conductance_args[channel.name]
        g = compiled.conductances[channel.name](*(symbols[a] for a in args))
        conductance_total = conductance_total + g
        ionic_current = ionic_current + g * (V - values[channel.reversal])
    if conductance is not None:
        conductance_total = conductance_total + conductance
        ionic_current = ionic_current + (conductance * V - conductance_current)
    derivatives = [(current - ionic_current) / values[model.capacitance]]
    rates = [conductance_total]
    for name in model.gate_names:
        derivative, decay = gate_derivative_and_decay(
            compiled.evaluate_intermediates(name, symbols), gates[name],
            compiled.factor(name, symbols))
        derivatives.append(derivative)
        rates.append(decay)
    return derivatives, rates
