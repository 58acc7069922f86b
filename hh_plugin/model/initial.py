r"""Initial states shared by all backends (numpy, float64).

The membrane potential is a constant, a per-neuron array, ``'default'`` (the model's
declared :class:`~hh_plugin.model.definition.VoltageDistribution`: for the reference
model :math:`\mathcal U(-70, -60)` mV) or ``'uniform'`` (the model's
``initial_voltage_range``), drawn with a seeded ``numpy.random.Generator`` so that both
backends start from identical states for the same seed. Dynamic gates start at the
model's declared constants (``'default'`` only, e.g. Wang-Buzsaki's
:math:`h = 0.6, n = 0.32`) or at their steady state at that potential,

.. math::
    x_\infty(V) = \frac{\alpha_x(V)}{\alpha_x(V) + \beta_x(V)} \quad\text{or the declared }
    x_\infty(V).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np

from .definition import ModelDefinition, steady_state

#: Marker for "the model's default initial state" (its voltage distribution and gates).
DEFAULT = "default"
#: Marker for "draw V from the model's uniform initial range, gates at steady state".
UNIFORM = "uniform"
VOLTAGE_MARKERS = (DEFAULT, UNIFORM)
#: Marker for "the model's resting steady state" (:mod:`hh_plugin.model.rest`): the
#: deterministic default of the Norse modules (:mod:`hh_plugin.torch.module.hh`) and of
#: :func:`hh_plugin.torch.initial_state` with ``V='rest'``.
REST = "rest"

VoltageInit = Union[None, float, Sequence[float], np.ndarray, str]


def _parameter_values(model: ModelDefinition, parameters: Optional[Mapping]) -> Dict:
    values = model.defaults
    if parameters:
        values.update({k: np.asarray(v, dtype=np.float64) for k, v in parameters.items()
                       if k in values})
    return values


def steady_state_gates(model: ModelDefinition, V, parameters: Optional[Mapping] = None,
                       gates: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
    """Steady-state values of the dynamic gates (or of ``gates``) at ``V`` (mV).

    ``parameters`` (plugin units, scalars or per-neuron arrays) override the model's
    defaults where rates depend on parameters (Traub-Miles' ``VT``).
    """
    compiled = model.compiled("numpy")
    V = np.asarray(V, dtype=np.float64)
    symbols = {**_parameter_values(model, parameters), "V": V}
    out = {}
    for gate in (model.gate_names if gates is None else gates):
        value = steady_state(compiled.evaluate_intermediates(gate, symbols))
        out[gate] = np.broadcast_to(value, V.shape).astype(np.float64, copy=True)
    return out


def initial_voltage(model: ModelDefinition, shape, V: VoltageInit = DEFAULT,
                    seed: Optional[int] = None) -> np.ndarray:
    """Initial membrane potential (mV) of the given shape.

    ``V`` is a number, an array broadcastable to ``shape``, ``'default'`` (the model's
    voltage distribution) or ``'uniform'`` (``model.initial_voltage_range``); draws use
    ``numpy.random.default_rng(seed)``.
    """
    shape = tuple(np.atleast_1d(shape)) if np.ndim(shape) else (int(shape),)
    if isinstance(V, str):
        if V not in VOLTAGE_MARKERS:
            raise ValueError(f"unknown initial voltage {V!r}; use a number, an array, "
                             f"'default' or 'uniform'")
        rng = np.random.default_rng(seed)
        if V == UNIFORM:
            low, high = model.initial_voltage_range
            return rng.uniform(low, high, size=shape)
        return model.initial_voltage.draw(shape, rng)
    if V is None:
        raise ValueError("initial voltage is None; use a number, an array, 'default' or "
                         "'uniform'")
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


def default_gate_values(model: ModelDefinition, V: VoltageInit) -> Dict[str, float]:
    """The model's declared initial gate constants, which apply with ``V='default'`` only."""
    return dict(model.initial_gates) if isinstance(V, str) and V == DEFAULT else {}


def initial_state(model: ModelDefinition, shape, V: VoltageInit = DEFAULT,
                  seed: Optional[int] = None, parameters: Optional[Mapping] = None,
                  **gates) -> Dict[str, np.ndarray]:
    """``{'V': ..., gate: ...}``: gates given explicitly, else the model's default
    constants (with ``V='default'``), else at steady state."""
    unknown = set(gates) - set(model.gate_names)
    if unknown:
        raise ValueError(f"unknown gate(s) {sorted(unknown)}; model has {list(model.gate_names)}")
    V0 = initial_voltage(model, shape, V, seed)
    state = {"V": V0}
    given = {**default_gate_values(model, V),
             **{k: v for k, v in gates.items() if v is not None}}
    steady = steady_state_gates(model, V0, parameters,
                                [g for g in model.gate_names if g not in given])
    for gate in model.gate_names:
        if gate not in given:
            state[gate] = steady[gate]
            continue
        try:
            arr = np.broadcast_to(np.asarray(given[gate], dtype=np.float64), V0.shape).copy()
        except ValueError:
            raise ValueError(f"initial gate {gate!r} does not fit the population shape "
                             f"{V0.shape}") from None
        if not np.all(np.isfinite(arr)) or np.any((arr < 0) | (arr > 1)):
            raise ValueError(f"initial gate {gate!r} must be finite and within [0, 1]")
        state[gate] = arr
    return state
