"""Units the reader understands, with factors to the plugin's units (mV, ms, mS, uF, uA).

A value ``x`` stored in unit ``u`` is ``x * FACTORS[kind][u]`` in the canonical unit of
``kind``. Any other unit string is refused, never guessed.
"""

from __future__ import annotations

import numpy as np

from .errors import FormatError

#: Canonical unit of each physical kind, as written by :func:`hh_plugin.export.save`.
CANONICAL = {"voltage": "mV", "time": "ms", "conductance": "mS", "capacitance": "uF",
             "current": "uA", "dimensionless": "1"}

#: Accepted units of each kind and their factor to the canonical unit.
FACTORS = {
    "voltage": {"mV": 1.0, "V": 1e3, "uV": 1e-3},
    "time": {"ms": 1.0, "s": 1e3, "us": 1e-3},
    "conductance": {"mS": 1.0, "S": 1e3, "uS": 1e-3, "nS": 1e-6},
    "capacitance": {"uF": 1.0, "F": 1e6, "nF": 1e-3, "pF": 1e-6},
    "current": {"uA": 1.0, "A": 1e6, "mA": 1e3, "nA": 1e-3, "pA": 1e-6},
    "dimensionless": {"1": 1.0},
}

#: Kind of each canonical unit (the model definitions speak in canonical units).
KIND_OF = {unit: kind for kind, unit in CANONICAL.items()}


def kind_of(canonical_unit: str) -> str:
    return KIND_OF[canonical_unit]


def convert(values, unit, expected: str, where: str, path=None):
    """``values`` given in ``unit`` converted to the canonical unit ``expected``.

    Returns the array unchanged (same object, same dtype, bit-exact) when ``unit`` is
    already ``expected``. Raises :class:`FormatError` naming ``where`` for an unknown unit
    or a unit of another physical kind.
    """
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8", "replace")
    kind = KIND_OF[expected]
    if not isinstance(unit, str):
        raise FormatError(f"{where}: unit attribute must be a string, got {unit!r}", path)
    if unit == expected:
        return values
    factors = FACTORS[kind]
    if unit not in factors:
        for other, table in FACTORS.items():
            if unit in table:
                raise FormatError(f"{where}: unit mismatch: {unit!r} is a {other} unit, "
                                  f"expected a {kind} unit such as {expected!r}", path)
        raise FormatError(f"{where}: unknown unit {unit[:40]!r}; expected {expected!r} "
                          f"(or one of {sorted(factors)})", path)
    if isinstance(values, np.ndarray):
        return values * values.dtype.type(factors[unit])
    return float(values) * factors[unit]
