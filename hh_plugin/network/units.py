r"""Values of a network specification in the plugin's units (mV, ms, mS, uA, Hz).

Plain numbers are taken to be in the unit a field documents; Brian2 quantities are
converted (and refused when their dimension is wrong); torch tensors are copied to
numpy. Every array that leaves here is float64 (or int64 for indices and delays), finite,
read-only and of the expected shape, or a clear error names the field.
"""

from __future__ import annotations

import numbers
from typing import Optional, Tuple

import numpy as np

#: Units used by the network specification (``'Hz'`` for rates, the others as in
#: :mod:`hh_plugin.model.spec`).
NETWORK_UNITS = ("mV", "ms", "mS", "uA", "Hz", "1")


def _brian2_unit(unit: str):
    import brian2

    from ..model.spec import brian2_unit

    return brian2.Hz if unit == "Hz" else brian2_unit(unit)


def as_array(value, unit: str, name: str, shape: Optional[Tuple[int, ...]] = None,
             allow_scalar: bool = True) -> np.ndarray:
    """``value`` as a read-only float64 array in ``unit``.

    ``shape``: the required shape (a scalar is accepted and kept 0-d when
    ``allow_scalar``). Raises ``TypeError`` for a wrong physical dimension or a
    non-numeric value, ``ValueError`` for NaN/inf or a wrong shape.
    """
    if unit not in NETWORK_UNITS:  # pragma: no cover - programming error
        raise ValueError(f"unknown unit {unit!r}")
    if hasattr(value, "dim") and hasattr(value, "has_same_dimensions"):  # Brian2 Quantity
        target = _brian2_unit(unit)
        if not value.has_same_dimensions(target):
            raise TypeError(f"{name}: expected a quantity in {unit}, got {value!r} "
                            f"(wrong physical dimension)")
        value = np.asarray(value / target, dtype=np.float64)
    elif hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor
        value = value.detach().cpu().double().numpy()
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name}: expected a number or an array in {unit}, got {value!r}")
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number or an array in {unit}, "
                        f"got {type(value).__name__}") from None
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if shape is not None and array.shape != tuple(shape):
        if not (allow_scalar and array.ndim == 0):
            raise ValueError(f"{name}: expected shape {tuple(shape)}"
                             f"{' or a scalar' if allow_scalar else ''}, got {array.shape}")
    array.setflags(write=False)
    return array


def as_scalar(value, unit: str, name: str) -> float:
    """One number in ``unit`` (quantities converted)."""
    array = as_array(value, unit, name)
    if array.ndim != 0:
        raise ValueError(f"{name} must be a single number, got shape {array.shape}")
    return float(array)


def as_index_array(value, name: str, size: Optional[int] = None,
                   upper: Optional[int] = None) -> np.ndarray:
    """A read-only 1-D int64 array of indices in ``[0, upper)`` (length ``size`` if given)."""
    try:
        array = np.asarray(value)
    except Exception:  # pragma: no cover
        raise TypeError(f"{name}: expected an array of integers") from None
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of indices, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or \
                not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise TypeError(f"{name}: expected integer indices, got {array.dtype} values")
    array = array.astype(np.int64)
    if size is not None and len(array) != size:
        raise ValueError(f"{name}: expected {size} entries, got {len(array)}")
    if array.size:
        if array.min() < 0:
            raise ValueError(f"{name}: negative index {int(array.min())}")
        if upper is not None and array.max() >= upper:
            raise ValueError(f"{name}: index {int(array.max())} out of range for "
                             f"{upper} neurons")
    array.setflags(write=False)
    return array


def as_count(value, name: str, minimum: int = 1) -> int:
    """A Python int >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_name(value, what: str) -> str:
    """A name usable as a Python/Brian2 identifier without leading underscore."""
    if not isinstance(value, str) or not value.isidentifier() or value.startswith("_") \
            or value.endswith(("_pre", "_post")):
        raise ValueError(f"{what} name {value!r} must be an identifier (letters, digits, "
                         f"underscores; not starting with '_' nor ending in _pre/_post)")
    return value
