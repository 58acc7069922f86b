r"""A fast ``hh_exprel`` function for Brian2's code generation.

The model definitions write rates with the relative exponential

.. math::
    \operatorname{exprel}(x) = \frac{e^x - 1}{x}, \qquad \operatorname{exprel}(0) = 1.

Brian2 has ``exprel`` built in, but on the numpy runtime target it is called through a
unit-checking wrapper that formats the whole result array into an error message on every
call, about 100x slower than the arithmetic itself. This module registers the same
function under the name ``hh_exprel`` in ``brian2.core.functions.DEFAULT_FUNCTIONS``:

- numpy target: :func:`hh_plugin.model.expressions.exprel_numpy` called directly
  (vectorised, no unit checks: the argument of ``exprel`` is dimensionless);
- cython and C++ (runtime and standalone) targets: ``expm1(x)/x``, 1 for
  :math:`|x| < 10^{-16}`, :math:`+\infty` above 717, as Brian2's own ``exprel``;
- Brian2CUDA (``cuda_standalone``): the same as a ``__host__ __device__`` function with
  ``double`` and ``float`` overloads, registered for Brian2CUDA's code generator once
  ``brian2cuda`` is imported (:func:`ensure_registered`; Brian2CUDA's own ``exprel`` code is
  a template that only its generator knows to fill in, so it cannot be borrowed);
- any other target added later reuses Brian2's ``exprel`` implementation, copied
  when the first group is built (:func:`ensure_registered`);
- symbolic: :class:`hh_exprel` with its derivative
  :math:`\operatorname{exprel}'(x) = (e^x (x-1) + 1)/x^2`, so that exponential Euler can
  analyse equations that contain it.

The two numerical implementations agree to round-off (both are
:math:`\mathrm{expm1}(x)/x` away from 0).
"""

from __future__ import annotations

import sympy

from hh_plugin.model.expressions import exprel

#: Name of the function inside generated Brian2 equations.
FUNCTION_NAME = "hh_exprel"

_CYTHON_CODE = """
cdef inline double _hh_exprel(double x) nogil:
    if fabs(x) < 1e-16:
        return 1.0
    elif x > 717:  # near log(DBL_MAX)
        return NPY_INFINITY
    else:
        return expm1(x) / x
"""

_CPP_CODE = """
static inline double _hh_exprel(double x)
{
    if (fabs(x) < 1e-16)
        return 1.0;
    if (x > 717)
        return INFINITY;
    return expm1(x)/x;
}
"""

_CUDA_CODE = """
__host__ __device__ static inline double _hh_exprel(double x)
{
    if (fabs(x) < 1e-16)
        return 1.0;
    if (x > 717)
        return INFINITY;
    return expm1(x)/x;
}
__host__ __device__ static inline float _hh_exprel(float x)
{
    if (fabsf(x) < 1e-7f)
        return 1.0f;
    if (x > 88.7f)
        return INFINITY;
    return expm1f(x)/x;
}
"""


class hh_exprel(exprel):
    r"""Symbolic :math:`(e^x - 1)/x` as Brian2 sees it (printed as ``hh_exprel``).

    The model's :class:`~hh_plugin.model.expressions.exprel` under the name of the Brian2
    function registered here (same value at 0 and derivative).
    """

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return (sympy.exp(arg) - 1) / arg


def register() -> None:
    """Add ``hh_exprel`` to Brian2's default functions (idempotent)."""
    from brian2.core.functions import DEFAULT_FUNCTIONS, Function

    if FUNCTION_NAME in DEFAULT_FUNCTIONS:
        return
    from brian2.codegen.generators.cpp_generator import C99Check, CPPCodeGenerator
    from brian2.codegen.generators.cython_generator import CythonCodeGenerator
    from brian2.codegen.generators.numpy_generator import NumpyCodeGenerator
    from hh_plugin.model.expressions import exprel_numpy

    func = Function(exprel_numpy, sympy_func=hh_exprel, arg_units=[1], return_unit=1,
                    arg_types=["float"], return_type="float")
    impl = func.implementations
    impl.add_implementation(NumpyCodeGenerator, code=exprel_numpy)
    impl.add_implementation(CythonCodeGenerator, code=_CYTHON_CODE, name="_hh_exprel",
                            availability_check=C99Check(FUNCTION_NAME))
    impl.add_implementation(CPPCodeGenerator, code=_CPP_CODE, name="_hh_exprel",
                            availability_check=C99Check(FUNCTION_NAME))
    DEFAULT_FUNCTIONS[FUNCTION_NAME] = func


def ensure_registered() -> None:
    """Register, then copy Brian2's ``exprel`` implementations for targets we lack.

    Targets added after import (``import brian2cuda`` registers its generator and its
    ``exprel``) get Brian2's own implementation of ``exprel`` for ``hh_exprel``.
    """
    import sys

    from brian2.core.functions import DEFAULT_FUNCTIONS

    register()
    container = DEFAULT_FUNCTIONS[FUNCTION_NAME].implementations
    ours = container._implementations
    if "brian2cuda" in sys.modules:
        from brian2cuda.cuda_generator import CUDACodeGenerator

        if CUDACodeGenerator not in ours:
            container.add_implementation(CUDACodeGenerator, code=_CUDA_CODE,
                                         name="_hh_exprel")
    theirs = DEFAULT_FUNCTIONS["exprel"].implementations._implementations
    for key, implementation in list(theirs.items()):
        # string keys ('numpy') are Brian2's slow unit-checking fallback: never copy them
        if isinstance(key, type) and key not in ours:
            ours[key] = implementation
