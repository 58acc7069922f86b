r"""``hh_exprel``: a Brian2 ``Function`` for the relative exponential.

The model definitions write rates with

.. math::
    \operatorname{exprel}(x) = \frac{e^x - 1}{x}, \qquad \operatorname{exprel}(0) = 1,

which has no removable singularity where :math:`x = 0` (at :math:`V = -40` mV in
:math:`\alpha_m` of the reference model). Brian2 has ``exprel`` built in, but on the numpy
target it is called through a unit-checking wrapper that formats the whole result array
into a message on every call (about 100x slower than the arithmetic), and in compiled
code it computes an exponential of its own for every rate.

The generated equations call ``hh_exprel(x, exp(x))``: the exponential is an argument,
written in the equations, so that Brian2's code generation sees it. Its loop-invariant
optimisation writes :math:`e^{-0.1 V/\mathrm{mV} - 4}` as
:math:`e^{-4} \cdot e^{-0.1 V/\mathrm{mV}}`, and the compiler computes
:math:`e^{-0.1 V/\mathrm{mV}}` once for :math:`\alpha_m`, :math:`\alpha_n` and
:math:`\beta_h` of the reference model (a function that computes its own exponential
costs about 15% of the C++ standalone step; see ``docs/performance.md``). Brian2 passes
a user function to sympy as an opaque symbol, so the exponential cannot be added behind
the function's name. With :math:`e = e^x`, ``hh_exprel(x, e)`` evaluates the branch-free
guarded form

.. math::
    g\,(1 + x/2 + x^2/6 + x^3/24) + (1 - g)\,\frac{e - 1}{x + g}, \qquad
    g = [\,|x| < 10^{-3}\,]

(``float`` in CUDA: :math:`g = [|x| < 5\cdot10^{-2}]` and one more Taylor term). Errors in
float64: Taylor truncation :math:`x^4/120 < 10^{-14}` relative; cancellation in
:math:`e - 1` for :math:`|x| \ge 10^{-3}` below :math:`10^{-12}` relative. The ``+ g``
keeps the unused quotient finite at :math:`x = 0`; without a branch the compiler can
vectorise the state update.

The implementations are registered on the function object
(``Function.implementations.add_implementation``, keyed by target name: ``'numpy'``,
``'cython'``, ``'cpp'`` for runtime C++ and C++ standalone, ``'cuda'`` for Brian2CUDA
with ``double`` and ``float`` overloads); nothing is added to Brian2's global function
table, and Brian2CUDA need not be imported. The numpy implementation calls
:func:`hh_plugin.model.expressions.exprel_numpy` (``expm1(x)/x``, exact to round-off;
``e`` is not used). Groups made by :func:`~hh_plugin.brian2.neuron_group` find the
function in their ``namespace``; a ``NeuronGroup`` of your own built from
:func:`~hh_plugin.brian2.equations` needs ``namespace=hh_plugin.brian2.namespace()``.
"""

from __future__ import annotations

from typing import Dict

from hh_plugin.model.expressions import (EXPREL_TAYLOR_COEFFICIENTS, EXPREL_TAYLOR_CUTOFF_FLOAT32,
                                         EXPREL_TAYLOR_CUTOFF_FLOAT64, exprel_numpy)

#: Name of the function inside the generated Brian2 equations: ``hh_exprel(x, exp(x))``.
FUNCTION_NAME = "hh_exprel"
#: Below this :math:`|x|` the compiled implementations use the Taylor polynomial
#: (float64; the same cutoff as the torch backend's float64 exprel).
GUARD_THRESHOLD = EXPREL_TAYLOR_CUTOFF_FLOAT64
GUARD_THRESHOLD_FLOAT32 = EXPREL_TAYLOR_CUTOFF_FLOAT32
#: Taylor terms of the compiled float64 form (up to x^3) and float32 form (up to x^4).
_TAYLOR64 = EXPREL_TAYLOR_COEFFICIENTS[:4]
_TAYLOR32 = EXPREL_TAYLOR_COEFFICIENTS[:5]


def _horner(coefficients, suffix: str = "") -> str:
    """``c0 + x*(c1 + x*(...))`` as C (and Cython) text."""
    text = f"{coefficients[-1]!r}{suffix}"
    for c in reversed(coefficients[:-1]):
        text = f"({c!r}{suffix} + x*{text})"
    return text


def _c_function(c_type: str, prefix: str = "static inline") -> str:
    """The guarded form as a C/C++/CUDA function of ``(x, ex)``."""
    s = "f" if c_type == "float" else ""
    cutoff = GUARD_THRESHOLD_FLOAT32 if s else GUARD_THRESHOLD
    taylor = _horner(_TAYLOR32 if s else _TAYLOR64, s)
    return (f"{prefix} {c_type} _hh_exprel({c_type} x, {c_type} ex)\n{{\n"
            f"    const {c_type} g = ({c_type})(fabs{s}(x) < {cutoff!r}{s});\n"
            f"    return g*{taylor} + (1.0{s} - g)*(ex - 1.0{s})/(x + g);\n}}\n")


#: Compiled implementations by target.
CODES = {
    "cpp": _c_function("double"),
    # cdivision: no zero-division check (x + g is never 0), which costs a third of the
    # cython step; noexcept: no error check after each call
    "cython": ("@_cython.cdivision(True)\n"
               "cdef inline double _hh_exprel(double x, double ex) noexcept nogil:\n"
               f"    cdef double g = <double>(fabs(x) < {GUARD_THRESHOLD!r})\n"
               f"    return g*{_horner(_TAYLOR64)} + (1.0 - g)*(ex - 1.0)/(x + g)\n"),
    "cuda": _c_function("double", "__host__ __device__ static inline")
    + _c_function("float", "__host__ __device__ static inline"),
}
#: Code-generation targets with an implementation.
TARGETS = ("numpy",) + tuple(CODES)


def _exprel_numpy(x, ex):
    """numpy implementation: ``expm1(x)/x`` (``ex`` is not needed)."""
    return exprel_numpy(x)


_FUNCTION = []


def exprel_function():
    """The ``brian2.Function`` ``hh_exprel(x, ex)`` (made once, with every implementation)."""
    if not _FUNCTION:
        from brian2 import Function

        func = Function(_exprel_numpy, arg_units=[1, 1], return_unit=1,
                        arg_types=["float", "float"], return_type="float")
        func.implementations.add_implementation("numpy", code=_exprel_numpy)
        for target, code in CODES.items():
            func.implementations.add_implementation(target, code=code, name="_hh_exprel")
        _FUNCTION.append(func)
    return _FUNCTION[0]


def namespace() -> Dict[str, object]:
    """``{'hh_exprel': <Function>}``: the namespace entries the generated equations need.

    Pass it to a ``NeuronGroup`` of your own built from
    :func:`~hh_plugin.brian2.equations` (``namespace={**namespace(), ...}``);
    :func:`~hh_plugin.brian2.neuron_group` adds it itself.
    """
    return {FUNCTION_NAME: exprel_function()}
