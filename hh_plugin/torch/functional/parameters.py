r"""Norse-style NamedTuples for HH parameters and states, generated from a model definition.

``HHParameters`` holds the reference model's parameters as tensors (mV, mS, uF) plus the
spike and reset options; ``HHState`` holds :math:`V` (mV) and the gates :math:`m, h, n`.
Another model definition gets its own pair of types from :func:`parameters_type` and
:func:`state_type`; the step functions read the model from the parameters' type.
"""

from __future__ import annotations

import collections
import math
from typing import Optional

import numpy as np
import torch

from ...model import HODGKIN_HUXLEY, HHSpec, ModelDefinition
from ...model.definition import steady_state
from ...model.initial import DEFAULT, REST, UNIFORM, default_gate_values, initial_voltage
from ...model.rest import resting_state
from ...model.integrators import DEFAULT_METHOD

_OPTIONS = ("spk_reset", "alpha", "width", "V_reset", "V_scale", "method")
_CACHE: dict = {}


def _tensor(value, dtype=None, device=None):
    if isinstance(value, torch.Tensor):
        return value.to(dtype=dtype or value.dtype, device=device or value.device)
    return torch.as_tensor(np.array(value), dtype=dtype or torch.float64, device=device)


def _parse_to(args, kwargs):
    """``(device, dtype, non_blocking)`` read as :meth:`torch.Tensor.to` reads its arguments
    (a device, a dtype, both, or a tensor to match; or ``device=``/``dtype=`` keywords)."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None or k not in ("dtype", "device")}
    device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
    if dtype is not None and not dtype.is_floating_point:
        raise TypeError(f"cannot cast to {dtype}: HH parameters and states are real-valued "
                        f"(mV, mS, uF; gates in [0, 1]); use a floating-point dtype")
    return device, dtype, non_blocking


class _TensorTuple:
    """Norse's helpers for NamedTuples of tensors (its ``StateTuple``): ``to``, ``cpu``,
    ``cuda``, ``float``, ``double``, ``detach``, ``broadcast``. They act on the floating-point
    tensors (and nested tuples of the same kind); options such as ``spk_reset`` are kept.
    ``int()`` is refused: every field is a real number, truncation would be silent damage.
    """

    __slots__ = ()

    def _map(self, fn):
        def apply(value):
            if isinstance(value, _TensorTuple):
                return value._map(fn)
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                return fn(value)
            return value
        return type(self)(*(apply(v) for v in self))

    def to(self, *args, **kwargs):
        """Tensors moved/cast as by :meth:`torch.Tensor.to`: ``to(device)``, ``to(dtype)``,
        ``to(device, dtype)``, ``to(tensor)`` or ``to(dtype=..., device=...)``."""
        device, dtype, non_blocking = _parse_to(args, kwargs)
        return self._map(lambda t: t.to(device=device or t.device, dtype=dtype or t.dtype,
                                        non_blocking=non_blocking))

    def cpu(self):
        return self.to(device="cpu")

    def cuda(self, device=None):
        return self.to(device=torch.device("cuda") if device is None else
                       torch.device("cuda", device) if isinstance(device, int) else device)

    def float(self):
        return self.to(dtype=torch.float32)

    def double(self):
        return self.to(dtype=torch.float64)

    def int(self):
        raise TypeError(f"{type(self).__name__}.int(): HH parameters and states are "
                        f"real-valued (mV, mS, uF; gates in [0, 1]); an integer cast would "
                        f"truncate them (gL = 0.03 mS to 0). Use .float() or .double()")

    def detach(self):
        return self._map(lambda t: t.detach())

    def broadcast(self, template: torch.Tensor):
        """Every tensor broadcast to ``template``'s shape, on its device (in its dtype when
        ``template`` is floating-point); a scalar is repeated, a per-neuron tensor must
        broadcast against the last dimension."""
        dtype = template.dtype if template.is_floating_point() else None
        shape = tuple(template.shape)

        def expand(t):
            t = t.to(device=template.device, dtype=dtype or t.dtype)
            try:
                return torch.broadcast_to(t, shape)
            except RuntimeError:
                raise ValueError(f"cannot broadcast a tensor of shape {tuple(t.shape)} to the "
                                 f"template's shape {shape}") from None
        return self._map(expand)


class _ParametersMixin(_TensorTuple):
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
        V_scale = None if spec.V_scale is None else _tensor(spec.V_scale, dtype, device)
        return cls(**values, spk_reset=spec.spk_reset, alpha=_tensor(spec.alpha, dtype, device),
                   width=_tensor(spec.width, dtype, device), V_reset=V_reset, V_scale=V_scale,
                   method=spec.method)

    @property
    def v_th(self):
        """The spike threshold (mV) under Norse's name (``p.v_th``): the model's threshold
        parameter (``V_th`` for the shipped models)."""
        return getattr(self, self.model.threshold)

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
                      width=plain(self.width), V_reset=plain(self.V_reset),
                      V_scale=plain(self.V_scale), method=self.method, **values)


class _StateMixin(_TensorTuple):
    __slots__ = ()
    model: ModelDefinition

    @property
    def v(self) -> torch.Tensor:
        """``V`` (mV) under the name every Norse state gives the membrane potential, so
        that Norse's generic code (``state.v``) reads it."""
        return self.V


