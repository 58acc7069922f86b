r"""Converged solutions of a model's equations, against which the methods are measured.

:func:`vector_field` is the right-hand side :math:`\dot y = f(y)` of a
:class:`~hh_plugin.model.ModelDefinition` for :math:`y = (V, x_1, \dots)` (V in mV, t in
ms) in numpy float64, generated from the definition (instantaneous gates evaluated at
:math:`V`), with a constant input current :math:`I` (uA):

.. math::
    \dot V = \frac{I - \sum_c g_c(x)(V - E_c)}{C}, \qquad
    \dot x = \phi(\alpha_x(1-x) - \beta_x x) \ \text{or}\ \phi (x_\infty - x)/\tau_x.

:func:`converged_spike_times` integrates it with scipy's ``DOP853`` (eighth order,
adaptive; ``rtol = atol = 1e-12`` by default) and locates each upward crossing of the
threshold :math:`V_{th}` by root finding on the dense output: the spike times (ms) that a
fixed-step method's spike times converge to as :math:`\Delta t \to 0`.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from .definition import ModelDefinition
from .initial import initial_state
from .vector_field import evaluate


def vector_field(model: ModelDefinition, current: float,
                 parameters: Optional[Mapping[str, float]] = None):
    """``f(t, y)`` for scipy: the time derivatives (per ms) of ``y = [V, gates...]``
    (:func:`hh_plugin.model.vector_field.evaluate` with the numpy callables)."""
    values = {**model.defaults, **(parameters or {})}

    def f(t, y):
        derivatives, _ = evaluate(model, "numpy", values, list(y), current)
        return np.array([float(v) for v in derivatives])

    return f


def converged_spike_times(model: ModelDefinition, current: float, duration: float,
                          V0: float = -65.0, parameters: Optional[Mapping[str, float]] = None,
                          rtol: float = 1e-12, atol: float = 1e-12) -> np.ndarray:
    r"""Upward threshold crossings (ms, float64) of one neuron of ``model`` started at
    ``V0`` mV with its dynamic gates at steady state, driven by a constant ``current``
    (uA) for ``duration`` ms, integrated by scipy's ``DOP853`` at ``rtol``/``atol``.

    The crossing of :math:`V_{th}` (the model's threshold parameter) is found by scipy's
    event location (a root of :math:`V - V_{th}` on the eighth-order dense output, upward
    direction only)."""
    from scipy.integrate import solve_ivp

    values = {**model.defaults, **(parameters or {})}
    start = initial_state(model, 1, V=float(V0), parameters=parameters)
    y0 = [float(start["V"][0])] + [float(start[g][0]) for g in model.gate_names]
    V_th = values[model.threshold]

    def crossing(t, y):
        return y[0] - V_th

    crossing.direction = 1.0
    solution = solve_ivp(vector_field(model, current, parameters), (0.0, float(duration)), y0,
                         method="DOP853", rtol=rtol, atol=atol, events=crossing)
    if solution.status != 0:
        raise RuntimeError(f"DOP853 failed for {model.name} at {current} uA: "
                           f"{solution.message}")
    return np.asarray(solution.t_events[0], dtype=np.float64)
