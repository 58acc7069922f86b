r"""Values as the literature writes them: per-area densities and unit expressions.

**Per-area quantities.** Models are written for a membrane patch: conductances in mS,
capacitances in uF and currents in uA of the whole patch (the plugin's units). Papers
give densities instead (:math:`g_{Na}` = 35 mS/cm², :math:`C` = 1 uF/cm²,
:math:`I` = 1 uA/cm²). A Brian2 quantity of such a density is converted with the patch
area :math:`A` that the model declares (``ModelDefinition.area``, in um²; overridable
per specification with ``HHSpec(area=...)``):

.. math::
    g = \bar g \, A, \qquad C = c_m A, \qquad I = i A,

e.g. 35 mS/cm² on a 1 cm² patch is 35 mS, and 1 uA/cm² on Traub & Miles's 20,000 um²
(2e-4 cm²) patch is 2e-4 uA = 0.2 nA. Only conductances (mS), capacitances (uF) and
currents (uA) have densities; plain numbers are never densities (they are in the plugin's
unit, as before).

**Unit expressions.** A string such as ``'35*msiemens'`` or ``'35*msiemens/cm**2'`` is
read as Brian2 would read it for a group, but evaluated here, once, without ``eval``:
numbers, Brian2's unit names, ``+ - * / **`` and parentheses only. An expression that
depends on the neuron (``rand()``, ``randn()``, ``i``, other variables) is Brian2 code
for a group, not a value that every backend can use, and is refused with the reason.
"""

from __future__ import annotations

import ast
import operator
from typing import Any, Optional

import numpy as np

#: Plugin units that have a per-area form (a density).
DENSITY_UNITS = ("mS", "uF", "uA")
#: um² per cm² (the literature's patch of 1 cm²).
UM2_PER_CM2 = 1e8

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.Pow: operator.pow}
_MAX_LENGTH = 200


def _is_quantity(value) -> bool:
    return hasattr(value, "dim") and hasattr(value, "has_same_dimensions")


def area_um2(value: Any, name: str = "area") -> Optional[float]:
    """A patch area as a float in um² (``None`` stays ``None``): a Brian2 area quantity
    (``1*cm**2``, ``20000*um**2``), a unit expression string, or a plain number of um²."""
    if value is None:
        return None
    if isinstance(value, str):
        value = unit_expression(value, name)
    if _is_quantity(value):
        import brian2

        if not value.has_same_dimensions(brian2.metre ** 2):
            raise TypeError(f"{name}: expected an area (e.g. 1*cm**2 or 20000*um**2), got "
                            f"{value!r}")
        value = float(value / brian2.umetre ** 2)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected an area in um2 or a Brian2 area quantity, "
                            f"got {value!r}") from None
    value = float(value)
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"{name} must be a positive finite area (um2), got {value!r}")
    return value


def unit_expression(text: str, name: str):
    """The Brian2 quantity (or number) of a constant unit expression such as
    ``'35*msiemens/cm**2'``; anything else is refused, naming the reason."""
    try:
        from brian2.core.namespace import DEFAULT_UNITS
    except ImportError:  # pragma: no cover - Brian2 is a dependency of the Brian2 extra
        raise TypeError(f"{name}: a string value ({text!r}) is a Brian2 unit expression, "
                        f"which needs Brian2; pass a number or a quantity") from None
    if len(text) > _MAX_LENGTH:
        raise ValueError(f"{name}: the expression is longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"{name}: {text!r} is not a Brian2 expression") from None
    units = DEFAULT_UNITS  # the unit names a group's expressions know
    per_neuron = "depends on the neuron or on the run"

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in units:
                return units[node.id]
            raise ValueError(f"{name}: {text!r} uses {node.id!r}, which is not a unit: "
                             f"an expression that {per_neuron} is Brian2 code for a group")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and (_is_quantity(right) or abs(right) > 10):
                raise ValueError(f"{name}: {text!r}: exponents must be small numbers")
            return _OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.Call):
            called = getattr(node.func, "id", "?")
            if called in ("rand", "randn"):
                raise ValueError(f"{name}: {text!r} calls {called}(), an expression that "
                                 f"{per_neuron} (Brian2 draws it for each neuron of a "
                                 f"group): give a per-neuron array, or assign the "
                                 f"expression to the group's per-neuron parameter")
            raise ValueError(f"{name}: {text!r} calls {called}(); a value is a constant "
                             f"expression of numbers and units")
        raise ValueError(f"{name}: {text!r} is not a constant expression of numbers and "
                         f"units")

    return value(tree)


def convert(value: Any, unit: str, name: str, area: Optional[float]) -> Any:
    """``value`` with strings evaluated (:func:`unit_expression`) and a density of a
    ``unit`` in :data:`DENSITY_UNITS` multiplied by the patch ``area`` (um²), returned as
    plain number(s) in ``unit``; other values are returned as they are (for
    :func:`~hh_plugin.model.spec.to_plain`)."""
    if isinstance(value, str):
        value = unit_expression(value, name)
    if not _is_quantity(value) or unit not in DENSITY_UNITS:
        return value
    import brian2

    from .spec import brian2_unit

    target = brian2_unit(unit)
    if value.has_same_dimensions(target) or not value.has_same_dimensions(
            target / brian2.metre ** 2):
        return value  # the whole patch, or a wrong dimension that to_plain names
    if area is None:
        raise ValueError(f"{name}: {value!r} is a density (per area), but the model declares "
                         f"no patch area to convert it with: pass HHSpec(area=...), e.g. "
                         f"area=1*cm**2, or a value in {unit}")
    # in the plugin's unit per cm2 (rounded to 15 digits: Brian2's unit scaling leaves
    # 1*uF/cm**2 at 0.9999999999999998 uF/cm2), times the area in cm2: 35 mS/cm2 is 35.0
    per_cm2 = np.asarray(value / (target / brian2.cm ** 2), dtype=np.float64)
    per_cm2 = np.vectorize(lambda x: float(f"{x:.15g}"), otypes=[np.float64])(per_cm2)
    scaled = per_cm2 * (area / UM2_PER_CM2)
    return scaled if scaled.ndim else float(scaled)


__all__ = ["DENSITY_UNITS", "UM2_PER_CM2", "area_um2", "convert", "unit_expression"]