def _cached_type(model: ModelDefinition, kind: str, make):
    """The class of ``kind`` for ``model``, made once per model (equal models share it).

    Kept in the model's own cache under a string key, so that code traced by
    :func:`torch.compile` finds it without hashing the model (a dataclass of dicts, which
    Dynamo cannot hash): modules create their types when they are built."""
    cache = model._cache
    name = f"torch_{kind}_type"
    if name not in cache:
        key = (kind, model)
        if key not in _CACHE:
            _CACHE[key] = make()
        cache[name] = _CACHE[key]
    return cache[name]


def parameters_type(model: ModelDefinition, name: Optional[str] = None):
    """The NamedTuple class of parameters for ``model`` (one class per model, cached)."""
    def make():
        fields = list(model.parameter_names) + list(_OPTIONS)
        defaults = [torch.as_tensor(p.default, dtype=torch.float64) for p in model.parameters]
        defaults += ["soft", torch.as_tensor(0.3, dtype=torch.float64),
                     torch.as_tensor(1.0, dtype=torch.float64), None, None, DEFAULT_METHOD]
        base = collections.namedtuple((name or "Parameters") + "Base", fields, defaults=defaults)
        return type(name or f"{model.name.title().replace('_', '')}Parameters",
                    (_ParametersMixin, base), {"__slots__": (), "model": model})
    return _cached_type(model, "parameters", make)


def state_type(model: ModelDefinition, name: Optional[str] = None):
    """The NamedTuple class of states (``V`` then the gates) for ``model`` (cached)."""
    def make():
        base = collections.namedtuple((name or "State") + "Base", model.state_names)
        return type(name or f"{model.name.title().replace('_', '')}State",
                    (_StateMixin, base), {"__slots__": (), "model": model})
    return _cached_type(model, "state", make)


