r"""The resting steady state of a model: the deterministic initial state of the Norse modules.

With no input current and every gate at its steady state, the membrane equation of a
:class:`~hh_plugin.model.ModelDefinition` reduces to one function of :math:`V`,

.. math::
    F(V) = \dot V\big|_{I=0,\ x=x_\infty(V)}
         = -\frac{1}{C}\sum_c g_c\big(x_\infty(V)\big)\,(V - E_c) \quad\text{(mV/ms)},

whose zeros are exactly the equilibria of the whole system :math:`(V, x_1, \dots)` (and
fixed points of both integration methods' steps). The resting state is the most
hyperpolarised zero at which :math:`F` falls (:math:`F > 0` below it, :math:`F < 0`
above) and that is stable for the whole system: every eigenvalue of the Jacobian of
:math:`(\dot V, \dot x_1, \dots)` (1/ms, central differences of
:func:`hh_plugin.model.vector_field.evaluate`) has a negative real part
(:func:`is_stable`). A model without a stable one fires on its own at zero input; its
most hyperpolarised falling zero is then returned all the same, an unstable equilibrium
(deterministic, :math:`\dot V = 0` up to rounding, but rounding errors grow away from
it), or
:class:`NoRestingState` is raised with ``stable_only=True``. Traub-Miles with Brian2's
COBAHH values is such a model: its only equilibrium, -33.41 mV, is unstable (3 spikes in
200 ms at zero input, from -65 mV).

The zeros are bracketed on a 0.1 mV grid over
:data:`~hh_plugin.model.definition.VOLTAGE_CHECK_RANGE` (-100..60 mV, where every model's
rates are checked to be finite) and refined by bisection to float64 precision. Nothing
is model-specific: the four shipped models and a user's own definition are solved alike
(with the default parameters: reference HH -70.68 mV, Wang-Buzsaki -64.02 mV,
Morris-Lecar -60.83 mV). Per-neuron parameters (arrays) give a per-neuron resting
state; neurons with identical parameters are solved once (the cost grows with the number
of distinct neurons: measured here, 25 ms for one, about 1.3 s for 3,000).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

from .definition import VOLTAGE_CHECK_RANGE, ModelDefinition
from .initial import steady_state_gates
from .vector_field import evaluate

#: Spacing (mV) of the grid on which zeros of F are bracketed.
GRID_STEP_MV = 0.1
#: Neurons solved at once (bounds the grid's memory: 1601 voltages x this many neurons).
CHUNK = 1024


class UnstableRest(UserWarning):
    """A module starts from an unstable equilibrium: the model fires on its own at zero
    input, so its "resting" state is left as soon as rounding errors grow."""


class NoRestingState(ValueError):
    """The model has no equilibrium with zero input in -100..60 mV (or, where a stable one
    was asked for, no stable one)."""


def _values(model: ModelDefinition, parameters: Optional[Mapping]):
    """``(values, shape)``: float64 parameter values (the model's defaults overridden by
    ``parameters``, scalars or per-neuron 1-D arrays) and their broadcast shape."""
    values = {k: np.float64(v) for k, v in model.defaults.items()}
    for name, value in (parameters or {}).items():
        if name not in values:
            raise ValueError(f"model {model.name!r} has no parameter {name!r}")
        array = np.asarray(value, dtype=np.float64)
        if array.ndim > 1:
            raise ValueError(f"parameter {name!r}: a scalar or one value per neuron (1-D) "
                             f"is needed for the resting state, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"parameter {name!r} contains NaN or infinite values")
        values[name] = array
    try:
        shape = np.broadcast_shapes(*(np.shape(v) for v in values.values()))
    except ValueError:
        lengths = {k: len(v) for k, v in values.items() if np.ndim(v)}
        raise ValueError(f"per-neuron parameters of different lengths: {lengths}") from None
    return values, shape


def _field(model: ModelDefinition, values: Mapping, V, gates=None):
    """:math:`(\\dot V, \\dot x_1, \\dots)` at ``V`` with the gates given, or at steady state."""
    if gates is None:
        gates = steady_gates(model, values, V)
    derivatives, _ = evaluate(model, "numpy", values, [V, *gates], 0.0)
    return derivatives


def steady_gates(model: ModelDefinition, values: Mapping, V):
    r""":math:`x_\infty(V)` of every dynamic gate, in the model's order, broadcast against
    the parameters' shape."""
    shape = np.broadcast_shapes(np.shape(V), *(np.shape(v) for v in values.values()))
    gates = steady_state_gates(model, np.broadcast_to(V, shape), values)
    return [gates[g] for g in model.gate_names]


def is_stable(model: ModelDefinition, V, parameters: Optional[Mapping] = None) -> np.ndarray:
    """Whether the equilibria at ``V`` (mV; gates at steady state, zero input) are stable:
    every eigenvalue of the Jacobian has a negative real part. ``V`` broadcasts against
    the parameters (as :func:`resting_state`'s)."""
    values, _ = _values(model, parameters)
    return _stable(model, values, np.asarray(V, dtype=np.float64))


