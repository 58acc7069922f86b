"""Values of format 1.0 (see ``export/FORMAT.md``): names, units, dtypes, array checks.

Everything here is pure numpy, used by :mod:`.population_file` on both sides (what
:func:`~hh_plugin.export.save` accepts, what the reader refuses); the container layer
(:mod:`.container`) does the HDF5 reading and writing.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from .errors import FormatError

__all__ = ["INTEGRATOR", "INTEGRATORS", "SPIKE_RULE", "FLOAT_DTYPES", "SPIKES", "TIME", "float_array",
           "spike_array", "check_shape", "check_gates", "state_units", "trace_units"]

INTEGRATOR = "exponential_euler (Jacobi)"
#: ``spec.integrator`` of each integration method (:mod:`hh_plugin.model.integrators`):
#: the reference model's exponential Euler, or the classic fourth-order Runge-Kutta method
#: with every gate and subexpression re-evaluated at each stage.
INTEGRATORS = {"exponential_euler": INTEGRATOR, "rk4": "rk4 (classic, all stages)"}
SPIKE_RULE = "rising_edge"
#: Float dtypes allowed for state, input and trace arrays (parameters are always float64).
FLOAT_DTYPES = (np.dtype("float16"), np.dtype("float32"), np.dtype("float64"))
#: Names of the spike raster and the time axis inside ``/traces``.
SPIKES = "spikes"
TIME = "time"


def state_units(model) -> Dict[str, str]:
    """Canonical unit of each state variable: ``{'V': 'mV', 'm': '1', ...}``."""
    return {name: ("mV" if name == "V" else "1") for name in model.state_names}


def trace_units(model) -> Dict[str, str]:
    """Canonical unit of each trace: state variables, ``spikes`` ('1'), ``time`` ('ms')."""
    return {**state_units(model), SPIKES: "1", TIME: "ms"}


def float_array(values, where: str, path=None, finite: bool = True) -> np.ndarray:
    """A native-byte-order float array of the same precision; refuses other dtypes, NaN, inf."""
    array = np.asarray(values)
    if array.dtype.kind != "f" or array.dtype.newbyteorder("=") not in FLOAT_DTYPES:
        raise FormatError(f"{where} has dtype {array.dtype}, expected float16, float32 or "
                          f"float64", path)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if finite and not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise FormatError(f"{where} contains NaN or infinite values (first at index "
                          f"{tuple(int(i) for i in bad)})", path)
    return array


def spike_array(values, where: str, path=None) -> np.ndarray:
    """A 0/1 spike raster as uint8; refuses non-integer dtypes and other values."""
    array = np.asarray(values)
    if array.dtype.kind not in "biu":
        raise FormatError(f"{where} has dtype {array.dtype}, expected uint8 (0/1)", path)
    if array.size and not np.all((array == 0) | (array == 1)):
        raise FormatError(f"{where} must contain only 0 and 1", path)
    return array.astype(np.uint8, copy=False)


def check_shape(array: np.ndarray, expected: Sequence[Optional[int]], where: str,
                path=None) -> None:
    """Raise unless ``array.shape`` matches ``expected`` (``None`` matches any length)."""
    shape = tuple(array.shape)
    if len(shape) != len(expected) or any(e is not None and s != e
                                          for s, e in zip(shape, expected)):
        text = tuple("any" if e is None else e for e in expected)
        raise FormatError(f"{where} has shape {shape}, expected {text}".replace("'", ""), path)


def check_gates(array: np.ndarray, where: str, path=None) -> None:
    """Gate values must lie in [0, 1] (up to 8 units of rounding of their precision)."""
    tol = 8 * float(np.finfo(array.dtype).eps)
    bad = (array < -tol) | (array > 1 + tol)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise FormatError(f"{where} has gate values outside [0, 1] (first at index {index}: "
                          f"{float(array[index]):g})", path)
