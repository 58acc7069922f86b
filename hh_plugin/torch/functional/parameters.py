r"""Norse-style NamedTuples for HH parameters and states, generated from a model definition.

``HHParameters`` holds the reference model's parameters as tensors (mV, mS, uF) plus the
spike and reset options; ``HHState`` holds :math:`V` (mV) and the gates :math:`m, h, n`.
Another model definition gets its own pair of types from :func:`parameters_type` and
:func:`state_type`; the step functions read the model from the parameters' type.
"""

from __future__ import annotations

import collections
from typing import Optional

import numpy as np
import torch

from ...model import HODGKIN_HUXLEY, HHSpec, ModelDefinition
from ...model.initial import DEFAULT, UNIFORM, default_gate_values, initial_voltage

_OPTIONS = ("spk_reset", "alpha", "width", "V_reset")
_CACHE: dict = {}


def _tensor(value, dtype=None, device=None):
    if isinstance(value, torch.Tensor):
        return value.to(dtype=dtype or value.dtype, device=device or value.device)
    return torch.as_tensor(np.array(value), dtype=dtype or torch.float64, device=device)


class _ParametersMixin:
    __slots__ = ()
    model: ModelDefinition

    @classmethod
    def from_spec(cls, spec: HHSpec, dtype: Optional[torch.dtype] = None,
                  device=None):
        """Tensors (float64 unless ``dtype``) from an :class:`~hh_plugin.HHSpec`."""
        if spec.model is not cls.model:
            raise ValueError(f"{cls.__name__} is for model {cls.model.name!r}, "
                             f"the specification is for {spec.model.name!r}")
        values = {k: _tensor(v, dtype, device) for k, v in spec.parameters.items()}
        V_reset = None if spec.V_reset is None else _tensor(spec.V_reset, dtype, device)
        return cls(**values, spk_reset=spec.spk_reset, alpha=_tensor(spec.alpha, dtype, device),
                   width=_tensor(spec.width, dtype, device), V_reset=V_reset)

    @property
    def size(self) -> Optional[int]:
        """Number of neurons of the per-neuron (1-D) parameters, ``None`` if all are scalars.
        (Consistent lengths are checked by :meth:`to_spec`, which :func:`as_parameters` runs.)"""
        for value in self:
            if isinstance(value, torch.Tensor) and value.ndim == 1:
                return int(value.shape[0])
        return None

    def to_spec(self) -> HHSpec:
        """The :class:`~hh_plugin.HHSpec` these parameters describe (validated)."""
        def plain(t):
            if t is None:
                return None
            array = torch.as_tensor(t).detach().cpu().double().numpy()
            return float(array) if array.ndim == 0 else array

        values = {k: plain(getattr(self, k)) for k in self.model.parameter_names}
        return HHSpec(model=self.model, spk_reset=self.spk_reset, alpha=plain(self.alpha),
                      width=plain(self.width), V_reset=plain(self.V_reset), **values)

    def to(self, dtype=None, device=None):
        """Tensors cast to ``dtype`` and moved to ``device`` (options kept)."""
        return type(self)(**{k: (v.to(dtype=dtype or v.dtype, device=device)
                                  if isinstance(v, torch.Tensor) and v.is_floating_point()
                                  else v)
                             for k, v in self._asdict().items()})


class _StateMixin:
    __slots__ = ()
    model: ModelDefinition

    def to(self, *args, **kwargs):
        """Every tensor moved/cast as by :meth:`torch.Tensor.to`."""
        return type(self)(*(t.to(*args, **kwargs) for t in self))

    def detach(self):
        return type(self)(*(t.detach() for t in self))


def parameters_type(model: ModelDefinition, name: Optional[str] = None):
    """The NamedTuple class of parameters for ``model`` (one class per model, cached)."""
    key = ("parameters", model.name)
    if key not in _CACHE:
        fields = list(model.parameter_names) + list(_OPTIONS)
        defaults = [torch.as_tensor(p.default, dtype=torch.float64) for p in model.parameters]
        defaults += ["soft", torch.as_tensor(0.3, dtype=torch.float64),
                     torch.as_tensor(1.0, dtype=torch.float64), None]
        base = collections.namedtuple((name or "Parameters") + "Base", fields, defaults=defaults)
        cls = type(name or f"{model.name.title().replace('_', '')}Parameters",
                   (_ParametersMixin, base), {"__slots__": (), "model": model})
        _CACHE[key] = cls
    return _CACHE[key]