def _stable(model: ModelDefinition, values: Mapping, V: np.ndarray) -> np.ndarray:
    point = [V, *steady_gates(model, values, V)]
    shape = np.shape(point[0])
    point = [np.broadcast_to(p, shape) for p in point]
    n = len(point)
    steps = [1e-6] + [1e-8] * (n - 1)  # mV, and dimensionless gates
    jacobian = np.empty(shape + (n, n))
    for j in range(n):
        plus = [p + steps[j] if k == j else p for k, p in enumerate(point)]
        minus = [p - steps[j] if k == j else p for k, p in enumerate(point)]
        f_plus = _field(model, values, plus[0], plus[1:])
        f_minus = _field(model, values, minus[0], minus[1:])
        for i, (a, b) in enumerate(zip(f_plus, f_minus)):
            jacobian[..., i, j] = np.broadcast_to((a - b) / (2 * steps[j]), shape)
    return np.linalg.eigvals(jacobian).real.max(axis=-1) < 0


def _solve_chunk(model: ModelDefinition, values: Mapping, grid: np.ndarray,
                 stable_only: bool) -> np.ndarray:
    """Resting V (mV) of the neurons of ``values`` (1-D parameter arrays of one length, or
    scalars: then one neuron); NaN where there is none."""
    f = np.asarray(_field(model, values, grid[:, None])[0])  # (G, neurons)
    falls = (f[:-1] > 0) & (f[1:] <= 0)
    counts = falls.sum(axis=0)
    first = None
    rest = np.full(f.shape[1], np.nan)
    for rank in range(int(counts.max(initial=0))):
        todo = np.isnan(rest) & (counts > rank)
        if not todo.any():
            break
        # the rank-th falling zero of each neuron still without a stable one
        index = np.minimum(np.argmax(np.cumsum(falls, axis=0) > rank, axis=0), len(grid) - 2)
        lo, hi = grid[index].copy(), grid[index + 1].copy()
        for _ in range(60):  # 0.1 mV / 2**60: below float64 resolution
            mid = 0.5 * (lo + hi)
            above = np.asarray(_field(model, values, mid)[0]) > 0
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        V = 0.5 * (lo + hi)
        if first is None:
            first = np.where(counts > 0, V, np.nan)
        rest = np.where(todo & _stable(model, values, V), V, rest)
    if not stable_only and first is not None:
        rest = np.where(np.isnan(rest), first, rest)
    return rest


def resting_state(model: ModelDefinition, parameters: Optional[Mapping] = None,
                  stable_only: bool = False) -> Dict[str, np.ndarray]:
    r"""``{'V': ..., gate: ...}``: the resting steady state (V in mV, gates at
    :math:`x_\infty(V)`), float64 arrays of the parameters' shape (``()`` for scalar
    parameters, ``(N,)`` for per-neuron ones).

    ``parameters`` (plugin units: mV, mS, uF; scalars or 1-D arrays) override the model's
    defaults. Where a neuron has no stable equilibrium, its most hyperpolarised one
    (unstable; see the module docs), or :class:`NoRestingState` (a ``ValueError``) with
    ``stable_only=True``; :class:`NoRestingState` too where it has no equilibrium at all
    in -100..60 mV.
    """
    values, shape = _values(model, parameters)
    grid = np.arange(VOLTAGE_CHECK_RANGE[0], VOLTAGE_CHECK_RANGE[1] + GRID_STEP_MV / 2,
                     GRID_STEP_MV)
    varying = [k for k, v in values.items() if np.ndim(v)]
    inverse = None
    flat = dict(values)
    if varying:  # neurons with identical parameters are solved once
        rows, inverse = np.unique(np.stack([np.broadcast_to(values[k], shape) for k in varying],
                                           axis=1), axis=0, return_inverse=True)
        flat.update({k: rows[:, j] for j, k in enumerate(varying)})
    count = len(rows) if varying else 1
    parts = []
    for start in range(0, count, CHUNK):
        chunk = {k: (v[start:start + CHUNK] if k in varying else np.atleast_1d(v))
                 for k, v in flat.items()}
        parts.append(_solve_chunk(model, chunk, grid, stable_only))
    V = np.concatenate(parts)
    V = np.asarray(V[np.reshape(inverse, -1)] if varying else V[0]).reshape(shape)
    missing = np.isnan(V)
    if missing.any():
        where = "" if not shape else f" (neuron {int(np.argmax(missing.reshape(-1)))})"
        raise NoRestingState(
            f"model {model.name!r}{where} has no {'stable ' if stable_only else ''}"
            f"equilibrium with zero input between {VOLTAGE_CHECK_RANGE[0]:g} and "
            f"{VOLTAGE_CHECK_RANGE[1]:g} mV with these parameters (it fires on its own, or "
            f"its potential runs out of that range); start it from the model's default "
            f"state (V_init='default') or from a potential in mV")
    state = {"V": V}
    for gate, value in zip(model.gate_names, steady_gates(model, values, V)):
        state[gate] = np.asarray(value, dtype=np.float64).reshape(shape)
    return state
