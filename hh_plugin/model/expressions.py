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
from typing import Any, Callable, Iterable, Mapping, Optional

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
#: Largest magnitude of a number written in an expression, and of every part of an
#: expression made of numbers only (``10**20`` and ``1e10*1e10`` are refused alike).
MAX_CONSTANT = 1e15
#: Largest |exponent| of a power whose exponent is made of numbers only; the exponents of
#: nested powers multiply (``(V**8)**8`` has 64, ``(V**64)**2`` is refused).
MAX_EXPONENT = 64
#: Former name of :data:`MAX_EXPONENT`.
MAX_NUMERIC_EXPONENT = MAX_EXPONENT

_MATH = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "tanh": math.tanh,
         "cosh": math.cosh, "exprel": lambda x: 1.0 if x == 0 else math.expm1(x) / x}


def _fail(text: str, reason: str):
    raise ValueError(f"model expression {text!r}: {reason}")


def _bounded(value: float, text: str, what: str) -> float:
    if not math.isfinite(value) or abs(value) > MAX_CONSTANT:
        _fail(text, f"{what} is {value:g}, beyond the bound of {MAX_CONSTANT:g} on numbers")
    return value


def _constant_op(op, a: float, b: float, text: str) -> float:
    """``a op b`` in plain floating point (both operands already bounded)."""
    try:
        if isinstance(op, ast.Add):
            value = a + b
        elif isinstance(op, ast.Sub):
            value = a - b
        elif isinstance(op, ast.Mult):
            value = a * b
        elif isinstance(op, ast.Div):
            if b == 0:
                _fail(text, "divides by zero")
            value = a / b
        else:
            if a == 0 and b < 0:
                _fail(text, f"0**{b:g} divides by zero")
            value = math.pow(a, b)
    except ValueError as exc:
        if str(exc).startswith("model expression"):
            raise
        _fail(text, f"({a:g})**({b:g}) is not a real number")
    except OverflowError:
        _fail(text, f"({a:g})**({b:g}) overflows")
    return _bounded(value, text, "a part made of numbers only")


