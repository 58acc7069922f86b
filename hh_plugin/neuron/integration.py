r"""How NEURON integrates: CVODE with tolerances, or its fixed step of order 1 or 2.

- :meth:`Integration.cvode` (the default, ``atol = 1e-6``, ``rtol = 0``): NEURON's
  variable-order, variable-step method (CVODE, one global step over all cells of a
  process), each state's local error kept below :math:`\mathrm{atol} +
  \mathrm{rtol}\,|y|` (NEURON scales ``atol`` per state by its unit; V in mV, gates
  dimensionless). Spike events and input discontinuities are met exactly (the
  integrator stops at them); threshold crossings are located by interpolation
  (``condition_order(2)``). The accuracy tests use ``atol = 1e-9``.
- :meth:`Integration.fixed`: ``h.dt`` fixed (by default the network's step), ``order`` 0
  (backward Euler, first order, NEURON's ``secondorder = 0``) or 2 (Crank-Nicolson,
  second order, ``secondorder = 2``). Events are delivered at step boundaries, and a
  spike's time is the end of the step in which ``v`` crossed the threshold (NEURON 9.0.2
  does not interpolate it with the fixed step, ``condition_order(2)`` notwithstanding),
  so spike times are exact to one step. Runs are bit-reproducible across process and
  thread counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

#: Integration methods.
METHODS = ("cvode", "fixed")
#: The default absolute tolerance of :meth:`Integration.cvode`.
DEFAULT_ATOL = 1e-6


@dataclass(frozen=True)
class Integration:
    """An integration choice (build with :meth:`cvode` or :meth:`fixed`)."""

    method: str = "cvode"
    atol: float = DEFAULT_ATOL
    rtol: float = 0.0
    order: int = 2
    dt: Optional[float] = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"NEURON integration method {self.method!r} not in {METHODS}")
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or value < 0:
                raise ValueError(f"NEURON integration: {name} must be a finite number >= 0, "
                                 f"got {value!r}")
        if self.method == "cvode" and not (self.atol > 0 or self.rtol > 0):
            raise ValueError("NEURON integration: CVODE needs atol > 0 or rtol > 0")
        if self.order not in (0, 2):
            raise ValueError(f"NEURON integration: order must be 0 (backward Euler) or 2 "
                             f"(Crank-Nicolson), got {self.order!r}")
        if self.dt is not None and (isinstance(self.dt, bool) or not isinstance(
                self.dt, (int, float)) or not 0 < self.dt < math.inf):
            raise ValueError(f"NEURON integration: dt must be a positive number of ms, "
                             f"got {self.dt!r}")

    @classmethod
    def cvode(cls, atol: float = DEFAULT_ATOL, rtol: float = 0.0) -> "Integration":
        """CVODE with absolute tolerance ``atol`` and relative tolerance ``rtol``."""
        return cls("cvode", atol=atol, rtol=rtol)

    @classmethod
    def fixed(cls, dt: Optional[float] = None, order: int = 2) -> "Integration":
        """NEURON's fixed step ``dt`` (ms; ``None``: the network's ``dt``) of ``order``
        0 or 2."""
        return cls("fixed", order=order, dt=dt)

    @classmethod
    def coerce(cls, value) -> "Integration":
        """An :class:`Integration`, ``None`` (the default) or ``'cvode'``/``'fixed'``."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if value in METHODS:
            return cls(value)
        raise ValueError(f"NEURON integration must be an Integration, 'cvode' or 'fixed', "
                         f"got {value!r}")

    def step(self, default_dt: float) -> float:
        """The fixed step in ms (``dt``, else ``default_dt``)."""
        return float(self.dt if self.dt is not None else default_dt)

    def apply(self, default_dt: float, pc=None) -> dict:
        """Set NEURON up for this integration (``default_dt``: the fixed step when ``dt``
        is ``None``; also the largest step CVODE may take is unbounded). Returns NEURON's
        previous settings, for :func:`restore` after the run: these are process-wide, and
        a user's own NEURON model in the same process must not inherit them."""
        from neuron import h

        cvode = h.CVode()
        previous = {"active": int(cvode.active()), "atol": float(cvode.atol()),
                    "rtol": float(cvode.rtol()), "secondorder": int(h.secondorder),
                    "dt": float(h.dt), "condition_order": int(cvode.condition_order())}
        if self.method == "cvode":
            cvode.active(1)
            cvode.atol(self.atol)
            cvode.rtol(self.rtol)
        else:
            cvode.active(0)
            h.secondorder = self.order
            h.dt = self.step(default_dt)
        cvode.condition_order(2)
        return previous

    def describe(self) -> str:
        if self.method == "cvode":
            return f"CVODE (atol {self.atol:g}, rtol {self.rtol:g})"
        return f"fixed step (dt {self.dt if self.dt is not None else 'of the network'}, " \
               f"secondorder {self.order})"


def restore(previous: dict) -> None:
    """Put back NEURON's settings that :meth:`Integration.apply` returned."""
    from neuron import h

    cvode = h.CVode()
    cvode.active(previous["active"])
    cvode.atol(previous["atol"])
    cvode.rtol(previous["rtol"])
    cvode.condition_order(previous["condition_order"])
    h.secondorder = previous["secondorder"]
    h.dt = previous["dt"]