class _RecurrentStateMixin(_StateMixin):
    r"""A recurrent layer's state, flat as Norse's (``LIFState(z, v, i)``): the neuron
    state's fields (``V`` mV, the gates) and ``z``, the last step's spikes (0/1), so that
    code looping over the state's fields (``for x in state``, ``state._asdict()``,
    Norse's ``_merge_states``) meets tensors only.

    Compatibility with the nested ``(neuron, z)`` form of earlier versions: ``state.neuron``
    is the neuron state (a new tuple of the same tensors; fields only, no copy) and
    ``Type(neuron_state, z)`` with exactly those two arguments builds the flat state,
    as does :meth:`from_neuron`."""

    __slots__ = ()

    def __new__(cls, *args, **kwargs):
        if len(args) == 2 and not kwargs and isinstance(args[0], _StateMixin):
            return cls.from_neuron(*args)
        return super().__new__(cls, *args, **kwargs)

    @classmethod
    def from_neuron(cls, neuron, z):
        """The flat state of the neuron state ``neuron`` (``V`` and the gates of this
        type's model) and the spikes ``z``."""
        if (not isinstance(neuron, _StateMixin) or type(neuron).model is not cls.model
                or tuple(neuron._fields) != tuple(cls.model.state_names)):
            raise TypeError(f"{cls.__name__}.from_neuron: expected a state of model "
                            f"{cls.model.name!r} ({', '.join(cls.model.state_names)}), got "
                            f"{type(neuron).__name__}")
        return tuple.__new__(cls, (*neuron, z))

    @property
    def neuron(self):
        """The neuron state (``V`` and the gates) without ``z``: ``state_type(model)``
        holding the same tensors."""
        return state_type(self.model)(*self[:-1])


def recurrent_state_type(model: ModelDefinition, name: Optional[str] = None):
    """The flat NamedTuple class of recurrent states for ``model``: ``V``, the gates, then
    ``z`` (cached; :class:`_RecurrentStateMixin`)."""
    if "z" in model.state_names:
        raise ValueError(f"model {model.name!r} has a state variable named 'z', the name of "
                         f"the recurrent state's spikes")

    def make():
        base = collections.namedtuple((name or "RecurrentState") + "Base",
                                      list(model.state_names) + ["z"])
        return type(name or f"{model.name.title().replace('_', '')}RecurrentState",
                    (_RecurrentStateMixin, base), {"__slots__": (), "model": model})
    return _cached_type(model, "recurrent_state", make)


HHParameters = parameters_type(HODGKIN_HUXLEY, "HHParameters")
HHParameters.__doc__ = r"""Parameters of the reference HH model as tensors.

Fields: ``ENa, gNa, EK, gK, EL, gL, V_th`` (mV, mS), ``C`` (uF), each a scalar or a
per-neuron tensor broadcastable against the input; ``spk_reset`` (``'soft'``/``'hard'``),
surrogate ``alpha`` and ``width``; ``V_reset`` (mV or ``None``: no reset, the reference);
``V_scale``, the surrogate's scale (mV or ``None``: :math:`|V_{th}|`, 1 mV where
:math:`V_{th} = 0`; see :class:`~hh_plugin.HHSpec`); ``method``, the integration method
(``'exponential_euler'``, the default, or ``'rk4'``; :mod:`hh_plugin.model.integrators`).
Defaults are the reference model's. ``HHParameters.from_spec(spec)`` builds one from an
:class:`~hh_plugin.HHSpec`, ``p.to_spec()`` goes back.
"""

HHState = state_type(HODGKIN_HUXLEY, "HHState")
HHState.__doc__ = r"""State of an HH population: ``V`` (mV) and gates ``m, h, n`` (dimensionless)."""

HHRecurrentState = recurrent_state_type(HODGKIN_HUXLEY, "HHRecurrentState")
HHRecurrentState.__doc__ = r"""State of a recurrent HH layer
(:class:`~hh_plugin.torch.HHRecurrentCell`, :class:`~hh_plugin.torch.HHRecurrent`), flat
as Norse's recurrent states: ``V`` (mV), the gates ``m, h, n`` (dimensionless) and ``z``,
the last step's spikes (0/1). ``state.v`` is ``V`` (Norse's name); ``state.neuron`` gives
the neuron state ``HHState(V, m, h, n)`` and ``HHRecurrentState(neuron_state, z)`` (two
arguments) builds the flat state, as the nested form of earlier versions did. Another
model's layers use
:func:`recurrent_state_type` ``(model)``."""