def _check(node: ast.AST, text: str, names, depth: int, power: float) -> Optional[float]:
    """Check one parsed node without sympy: allowed node types, names and calls; numbers
    and every part made of numbers only within :data:`MAX_CONSTANT` (evaluated in plain
    floating point, real and finite); constant exponents within :data:`MAX_EXPONENT`,
    multiplied through nested powers (``power``). Returns the node's value when it is made
    of numbers only, else ``None``."""
    if depth > MAX_EXPRESSION_DEPTH:
        raise ValueError(f"model expression {text!r} is nested too deeply")
    check = lambda n, p=power: _check(n, text, names, depth + 1, p)  # noqa: E731
    if isinstance(node, ast.Expression):
        return check(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        if abs(node.value) > MAX_CONSTANT:  # exact for int, no float conversion first
            _fail(text, f"number {str(node.value)[:40]} is beyond the bound of "
                        f"{MAX_CONSTANT:g} on numbers")
        if not math.isfinite(node.value):
            _fail(text, "number is not finite")
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id in names:
            return None
        if node.id in ALLOWED_FUNCTIONS:
            _fail(text, f"{node.id!r} is a function; call it")
        raise ValueError(f"model expression {text!r} uses unknown name(s) [{node.id!r}]; "
                         f"allowed: {sorted(names)}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = check(node.operand)
        return None if value is None else (-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, tuple(_OPERATORS)):
        if isinstance(node.op, ast.Pow):
            exponent = check(node.right, 1.0)
            if exponent is not None and abs(exponent) * power > MAX_EXPONENT:
                enclosing = f" times {power:g} of the enclosing powers" if power > 1 else ""
                _fail(text, f"exponent {exponent:g}{enclosing} is beyond the bound of "
                            f"{MAX_EXPONENT} on |exponent|")
            base = check(node.left, power * (1.0 if exponent is None else max(1.0, abs(exponent))))
            right = exponent
        else:
            base, right = check(node.left), check(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ValueError(f"model expression {text!r} divides by zero")
        if base is None or right is None:
            return None
        return _constant_op(node.op, base, right, text)
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in ALLOWED_FUNCTIONS:
            raise ValueError(f"model expression {text!r} uses unsupported function "
                             f"{name or ast.unparse(node.func)!r}; allowed: "
                             f"{sorted(ALLOWED_FUNCTIONS)}")
        if node.keywords or len(node.args) != 1:
            _fail(text, f"{name}() takes one argument")
        value = check(node.args[0])
        if value is None:
            return None
        try:
            result = _MATH[name](value)
        except ValueError:
            _fail(text, f"{name}({value:g}) is not a real number")
        except OverflowError:
            _fail(text, f"{name}({value:g}) overflows")
        return _bounded(result, text, f"{name}({value:g})")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        _fail(text, "'^' is not a power; write '**'")
    _fail(text, f"{type(node).__name__} is not allowed (numbers, names, + - * / **, and "
                f"calls of {sorted(ALLOWED_FUNCTIONS)})")


def _build(node: ast.AST, text: str, symbols: Mapping[str, sympy.Symbol], depth: int):
    """The sympy expression of one node that :func:`_check` accepted."""
    build = lambda n: _build(n, text, symbols, depth + 1)  # noqa: E731
    if isinstance(node, ast.Expression):
        return build(node.body)
    if isinstance(node, ast.Constant):
        if type(node.value) is int:
            return sympy.Integer(node.value)
        return sympy.Float(node.value)
    if isinstance(node, ast.Name):
        return symbols[node.id]
    if isinstance(node, ast.UnaryOp):
        value = build(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        return _OPERATORS[type(node.op)](build(node.left), build(node.right))
    return ALLOWED_FUNCTIONS[node.func.id](build(node.args[0]))


_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
              ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
              ast.Pow: lambda a, b: a ** b}


def check(text: str, allowed_symbols: Iterable[str]) -> ast.Expression:
    """Check one model expression without any symbolic computation; return its syntax tree.

    Refused with a ``ValueError`` that names the expression and the reason: text that is
    not a string, longer than :data:`MAX_EXPRESSION_LENGTH` or holding a character
    outside ASCII (Python would fold ``'Ｖ'`` or ``'𝐕'`` into ``V``, NFKC); syntax other
    than numbers, the allowed names, ``+ - * / **`` and calls of :data:`ALLOWED_FUNCTIONS`;
    nesting beyond :data:`MAX_EXPRESSION_DEPTH`; a number, or a part made of numbers only,
    beyond :data:`MAX_CONSTANT` in magnitude, not real or dividing by zero; a constant
    exponent beyond :data:`MAX_EXPONENT` (nested exponents multiplied). Nothing is
    evaluated but numbers, in plain floating point.
    """
    if not isinstance(text, str):
        raise TypeError(f"model expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ValueError(f"model expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    if not text.isascii():
        char = next(c for c in text if not c.isascii())
        _fail(text, f"character {char!r} (U+{ord(char):04X}) is not ASCII; names and "
                    f"operators are ASCII only (Python would read some such characters "
                    f"as other names)")
    names = set(allowed_symbols)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot parse model expression {text!r}: {exc}") from None
    try:
        _check(tree, text, names, 0, 1.0)
    except RecursionError:
        raise ValueError(f"model expression {text!r} is nested too deeply") from None
    return tree


def parse(text: str, allowed_symbols: Iterable[str]) -> sympy.Expr:
    """Parse one model expression, refusing names that are neither allowed symbols nor functions.

    The text is first checked without sympy (:func:`check`: ASCII, syntax, names, bounded
    numbers and exponents), then only numbers, the allowed names, the operators
    ``+ - * / **`` and calls of :data:`ALLOWED_FUNCTIONS` are turned into sympy objects;
    nothing is evaluated (model definitions travel in exchange files, so an expression
    is untrusted input). An expression that sympy's automatic evaluation makes infinite,
    undefined or complex (``(V-V)**-1``, ``log(0*V)``) or whose numbers overflow float64
    is refused. The result equals ``sympy.sympify(text)``.
    """
    allowed_symbols = tuple(allowed_symbols)
    tree = check(text, allowed_symbols)
    symbols = {name: sympy.Symbol(name, real=True) for name in allowed_symbols}
    try:
        expr = _build(tree, text, symbols, 0)
    except RecursionError:
        raise ValueError(f"model expression {text!r} is nested too deeply") from None
    if not isinstance(expr, sympy.Expr):
        raise ValueError(f"model expression {text!r} is not a number-valued expression")
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        _fail(text, "is infinite or undefined (a division by zero or the log of 0)")
    if expr.has(sympy.I):
        _fail(text, "is not real (the square root or log of a negative number)")
    for number in expr.atoms(sympy.Number):
        try:
            value = float(number)
        except (OverflowError, TypeError):
            value = math.inf
        if not math.isfinite(value):
            _fail(text, "a number in it overflows float64")
    return expr


_NUMPY_OPERATORS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
                    ast.Div: np.divide, ast.Pow: np.power}


def evaluate(text: str, values: Mapping[str, Any]) -> np.ndarray:
    """The expression's value in plain float64 numpy arithmetic, without sympy.

    ``values`` maps every name the expression may use to a number or array (broadcast
    together). The text is checked first (:func:`check`). NaN and infinities are
    returned, not raised (numpy's floating-point warnings are silenced): the caller
    decides what is acceptable.
    """
    tree = check(text, values)
    functions = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh,
                 "cosh": np.cosh, "exprel": exprel_numpy}

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return np.float64(node.value)
        if isinstance(node, ast.Name):
            return np.asarray(values[node.id], dtype=np.float64)
        if isinstance(node, ast.UnaryOp):
            value = ev(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            return _NUMPY_OPERATORS[type(node.op)](ev(node.left), ev(node.right))
        return functions[node.func.id](ev(node.args[0]))

    with np.errstate(all="ignore"):
        return np.asarray(ev(tree), dtype=np.float64)


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


