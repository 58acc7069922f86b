r"""Symbolic expressions shared by every backend.

Rate functions and conductances are written once, as strings, and parsed here into
`sympy` expressions. Each backend prints them in its own language: Brian2 equation
strings (:mod:`hh_plugin.brian2`), torch and numpy callables (:func:`to_callable`).

The one special function is the relative exponential

.. math::
    \operatorname{exprel}(x) = \frac{e^x - 1}{x}, \qquad \operatorname{exprel}(0) = 1,

which writes rates such as :math:`\alpha_m = 1/\operatorname{exprel}(-(V+40)/10)` without
the removable singularity of :math:`(V+40)/(1-e^{-(V+40)/10})` at :math:`V = -40` mV.
"""

from __future__ import annotations

import ast
import math
from typing import Callable, Iterable, Mapping

import numpy as np
import sympy

#: Name of the membrane potential symbol in every expression (its value in mV).
VOLTAGE_SYMBOL = "V"


class exprel(sympy.Function):
    r"""Symbolic :math:`\operatorname{exprel}(x) = (e^x - 1)/x` with its removable point at 0."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sympy.S.One
        return None

    def fdiff(self, argindex=1):
        x = self.args[0]
        return (sympy.exp(x) * (x - 1) + 1) / x**2


#: Functions allowed in model expressions, by name.
ALLOWED_FUNCTIONS = {"exp": sympy.exp, "exprel": exprel, "log": sympy.log,
                     "sqrt": sympy.sqrt, "tanh": sympy.tanh, "cosh": sympy.cosh}


#: Longest expression text accepted (a model's rate is a few dozen characters).
MAX_EXPRESSION_LENGTH = 2000
#: Deepest nesting of operations accepted.
MAX_EXPRESSION_DEPTH = 50
#: Largest |exponent| of a power whose base and exponent are both numbers.
MAX_NUMERIC_EXPONENT = 64


def _build(node: ast.AST, text: str, symbols: Mapping[str, sympy.Symbol], depth: int):
    """Build the sympy expression of one parsed node (numbers, names, + - * / **, calls)."""
    if depth > MAX_EXPRESSION_DEPTH:
        raise ValueError(f"model expression {text!r} is nested too deeply")
    build = lambda n: _build(n, text, symbols, depth + 1)  # noqa: E731
    if isinstance(node, ast.Expression):
        return build(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        if type(node.value) is int:
            if abs(node.value) > 10**30:
                raise ValueError(f"model expression {text!r}: number {node.value} is too large")
            return sympy.Integer(node.value)
        if not math.isfinite(node.value):
            raise ValueError(f"model expression {text!r}: number is not finite")
        return sympy.Float(node.value)
    if isinstance(node, ast.Name):
        if node.id in symbols:
            return symbols[node.id]
        if node.id in ALLOWED_FUNCTIONS:
            raise ValueError(f"model expression {text!r}: {node.id!r} is a function; call it")
        raise ValueError(f"model expression {text!r} uses unknown name(s) [{node.id!r}]; "
                         f"allowed: {sorted(symbols)}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = build(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, tuple(_OPERATORS)):
        left, right = build(node.left), build(node.right)
        if isinstance(node.op, ast.Pow) and left.is_Number and right.is_Number:
            magnitude = abs(float(right)) * math.log10(max(abs(float(left)), 10.0))
            if abs(float(right)) > MAX_NUMERIC_EXPONENT or magnitude > 300:
                raise ValueError(f"model expression {text!r}: numeric power with exponent "
                                 f"{right} is out of range")
        if isinstance(node.op, ast.Div) and right.is_zero:
            raise ValueError(f"model expression {text!r} divides by zero")
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in ALLOWED_FUNCTIONS:
            raise ValueError(f"model expression {text!r} uses unsupported function "
                             f"{name or ast.unparse(node.func)!r}; allowed: "
                             f"{sorted(ALLOWED_FUNCTIONS)}")
        if node.keywords or len(node.args) != 1:
            raise ValueError(f"model expression {text!r}: {name}() takes one argument")
        return ALLOWED_FUNCTIONS[name](build(node.args[0]))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise ValueError(f"model expression {text!r}: '^' is not a power; write '**'")
    raise ValueError(f"model expression {text!r}: {type(node).__name__} is not allowed "
                     f"(numbers, names, + - * / **, and calls of {sorted(ALLOWED_FUNCTIONS)})")


_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
              ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
              ast.Pow: lambda a, b: a ** b}


def parse(text: str, allowed_symbols: Iterable[str]) -> sympy.Expr:
    """Parse one model expression, refusing names that are neither allowed symbols nor functions.

    The text is parsed by Python's :mod:`ast` and only numbers, the allowed names, the
    operators ``+ - * / **`` and calls of :data:`ALLOWED_FUNCTIONS` are turned into
    sympy objects; nothing is evaluated (model definitions travel in exchange files, so
    an expression is untrusted input). The result equals ``sympy.sympify(text)``.
    """
    if not isinstance(text, str):
        raise TypeError(f"model expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ValueError(f"model expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    symbols = {name: sympy.Symbol(name, real=True) for name in allowed_symbols}
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot parse model expression {text!r}: {exc}") from None
    try:
        expr = _build(tree, text, symbols, 0)
    except RecursionError:
        raise ValueError(f"model expression {text!r} is nested too deeply") from None
    if not isinstance(expr, sympy.Expr):
        raise ValueError(f"model expression {text!r} is not a number-valued expression")
    return expr


# --------------------------------------------------------------------------- numerics
def exprel_numpy(x):
    r"""Vectorised :math:`(e^x-1)/x` with value 1 at 0, accurate to round-off everywhere."""
    x = np.asarray(x, dtype=np.result_type(x, np.float64))
    small = np.abs(x) < 1e-8
    safe = np.where(small, 1.0, x)
    return np.where(small, 1.0 + 0.5 * x, np.expm1(safe) / safe)


#: Below these |x| the relative exponential is evaluated by its Taylor polynomial
#: (float64, and every lower precision). Shared by the torch, C++ and Triton code.
EXPREL_TAYLOR_CUTOFF_FLOAT64 = 1e-3
EXPREL_TAYLOR_CUTOFF_FLOAT32 = 5e-2
#: Taylor coefficients of exprel at 0: 1, 1/2!, 1/3!, 1/4!, 1/5! (error |x|^5/720).
EXPREL_TAYLOR_COEFFICIENTS = (1.0, 1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0)


def horner(x, coefficients):
    """Evaluate :math:`\\sum_k c_k x^k` by Horner's rule (tensors, arrays or floats)."""
    result = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        result = c + x * result
    return result


