r"""Initial states shared by all backends (numpy, float64).

The membrane potential is a constant, a per-neuron array, or drawn from the model's
uniform range (the reference model: :math:`\mathcal U(-70, -60)` mV) with a seeded
``numpy.random.Generator``, so that both backends start from identical states for the
same seed. Gates start at their steady state at that potential,

.. math::
    x_\infty(V) = \frac{\alpha_x(V)}{\alpha_x(V) + \beta_x(V)}.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy as np

from .definition import ModelDefinition

#: Marker for "draw V from the model's uniform initial range".
UNIFORM = "uniform"

VoltageInit = Union[None, float, Sequence[float], np.ndarray, str]


def steady_state_gates(model: ModelDefinition, V) -> Dict[str, np.ndarray]:
    """Steady-state gate values at membrane potential ``V`` (mV)."""
    rates = model.compiled("numpy").rates
    V = np.asarray(V, dtype=np.float64)
    out = {}
    for gate, (alpha, beta) in rates.items():
        a = np.broadcast_to(alpha(V), V.shape)
        b = np.broadcast_to(beta(V), V.shape)
        out[gate] = a / (a + b)
    return out


def initial_voltage(model: ModelDefinition, shape, V: VoltageInit = UNIFORM,
                    seed: Optional[int] = None) -> np.ndarray:
    """Initial membrane potential (mV) of the given shape.

    ``V`` is a number, an array broadcastable to ``shape``, or ``'uniform'`` (default),
    which draws from ``model.initial_voltage_range`` with ``numpy.random.default_rng(seed)``.
    """
    shape = tuple(np.atleast_1d(shape)) if np.ndim(shape) else (int(shape),)
    if isinstance(V, str):
        if V != UNIFORM:
            raise ValueError(f"unknown initial voltage {V!r}; use a number, an array or 'uniform'")
        low, high = model.initial_voltage_range
        return np.random.default_rng(seed).uniform(low, high, size=shape)
    if V is None:
        raise ValueError("initial voltage is None; use a number, an array or 'uniform'")
    if hasattr(V, "dim"):
        from .spec import to_plain

        V = to_plain(V, "mV", "V")
    values = np.asarray(V, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("initial voltage contains NaN or infinite values")
    try:
        return np.broadcast_to(values, shape).copy()
    except ValueError:
        raise ValueError(f"initial voltage of shape {values.shape} does not fit "
                         f"the population shape {shape}") from None


def initial_state(model: ModelDefinition, shape, V: VoltageInit = UNIFORM,
                  seed: Optional[int] = None, **gates) -> Dict[str, np.ndarray]:
    """``{'V': ..., gate: ...}`` with gates at steady state unless given explicitly."""
    unknown = set(gates) - set(model.gate_names)
    if unknown:
        raise ValueError(f"unknown gate(s) {sorted(unknown)}; model has {list(model.gate_names)}")
    V0 = initial_voltage(model, shape, V, seed)
    state = {"V": V0}
    steady = steady_state_gates(model, V0)
    for gate in model.gate_names:
        value = gates.get(gate)
        if value is None:
            state[gate] = steady[gate]
        else:
            arr = np.broadcast_to(np.asarray(value, dtype=np.float64), V0.shape).copy()
            if not np.all(np.isfinite(arr)) or np.any((arr < 0) | (arr > 1)):
                raise ValueError(f"initial gate {gate!r} must be finite and within [0, 1]")
            state[gate] = arr
    return state
