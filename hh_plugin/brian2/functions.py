r"""``hh_exprel``: a Brian2 ``Function`` for the relative exponential, one object per process.

The model definitions write rates with

.. math::
    \operatorname{exprel}(x) = \frac{e^x - 1}{x}, \qquad \operatorname{exprel}(0) = 1,

which has no removable singularity where :math:`x = 0` (at :math:`V = -40` mV in
:math:`\alpha_m` of the reference model). Brian2 has ``exprel`` built in, but on the numpy
target it is called through a unit-checking wrapper that formats the whole result array
into a message on every call (about 100x slower than the arithmetic), and its compiled
form (``expm1(x)/x`` behind branches) keeps the C++ compiler from vectorising the loop.

:func:`exprel_function` returns the ``brian2.Function`` named ``hh_exprel`` with one
implementation per code-generation target, registered on the function object itself
(``Function.implementations.add_implementation``): nothing is added to Brian2's global
function table. Groups made by :func:`~hh_plugin.brian2.neuron_group` find it in their
``namespace``; a ``NeuronGroup`` of your own built from :func:`~hh_plugin.brian2.equations`
needs ``namespace=hh_plugin.brian2.namespace()``.

Implementations:

- ``numpy``: :func:`hh_plugin.model.expressions.exprel_numpy` called directly (vectorised,
  ``expm1(x)/x``; no unit checks: the argument is dimensionless);
- ``cython``, ``cpp`` (runtime C++ and C++ standalone) and ``cuda`` (Brian2CUDA, a
  ``__host__ __device__`` function with ``double`` and ``float`` overloads): the
  branch-free guarded form

  .. math::
      g\,(1 + x/2 + x^2/6 + x^3/24) + (1 - g)\,\frac{e^x - 1}{x + g}, \qquad
      g = [\,|x| < 10^{-3}\,],

  (``float``: :math:`g = [|x| < 5\cdot10^{-2}]` and one more Taylor term). Errors in
  float64: Taylor truncation :math:`x^4/120 < 10^{-14}` relative; cancellation in
  :math:`e^x - 1` for :math:`|x| \ge 10^{-3}` below :math:`3\cdot10^{-13}` relative. The
  ``+ g`` keeps the unused quotient finite at :math:`x = 0`; without a branch the
  compiler vectorises the state update (see ``docs/performance.md``);
- symbolic: :class:`hh_exprel`, the model's sympy ``exprel`` under this name, with its
  derivative :math:`\operatorname{exprel}'(x) = (e^x (x-1) + 1)/x^2`, so that
  exponential Euler can analyse equations that contain it.

Implementations are keyed by the target names (``'numpy'``, ``'cython'``, ``'cpp'``,
``'cuda'``), so Brian2CUDA needs not be imported to register its one.
"""

from __future__ import annotations

from typing import Dict

import sympy

from hh_plugin.model.expressions import (EXPREL_TAYLOR_COEFFICIENTS, EXPREL_TAYLOR_CUTOFF_FLOAT32,
                                         EXPREL_TAYLOR_CUTOFF_FLOAT64, exprel)

#: Name of the function inside the generated Brian2 equations.
FUNCTION_NAME = "hh_exprel"
#: Below this :math:`|x|` the compiled implementations use the Taylor polynomial
#: (float64; the same cutoff as the torch backend's float64 exprel).
GUARD_THRESHOLD = EXPREL_TAYLOR_CUTOFF_FLOAT64
GUARD_THRESHOLD_FLOAT32 = EXPREL_TAYLOR_CUTOFF_FLOAT32


def _horner_c(coefficients, suffix: str = "") -> str:
    """``c0 + x*(c1 + x*(...))`` as C text."""
    text = f"{coefficients[-1]!r}{suffix}"
    for c in reversed(coefficients[:-1]):
        text = f"({c!r}{suffix} + x*{text})"
    return text


def _guarded_c(c_type: str, cutoff: float, coefficients, suffix: str) -> str:
    one = f"1.0{suffix}"
    return (f"const {c_type} g = ({c_type})(fabs(x) < {cutoff!r}{suffix});\n"
            f"    return g*{_horner_c(coefficients, suffix)} + ({one} - g)*(exp(x) - {one})"
            f"/(x + g);")


#: Taylor terms of the compiled float64 form (up to x^3) and float32 form (up to x^4).
_TAYLOR64 = EXPREL_TAYLOR_COEFFICIENTS[:4]
_TAYLOR32 = EXPREL_TAYLOR_COEFFICIENTS[:5]

CPP_CODE = f"""
static inline double _hh_exprel(double x)
{{
    {_guarded_c("double", GUARD_THRESHOLD, _TAYLOR64, "")}
}}
"""

CYTHON_CODE = f"""
cdef inline double _hh_exprel(double x) nogil:
    cdef double g = <double>(fabs(x) < {GUARD_THRESHOLD!r})
    return g*{_horner_c(_TAYLOR64)} + (1.0 - g)*(exp(x) - 1.0)/(x + g)
"""

CUDA_CODE = f"""
__host__ __device__ static inline double _hh_exprel(double x)
{{
    {_guarded_c("double", GUARD_THRESHOLD, _TAYLOR64, "")}
}}
__host__ __device__ static inline float _hh_exprel(float x)
{{
    {_guarded_c("float", GUARD_THRESHOLD_FLOAT32, _TAYLOR32, "f").replace("fabs(", "fabsf(")
                                                                   .replace("exp(", "expf(")}
}}
"""

#: Code-generation targets with an implementation.
TARGETS = ("numpy", "cython", "cpp", "cuda")


class hh_exprel(exprel):
    r"""Symbolic :math:`(e^x - 1)/x` as Brian2 sees it (printed as ``hh_exprel``).

    The model's :class:`~hh_plugin.model.expressions.exprel` under the name of the Brian2
    function (same value at 0 and derivative).
    """

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return (sympy.exp(arg) - 1) / arg


_FUNCTION = []


def exprel_function():
    """The ``brian2.Function`` ``hh_exprel`` (made once, with every implementation)."""
    if not _FUNCTION:
        from brian2 import Function

        from hh_plugin.model.expressions import exprel_numpy

        func = Function(exprel_numpy, sympy_func=hh_exprel, arg_units=[1], return_unit=1,
                        arg_types=["float"], return_type="float")
        impl = func.implementations
        impl.add_implementation("numpy", code=exprel_numpy)
        impl.add_implementation("cython", code=CYTHON_CODE, name="_hh_exprel")
        impl.add_implementation("cpp", code=CPP_CODE, name="_hh_exprel")
        impl.add_implementation("cuda", code=CUDA_CODE, name="_hh_exprel")
        _FUNCTION.append(func)
    return _FUNCTION[0]


def namespace() -> Dict[str, object]:
    """``{'hh_exprel': <Function>}``: the namespace entries the generated equations need.

    Pass it to a ``NeuronGroup`` of your own built from
    :func:`~hh_plugin.brian2.equations` (``namespace={**namespace(), ...}``);
    :func:`~hh_plugin.brian2.neuron_group` adds it itself.
    """
    return {FUNCTION_NAME: exprel_function()}