def state_type(model: ModelDefinition, name: Optional[str] = None):
    """The NamedTuple class of states (``V`` then the gates) for ``model`` (cached)."""
    key = ("state", model.name)
    if key not in _CACHE:
        base = collections.namedtuple((name or "State") + "Base", model.state_names)
        cls = type(name or f"{model.name.title().replace('_', '')}State",
                   (_StateMixin, base), {"__slots__": (), "model": model})
        _CACHE[key] = cls
    return _CACHE[key]


HHParameters = parameters_type(HODGKIN_HUXLEY, "HHParameters")
HHParameters.__doc__ = r"""Parameters of the reference HH model as tensors.

Fields: ``ENa, gNa, EK, gK, EL, gL, V_th`` (mV, mS), ``C`` (uF), each a scalar or a
per-neuron tensor broadcastable against the input; ``spk_reset`` (``'soft'``/``'hard'``),
surrogate ``alpha`` and ``width``; ``V_reset`` (mV or ``None``: no reset, the reference).
Defaults are the reference model's. ``HHParameters.from_spec(spec)`` builds one from an
:class:`~hh_plugin.HHSpec`, ``p.to_spec()`` goes back.
"""

HHState = state_type(HODGKIN_HUXLEY, "HHState")
HHState.__doc__ = r"""State of an HH population: ``V`` (mV) and gates ``m, h, n`` (dimensionless)."""


def as_parameters(p):
    """Accept an :class:`HHSpec` or a parameters NamedTuple; return the NamedTuple."""
    if isinstance(p, HHSpec):
        return parameters_type(p.model).from_spec(p)
    if isinstance(p, _ParametersMixin):
        p.to_spec()  # validates values (NaN, C <= 0, V_th = 0, unknown reset mode...)
        return p
    raise TypeError(f"p must be an HHSpec or a parameters NamedTuple such as HHParameters, "
                    f"got {type(p).__name__}")


def initial_state(p, shape, V=DEFAULT, seed: Optional[int] = None,
                  dtype: torch.dtype = torch.float32, device=None, **gates):
    r"""Initial state of the given shape: ``V`` as in :func:`hh_plugin.model.initial_voltage`
    (a number, an array, ``'default'``: the model's distribution, or ``'uniform'``: its
    range); gates as given, else the model's default constants (with ``V='default'``),
    else at steady state at ``V`` (computed in ``dtype`` on ``device``).

    With a random ``V`` and ``seed=None`` the draw uses torch's global generator
    (``torch.manual_seed``); with a seed it uses numpy's ``default_rng(seed)``, the same
    draw as the Brian2 backend's, so both backends start identically.
    """
    model = type(p).model if isinstance(p, _ParametersMixin) else p.model
    shape = tuple(shape)
    distribution = model.initial_voltage
    if isinstance(V, str) and V == UNIFORM and seed is None:
        low, high = model.initial_voltage_range
        V0 = (torch.rand(shape, dtype=dtype) * (high - low) + low).to(device)
    elif isinstance(V, str) and V == DEFAULT and seed is None and distribution.kind != "constant":
        a, b = distribution.values
        draw = torch.rand(shape, dtype=dtype) * (b - a) + a if distribution.kind == "uniform" \
            else torch.randn(shape, dtype=dtype) * b + a
        V0 = draw.to(device)
    elif isinstance(V, torch.Tensor):
        V0 = torch.broadcast_to(V.to(dtype=dtype, device=device), shape).clone()
    else:
        V0 = torch.as_tensor(initial_voltage(model, shape, V, seed), dtype=dtype, device=device)
    if not torch.isfinite(V0).all():
        raise ValueError("initial voltage contains NaN or infinite values")
    given = {**default_gate_values(model, V), **{k: v for k, v in gates.items() if v is not None}}
    unknown = set(given) - set(model.gate_names)
    if unknown:
        raise ValueError(f"unknown gate(s) {sorted(unknown)}; model has {list(model.gate_names)}")
    compiled = model.compiled("torch")
    parameters = p if isinstance(p, _ParametersMixin) else parameters_type(model).from_spec(p)
    symbols = {k: (v.to(dtype=dtype, device=device) if isinstance(v, torch.Tensor) else v)
               for k, v in parameters._asdict().items() if k in model.parameter_names}
    symbols["V"] = V0
    values = [V0]
    for gate in model.gate_names:
        if gate in given:
            values.append(torch.broadcast_to(torch.as_tensor(given[gate], dtype=dtype,
                                                             device=device), shape).clone())
            continue
        inter = compiled.evaluate_intermediates(gate, symbols)
        x_inf = inter["x_inf"] if "x_inf" in inter else inter["alpha"] / (inter["alpha"]
                                                                          + inter["beta"])
        values.append(torch.broadcast_to(torch.as_tensor(x_inf, dtype=dtype, device=device),
                                         shape).clone())
    return state_type(model)(*values)
