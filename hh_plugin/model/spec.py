r"""`HHSpec`: the immutable, validated specification every backend is built from.

Units are the plugin's (and the reference model's): V in mV, g in mS, C in uF,
I in uA, t in ms. Brian2 quantities are accepted and converted; plain numbers are
taken to be in those units. A parameter may be a scalar or a 1-D array with one
value per neuron (a heterogeneous population); all arrays of one specification
have the same length.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional

import numpy as np

from .definition import ModelDefinition, get_model, known_models, register_model
from .hodgkin_huxley import HODGKIN_HUXLEY
from .integrators import DEFAULT_METHOD, check_method
from .quantities import area_um2, convert

RESET_MODES = ("soft", "hard")


def model_from_definition(definition: Mapping[str, Any], register: bool = False
                          ) -> ModelDefinition:
    """The model a (possibly untrusted) definition describes: the registered model of that
    name when the definition equals it, else the new model, used as it is and registered
    only when ``register=True`` (reading a file never changes the process's registry, so
    a later :func:`~hh_plugin.model.register_model` of that name still works). A
    definition that differs from a registered model of the same name is refused (except
    for the legacy ``'nonzero'`` constraint on the threshold, see
    :func:`_legacy_threshold_constraint`)."""
    model = ModelDefinition.from_dict(definition)
    if model.name in known_models():
        existing = get_model(model.name)
        if existing != model and not _legacy_threshold_constraint(existing, model):
            raise ValueError(f"the definition of model {model.name!r} differs from the "
                             f"registered model of that name")
        return existing
    return register_model(model) if register else model


def _legacy_threshold_constraint(registered: ModelDefinition, carried: ModelDefinition) -> bool:
    """Whether ``carried`` equals ``registered`` but for a ``'nonzero'`` constraint on the
    threshold parameter: definitions written before the surrogate had its own scale
    (``V_scale``) declared every shipped threshold ``nonzero``; such files still load."""
    th = carried.threshold
    if th != registered.threshold or carried.parameter(th).constraint != "nonzero":
        return False
    fixed = tuple(dataclasses.replace(p, constraint=registered.parameter(th).constraint)
                  if p.name == th else p for p in carried.parameters)
    return dataclasses.replace(carried, parameters=fixed) == registered


_OPTION_NAMES = ("spk_reset", "alpha", "width", "V_reset", "V_scale", "method", "area")
#: The surrogate's scale (mV) where the threshold is 0 mV and no ``V_scale`` is given:
#: :math:`x = (V - V_{th})/1\,\mathrm{mV}`, the surrogate on the voltage in mV.
ZERO_THRESHOLD_SCALE = 1.0


def brian2_unit(unit: str):
    """The Brian2 unit of one of the plugin's unit names (``'mV'``, ``'mS'``, ``'uF'``, ...)."""
    import brian2

    return {"mV": brian2.mV, "mS": brian2.msiemens, "uF": brian2.ufarad,
            "uA": brian2.uA, "ms": brian2.ms, "1/ms": 1 / brian2.ms, "1": brian2.Unit(1),
            "um2": brian2.umetre ** 2}[unit]


def to_plain(value: Any, unit: str, name: str) -> Any:
    """Convert ``value`` (number, sequence, array or Brian2 quantity) to float(s) in ``unit``.

    Raises ``TypeError`` for a quantity of the wrong dimension, naming the parameter.
    """
    if hasattr(value, "dim") and hasattr(value, "has_same_dimensions"):  # a Brian2 Quantity
        target = brian2_unit(unit)
        if not value.has_same_dimensions(target):
            raise TypeError(f"{name}: expected a quantity in {unit}, got {value!r} "
                            f"(wrong physical dimension)")
        value = np.asarray(value / target, dtype=np.float64)
    elif hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().double().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number or array in {unit}, got {value!r}") from None
    if array.ndim == 0:
        return float(array)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a scalar or a 1-D per-neuron array, "
                         f"got shape {array.shape}")
    array = array.copy()
    array.setflags(write=False)
    return array


