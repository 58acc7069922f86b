r"""Integration methods: their names, and the one place the fourth-order stage arithmetic
is written.

Two methods are known (:data:`METHODS`); a specification names one
(``HHSpec(method=...)``, default :data:`DEFAULT_METHOD`):

* ``'exponential_euler'``: the reference model's first-order step (every variable
  advanced by the exact solution of its own equation with the others frozen;
  :mod:`hh_plugin.torch.functional.hh`). Spike-time error :math:`O(\Delta t)`.
* ``'rk4'``: the classical fourth-order Runge-Kutta method on the whole state
  :math:`y = (V, x_1, \dots)` with :math:`\dot y = f(y)`,

  .. math::
      \begin{align*}
      k_1 &= \Delta t\, f(y), &
      k_2 &= \Delta t\, f(y + k_1/2), \\
      k_3 &= \Delta t\, f(y + k_2/2), &
      k_4 &= \Delta t\, f(y + k_3), \\
      y' &= y + (k_1 + 2 k_2 + 2 k_3 + k_4)/6,
      \end{align*}

  where every stage evaluates :math:`f` afresh: rates, steady states, instantaneous gates
  (:math:`m_\infty(V)` of Wang-Buzsaki) and conductances at the stage's state. Spike-time
  error :math:`O(\Delta t^4)`.

**Input inside a step.** On every backend the input current :math:`I` (and a synaptic
conductance handed to the step) is *held* at its value for the step through all four
stages, as exponential Euler holds it: on Brian2 every stage evaluates the equations at
the step's start time :math:`t_k` (:func:`brian2_description`), so a ``TimedArray`` or
any expression of ``t`` is read at :math:`t_k` only.

:data:`RK4_TABLEAU` is the method; :func:`explicit_step` (numbers, numpy arrays or torch
tensors: the torch step of :mod:`hh_plugin.torch.functional.hh`) and
:func:`brian2_description` (the text of a Brian2 ``ExplicitStateUpdater``, the Brian2
group's state updater) are both generated from it, so the torch and Brian2 steps do the
same arithmetic.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable, Sequence, Tuple

#: The method names a specification accepts.
METHODS = ("exponential_euler", "rk4")
#: The reference model's method, the default of every backend.
DEFAULT_METHOD = "exponential_euler"

#: Classical RK4 as ``(stages, weights)``: stage ``i`` evaluates :math:`f` at
#: :math:`y + \sum_j a_{ij} k_j` (``stages[i]`` lists :math:`a_{ij}` for ``j < i``),
#: then :math:`y' = y + \sum_i b_i k_i` with ``weights`` :math:`b_i` (integer numerators
#: over the common denominator ``RK4_DENOMINATOR``) and :math:`k_i = \Delta t\, f(\cdot)`.
RK4_TABLEAU: Tuple[Tuple[Tuple[Fraction, ...], ...], Tuple[int, ...]] = (
    ((), (Fraction(1, 2),), (Fraction(0), Fraction(1, 2)),
     (Fraction(0), Fraction(0), Fraction(1))),
    (1, 2, 2, 1),
)
RK4_DENOMINATOR = 6


def check_method(method) -> str:
    """``method`` if it is one of :data:`METHODS`, else a ``ValueError`` naming them."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown integration method {method!r}; the methods are "
                         f"{list(METHODS)} ('exponential_euler' is the reference model's, "
                         f"first order; 'rk4' is the classical fourth-order Runge-Kutta)")
    return method


def _scaled(k, a: Fraction):
    """:math:`a k` written as Brian2's and the torch step's arithmetic writes it."""
    if a == 1:
        return k
    if a.numerator == 1:
        return k / a.denominator
    return k * (a.numerator / a.denominator)


def explicit_step(derivative: Callable[[Sequence], Sequence], state: Sequence, dt,
                  tableau=RK4_TABLEAU, denominator: int = RK4_DENOMINATOR) -> list:
    r"""One explicit Runge-Kutta step :math:`y \to y'` of :math:`\dot y = f(y)`.

    Args:
        derivative: :math:`f`, from a sequence of state values (``V`` in mV, gates) to
            their time derivatives (per ms).
        state: the values :math:`y` (numbers, numpy arrays or torch tensors).
        dt: the step :math:`\Delta t` in ms.

    Returns the new values as a list. With the default tableau: :math:`k_i = \Delta t\,
    f(y + \sum_j a_{ij} k_j)`, :math:`y' = y + (k_1 + 2k_2 + 2k_3 + k_4)/6`.
    """
    stages, weights = tableau
    ks = []
    for row in stages:
        point = list(state)
        for a, k in zip(row, ks):
            if a != 0:
                point = [y + _scaled(kk, a) for y, kk in zip(point, k)]
        ks.append([dt * d for d in derivative(point)])
    out = []
    for i, y in enumerate(state):
        total = None
        for b, k in zip(weights, ks):
            term = k[i] if b == 1 else b * k[i]
            total = term if total is None else total + term
        out.append(y + total / denominator)
    return out


def brian2_description(tableau=RK4_TABLEAU, denominator: int = RK4_DENOMINATOR) -> str:
    """The method as the description of a Brian2 ``ExplicitStateUpdater`` (``k_i = dt*f(...)``
    lines and ``x_new = ...``), the same stages as :func:`explicit_step`.

    Every stage evaluates :math:`f` at the step's start time ``t`` (Brian2's own ``rk4``
    uses ``t + dt/2`` and ``t + dt``): a current that depends on time (a ``TimedArray``
    sampled on the simulation's ``dt``, an expression of ``t``) is held at its value for
    the step, as the torch step holds its input (module docs)."""
    stages, weights = tableau
    lines = []
    for i, row in enumerate(stages, start=1):
        shift = "".join(f"+{_brian2_term(a, j)}" for j, a in enumerate(row, start=1) if a != 0)
        lines.append(f"k_{i} = dt*f(x{shift},t)")
    total = "+".join(f"k_{i}" if b == 1 else f"{b}*k_{i}"
                     for i, b in enumerate(weights, start=1))
    lines.append(f"x_new = x+({total})/{denominator}")
    return "\n".join(lines)


def _brian2_term(a: Fraction, j: int) -> str:
    if a == 1:
        return f"k_{j}"
    if a.numerator == 1:
        return f"k_{j}/{a.denominator}"
    return f"k_{j}*{a.numerator}/{a.denominator}"