def exprel_torch(x):
    r"""Differentiable :math:`(e^x-1)/x` for torch tensors.

    Near 0 the quotient and, worse, its autograd derivative
    :math:`(x e^x - e^x + 1)/x^2` cancel catastrophically, so within
    :math:`|x| < \epsilon` the Taylor series :math:`1 + x/2 + x^2/6 + x^3/24 + x^4/120`
    is used (truncation error :math:`|x|^5/720`); :math:`\epsilon` is :math:`10^{-3}`
    in float64 and :math:`5\cdot10^{-2}` in lower precision. Both branches stay
    finite (the unused one sees a safe argument), so gradients are finite at the
    removable point.
    """
    import torch

    eps = (EXPREL_TAYLOR_CUTOFF_FLOAT64 if x.dtype == torch.float64
           else EXPREL_TAYLOR_CUTOFF_FLOAT32)
    small = x.abs() < eps
    safe = torch.where(small, torch.ones_like(x), x)
    taylor = horner(x, EXPREL_TAYLOR_COEFFICIENTS)
    return torch.where(small, taylor, torch.expm1(safe) / safe)


def _torch_module():
    import torch

    return {"exp": torch.exp, "exprel": exprel_torch, "log": torch.log,
            "sqrt": torch.sqrt, "tanh": torch.tanh, "cosh": torch.cosh}


_NUMPY_MODULE = {"exp": np.exp, "exprel": exprel_numpy, "log": np.log,
                 "sqrt": np.sqrt, "tanh": np.tanh, "cosh": np.cosh}


def to_callable(expr: sympy.Expr, args: Iterable[str], backend: str) -> Callable:
    """Compile an expression to a Python function of ``args`` for ``'numpy'`` or ``'torch'``."""
    args = tuple(args)
    if backend == "numpy":
        modules = [_NUMPY_MODULE, "numpy"]
    elif backend == "torch":
        modules = [_torch_module()]
    else:
        raise ValueError(f"unknown expression backend {backend!r}; use 'numpy' or 'torch'")
    symbols = [sympy.Symbol(a, real=True) for a in args]
    return sympy.lambdify(symbols, expr, modules=modules, cse=True, docstring_limit=0)


def substitute_symbol_names(expr: sympy.Expr, names: Mapping[str, str]) -> sympy.Expr:
    """Rename symbols (for printers that need, e.g., ``V`` written as ``(V/mV)``)."""
    return expr.xreplace({sympy.Symbol(old, real=True): sympy.Symbol(new, real=True)
                          for old, new in names.items()})


