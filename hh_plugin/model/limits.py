r"""Checks every backend applies before a run: the step size, and the input's plausibility.

**Step.** Exponential Euler is first-order accurate: its spike-time error grows in
proportion to :math:`\Delta t`. Each :class:`~hh_plugin.model.ModelDefinition` states the
longest accurate step, ``max_dt`` (ms), and for other methods ``max_dt_by_method``
(RK4 is fourth order but only conditionally stable: the reference model blows up at
:math:`\Delta t = 0.1` ms; docs/accuracy.md gives the measurements); a longer step is
refused by every backend (torch ``dt`` in seconds, Brian2's ``dt``, a case file's ``dt`` in
ms) with :class:`StepTooLong`.
For the reference model, at 10 uA for 200 ms the neuron fires 14 spikes at
:math:`\Delta t = 0.01` ms and none at 1 ms (``hodgkin_huxley.py`` gives the measurement
behind its bound).

**Input.** A current :math:`I` moves :math:`V` at up to :math:`I/C` mV/ms. The steepest
spike upstroke of the reference model is about 300 mV/ms (350 mV/ms at 100 uA); an input with
:math:`\max_j \max_t |I_j(t)|/C_j` above :data:`MAX_PLAUSIBLE_RATE` = :math:`10^4` mV/ms (10 mA for
:math:`C = 1` uF) drives the membrane to meaningless potentials (1e6 uA gives
:math:`V \approx 27{,}680` mV), which is most often a unit mistake (uA expected, not nA or
pA). Such inputs are run, with an :class:`ImplausibleInputWarning`.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np

from .integrators import DEFAULT_METHOD

#: mV/ms: an input with max|I| / min C above this draws :class:`ImplausibleInputWarning`.
MAX_PLAUSIBLE_RATE = 1e4


class StepTooLong(ValueError):
    """A time step longer than the model's ``max_dt`` (inaccurate results)."""


class ImplausibleInputWarning(UserWarning):
    """An input current far beyond anything physiological for the model (see the module)."""


def step_problem(dt_ms: float, model, method: str = DEFAULT_METHOD) -> Optional[str]:
    """Why a step of ``dt_ms`` ms is refused for ``model`` integrated with ``method``
    (:mod:`hh_plugin.model.integrators`), or ``None`` if it is accurate."""
    limit = model.max_step(method)
    if dt_ms <= limit * (1 + 1e-9):
        return None
    if method == DEFAULT_METHOD:
        why = ("exponential Euler's error grows with dt and beyond it spike counts and "
               "times are wrong (at dt = 1 ms the reference neuron at 10 uA stops spiking)")
    else:
        why = (f"beyond it the {method!r} method is unstable or loses spikes (measured "
               f"against a converged solution, docs/accuracy.md)")
    return (f"dt = {dt_ms:g} ms is longer than {limit:g} ms, the longest step for which "
            f"model {model.name!r} is accurate with method {method!r}: {why}")


def check_step(dt_ms: float, model, hint: str = "", method: str = DEFAULT_METHOD) -> None:
    """Raise :class:`StepTooLong` unless ``dt_ms`` (ms) is within the model's longest step
    for ``method`` (:meth:`~hh_plugin.model.ModelDefinition.max_step`)."""
    problem = step_problem(dt_ms, model, method)
    if problem:
        raise StepTooLong(problem + (f"; {hint}" if hint else ""))


def implausible_input(peak_uA: float, min_C_uF: float, model) -> Optional[str]:
    """A warning text if ``peak_uA / min_C_uF`` exceeds :data:`MAX_PLAUSIBLE_RATE`."""
    if not (min_C_uF > 0) or not math.isfinite(peak_uA):
        return None
    rate = peak_uA / min_C_uF
    if rate <= MAX_PLAUSIBLE_RATE:
        return None
    return (f"input current up to {peak_uA:.3g} uA moves V at up to {rate:.3g} mV/ms, far "
            f"beyond any spike of model {model.name!r} (about 300 mV/ms): the membrane "
            f"potential will be meaningless; currents are in uA (1 nA = 1e-3 uA)")


def warn_if_implausible(peak_uA, C_uF, model, stacklevel: int = 3) -> None:
    """Issue :class:`ImplausibleInputWarning` for an implausible input (see the module).

    ``peak_uA``: the largest ``|I|`` of each neuron (or one number); ``C_uF``: the
    capacitance, scalar or per neuron. The neuron with the largest ``|I|/C`` is judged."""
    peak, C = np.broadcast_arrays(np.asarray(peak_uA, dtype=np.float64),
                                  np.asarray(C_uF, dtype=np.float64))
    if peak.size == 0:
        return
    worst = np.unravel_index(np.argmax(peak / C), peak.shape) if peak.ndim else ()
    text = implausible_input(float(peak[worst]), float(C[worst]), model)
    if text:
        warnings.warn(text, ImplausibleInputWarning, stacklevel=stacklevel)