def resting_voltage(p) -> np.ndarray:
    r"""The resting potential (mV, float64; shape ``()``, or ``(N,)`` for per-neuron
    parameters) of the parameters ``p`` (a parameters NamedTuple or an
    :class:`~hh_plugin.HHSpec`): :math:`\dot V = 0` at zero input with every gate at its
    steady state, solved from the model definition (:func:`hh_plugin.model.rest.resting_state`;
    an unstable equilibrium where the model has no stable one)."""
    if isinstance(p, HHSpec):
        return resting_state(p.model, p.parameters)["V"]
    return resting_state(type(p).model, parameter_arrays(p))["V"]


def parameter_arrays(p) -> dict:
    """The model parameters of the NamedTuple ``p`` as float64 numpy arrays (plugin units),
    detached and on the CPU."""
    return {k: torch.as_tensor(getattr(p, k)).detach().cpu().double().numpy()
            for k in type(p).model.parameter_names}


def as_parameters(p):
    """Accept an :class:`HHSpec` or a parameters NamedTuple; return the NamedTuple."""
    if isinstance(p, HHSpec):
        return parameters_type(p.model).from_spec(p)
    if isinstance(p, _ParametersMixin):
        p.to_spec()  # validates values (NaN, C <= 0, V_scale <= 0, unknown reset mode...)
        return p
    raise TypeError(f"p must be an HHSpec or a parameters NamedTuple such as HHParameters, "
                    f"got {type(p).__name__}")


def _tracing() -> bool:
    """True while torch.compile, torch.export or ONNX export traces the code: data-dependent
    checks (``if tensor.all()``) cannot run then."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def initial_state(p, shape, V=DEFAULT, seed: Optional[int] = None,
                  dtype: torch.dtype = torch.float32, device=None, **gates):
    r"""Initial state of the given shape: ``V`` as in :func:`hh_plugin.model.initial_voltage`
    (a number, an array, ``'default'``: the model's distribution, or ``'uniform'``: its
    range) or ``'rest'``: the resting steady state of ``p``
    (:func:`resting_voltage`); gates as given, else the model's default constants (with
    ``V='default'``), else at steady state at ``V`` (computed in ``dtype`` on ``device``).

    With a random ``V`` and ``seed=None`` the draw uses torch's global generator
    (``torch.manual_seed``); with a seed it uses numpy's ``default_rng(seed)``, the same
    draw as the Brian2 backend's, so both backends start identically.

    A number, a tensor or an unseeded uniform draw is built from torch operations only, so
    :func:`torch.compile` (``fullgraph=True``), :func:`torch.export.export` and ONNX export
    trace it; a seeded draw or a numpy array is computed by numpy (a constant when traced).
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
        if not _tracing() and not torch.isfinite(V).all():
            raise ValueError("initial voltage contains NaN or infinite values")
        try:
            V0 = torch.broadcast_to(V.to(dtype=dtype, device=device), shape).clone()
        except RuntimeError:
            raise ValueError(f"initial voltage of shape {tuple(V.shape)} does not fit "
                             f"the population shape {shape}") from None
    elif isinstance(V, str) and V == DEFAULT and distribution.kind == "constant":
        V0 = torch.full(shape, distribution.values[0], dtype=dtype, device=device)
    elif isinstance(V, str) and V == REST:
        rest = torch.as_tensor(resting_voltage(p), dtype=dtype, device=device)
        V0 = torch.broadcast_to(rest, shape).clone()
    elif isinstance(V, (int, float)) and not isinstance(V, bool):
        if not math.isfinite(V):
            raise ValueError("initial voltage contains NaN or infinite values")
        V0 = torch.full(shape, float(V), dtype=dtype, device=device)
    else:  # a seeded uniform draw, an array or a Brian2 quantity: numpy checks it
        V0 = torch.as_tensor(initial_voltage(model, shape, V, seed), dtype=dtype, device=device)
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
        x_inf = steady_state(compiled.evaluate_intermediates(gate, symbols))
        values.append(torch.broadcast_to(torch.as_tensor(x_inf, dtype=dtype, device=device),
                                         shape).clone())
    return state_type(model)(*values)