def _check_values(name: str, value, unit: str, constraint: Optional[str]) -> None:
    arr = np.asarray(value)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    checks = {"positive": (arr > 0, "> 0"), "nonnegative": (arr >= 0, ">= 0"),
              "nonzero": (arr != 0, "!= 0")}
    if constraint in checks:
        ok, text = checks[constraint]
        if not np.all(ok):
            bad = arr if arr.ndim == 0 else arr[~ok][0]
            raise ValueError(f"{name} must be {text} (got {float(bad)} {unit})")


class HHSpec:
    r"""Specification of a Hodgkin-Huxley population (the reference model by default).

    Parameters (keyword only; defaults from the model definition, for the reference model
    ``ENa=50, gNa=120, EK=-77, gK=36, EL=-54.387, gL=0.03, V_th=20`` mV/mS, ``C=1`` uF):
    each a float, a 1-D per-neuron array, a Brian2 quantity, or a constant Brian2 unit
    expression (``'35*msiemens'``). Conductances and the capacitance may be given per
    area, as the literature does (``gNa=35*msiemens/cm**2``, ``C=1*uF/cm**2``), and are
    converted with the patch area (:mod:`hh_plugin.model.quantities`).

    Options:
        spk_reset: ``'soft'`` (default) or ``'hard'``; matters only when ``V_reset`` is set.
        alpha, width: the ReLU surrogate :math:`\partial z/\partial x \approx
            \alpha \max(0, \text{width} - |x|)` with :math:`x = (V - V_{th})/V_{scale}`
            (dimensionless).
        V_scale: the surrogate's scale :math:`V_{scale}` in mV, a positive scalar, or
            ``None`` (default): :math:`|V_{th}|` where :math:`V_{th} \ne 0` (the reference
            model, which divides by its threshold) and :data:`ZERO_THRESHOLD_SCALE` = 1 mV
            where :math:`V_{th} = 0` (then :math:`x` is :math:`V - V_{th}` in mV). It shapes
            gradients only: spikes and trajectories do not depend on it. Any threshold,
            0 mV included, is valid.
        V_reset: ``None`` (default, the reference model: a spike changes no state) or a
            potential in mV. Then the step that emits a spike also resets the membrane:
            soft subtracts :math:`z (V_{th} - V_{reset})`, hard sets :math:`V_{reset}`.
        model: the :class:`~hh_plugin.model.definition.ModelDefinition` (default
            :data:`~hh_plugin.model.hodgkin_huxley.HODGKIN_HUXLEY`).
        method: the integration method, a plain string, one of
            :data:`~hh_plugin.model.integrators.METHODS`: ``'exponential_euler'``
            (default, the reference model's, first order) or ``'rk4'`` (classical
            fourth-order Runge-Kutta, every stage re-evaluating rates and instantaneous
            gates; :mod:`hh_plugin.model.integrators`). Every backend integrates with it
            and refuses a ``dt`` above ``model.max_step(method)``.
        area: the membrane patch that per-area quantities are converted with (a Brian2
            area such as ``1*cm**2``, or a number of um²); ``None`` (default): the
            model's declared ``area`` (1 cm² for the reference model, 20,000 um² for
            Traub & Miles). ``spec.area`` is the one in use.

    Example:
        >>> spec = HHSpec(gL=0.3, V_reset=-70.0)
        >>> spec.gL, spec.spk_reset
        (0.3, 'soft')
    """

    __slots__ = ("model", "_values", "spk_reset", "alpha", "width", "V_reset", "V_scale",
                 "size", "method", "_area")

    def __init__(self, *, model: ModelDefinition = HODGKIN_HUXLEY, spk_reset: str = "soft",
                 alpha: float = 0.3, width: float = 1.0, V_reset=None, V_scale=None,
                 method: str = DEFAULT_METHOD, area=None, **parameters):
        if not isinstance(model, ModelDefinition):
            raise TypeError(f"model must be a ModelDefinition, got {type(model).__name__}")
        unknown = set(parameters) - set(model.parameter_names)
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)} for model {model.name!r}; "
                            f"known: {list(model.parameter_names)} and options {list(_OPTION_NAMES)}")
        check_method(method)
        if spk_reset not in RESET_MODES:
            raise ValueError(f"spk_reset must be one of {RESET_MODES}, got {spk_reset!r}")
        area = area_um2(area)
        patch = model.area if area is None else area
        values: Dict[str, Any] = {}
        for p in model.parameters:
            value = to_plain(convert(parameters.get(p.name, p.default), p.unit, p.name, patch),
                             p.unit, p.name)
            _check_values(p.name, value, p.unit, p.constraint)
            values[p.name] = value
        alpha = to_plain(alpha, "1", "alpha")
        width = to_plain(width, "1", "width")
        for name, v in (("alpha", alpha), ("width", width)):
            if np.ndim(v) != 0:
                raise ValueError(f"{name} must be a scalar")
        _check_values("alpha", alpha, "", "nonnegative")
        _check_values("width", width, "", "positive")
        if V_reset is not None:
            V_reset = to_plain(V_reset, "mV", "V_reset")
            _check_values("V_reset", V_reset, "mV", None)
        if V_scale is not None:
            V_scale = to_plain(V_scale, "mV", "V_scale")
            if np.ndim(V_scale) != 0:
                raise ValueError("V_scale must be a scalar (mV), the surrogate's scale for "
                                 "every neuron")
            _check_values("V_scale", V_scale, "mV", "positive")
        sizes = {len(v) for v in list(values.values()) + [V_reset] if isinstance(v, np.ndarray)}
        if len(sizes) > 1:
            raise ValueError(f"per-neuron parameter arrays have different lengths {sorted(sizes)}")
        set_ = object.__setattr__
        set_(self, "model", model)
        set_(self, "_values", values)
        set_(self, "spk_reset", spk_reset)
        set_(self, "alpha", alpha)
        set_(self, "width", width)
        set_(self, "V_reset", V_reset)
        set_(self, "V_scale", V_scale)
        set_(self, "size", sizes.pop() if sizes else None)
        set_(self, "method", method)
        set_(self, "_area", area)

    # ------------------------------------------------------------------ access
    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(f"HHSpec has no attribute {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError("HHSpec is immutable; use spec.replace(...)")

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._values))

    @property
    def parameters(self) -> Dict[str, Any]:
        """Model parameters by name (floats or read-only per-neuron arrays)."""
        return dict(self._values)

    @property
    def options(self) -> Dict[str, Any]:
        return {"spk_reset": self.spk_reset, "alpha": self.alpha, "width": self.width,
                "V_reset": self.V_reset, "V_scale": self.V_scale, "method": self.method,
                "area": self._area}

    @property
    def surrogate_scale(self):
        r"""The surrogate's scale in mV as the backends use it (float or per-neuron array):
        ``V_scale`` if set, else :math:`|V_{th}|`, and :data:`ZERO_THRESHOLD_SCALE` where
        :math:`V_{th} = 0`."""
        if self.V_scale is not None:
            return self.V_scale
        magnitude = np.abs(self._values[self.model.threshold])
        scale = np.where(magnitude > 0, magnitude, ZERO_THRESHOLD_SCALE)
        return float(scale) if scale.ndim == 0 else scale

    @property
    def area(self) -> Optional[float]:
        """The patch area (um²) per-area quantities are converted with: the one given to
        this specification, else the model's (``None``: neither declares one)."""
        return self.model.area if self._area is None else self._area

    @property
    def units(self) -> Dict[str, str]:
        """Unit of every parameter and of ``V_reset``."""
        return {**self.model.units, "V_reset": "mV"}

    @property
    def is_heterogeneous(self) -> bool:
        return self.size is not None

    def replace(self, **changes) -> "HHSpec":
        """A copy with some parameters or options changed (validated again)."""
        kwargs = {**self._values, **self.options, "model": self.model}
        kwargs.update(changes)
        return HHSpec(**kwargs)

    def check_size(self, n: int) -> None:
        """Raise if per-neuron arrays do not match a population of ``n`` neurons."""
        if self.size is not None and self.size != n:
            raise ValueError(f"the specification has per-neuron parameters for {self.size} "
                             f"neurons, but the population has {n}")

    # ------------------------------------------------------------ conversion
    def to_dict(self, include_definition: bool = False) -> Dict[str, Any]:
        """A JSON-compatible, lossless description (arrays become lists of floats).

        With ``include_definition`` the model's whole definition travels along
        (:meth:`ModelDefinition.to_dict`), so that :meth:`from_dict` works where the model
        was never imported.
        """
        def plain(v):
            return v.tolist() if isinstance(v, np.ndarray) else v

        out = {"model": self.model.name,
               "parameters": {k: plain(v) for k, v in self._values.items()},
               "units": self.units,
               "spk_reset": self.spk_reset, "alpha": self.alpha, "width": self.width,
               "V_reset": plain(self.V_reset)}
        if self.V_scale is not None:  # written only when set: older readers read the rest
            out["V_scale"] = self.V_scale
            out["units"] = {**out["units"], "V_scale": "mV"}
        if self.method != DEFAULT_METHOD:  # written only when not the default, as V_scale
            out["method"] = self.method
        if self._area is not None:  # likewise: only an area given to this specification
            out["area"] = self._area
            out["units"] = {**out["units"], "area": "um2"}
        if include_definition:
            out["definition"] = self.model.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HHSpec":
        """Inverse of :meth:`to_dict`. Refuses unknown keys and units other than the model's.

        A ``'definition'`` entry is rebuilt and validated (its expressions are checked and
        parsed, never evaluated); it must equal the registered model of that name if there
        is one, and is otherwise used for this specification without being registered.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a mapping, got {type(data).__name__}")
        allowed = {"model", "parameters", "units", "definition", *_OPTION_NAMES}
        extra = set(data) - allowed
        if extra:
            raise ValueError(f"unknown key(s) in specification: {sorted(extra)}")
        name = data.get("model", HODGKIN_HUXLEY.name)
        if "definition" in data:
            definition = data["definition"]
            carried = definition.get("name") if isinstance(definition, Mapping) else None
            if carried != name:
                raise ValueError(f"the specification names model {name!r} but carries the "
                                 f"definition of {carried!r}")
            model = model_from_definition(definition)
        else:
            model = get_model(name)
        units = data.get("units")
        if units is not None:
            if not isinstance(units, Mapping):
                raise ValueError("units must be a mapping")
            expected = {**model.units, "V_reset": "mV", "V_scale": "mV", "area": "um2"}
            for key, unit in units.items():
                if expected.get(key) != unit:
                    raise ValueError(f"unit of {key!r} is {unit!r}; this model expects "
                                     f"{expected.get(key)!r}")
        parameters = data.get("parameters", {})
        if not isinstance(parameters, Mapping):
            raise ValueError("parameters must be a mapping")
        options = {k: data[k] for k in _OPTION_NAMES if k in data}
        return cls(model=model, **dict(parameters), **options)

    # --------------------------------------------------------------- dunder
    def __eq__(self, other):
        if not isinstance(other, HHSpec):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None

    def __repr__(self):
        def fmt(v):
            if isinstance(v, np.ndarray):
                return f"array[{len(v)}]"
            return repr(v)

        parts = [f"{k}={fmt(v)}" for k, v in self._values.items()]
        parts += [f"{k}={fmt(v)}" for k, v in self.options.items()
                  if not (k == "V_scale" and v is None)
                  and not (k == "method" and v == DEFAULT_METHOD)
                  and not (k == "area" and v is None)]
        if self.model is not HODGKIN_HUXLEY:
            parts.append(f"model={self.model.name!r}")
        return f"HHSpec({', '.join(parts)})"

