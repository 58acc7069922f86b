r"""Norse modules for the HH model: a cell (one step), a sequence module, recurrent variants.

They follow Norse's contracts (:mod:`norse.torch.module.snn`): ``forward(input_tensor,
state=None) -> (spikes, state)``, parameters as a NamedTuple ``p``, ``dt`` in seconds,
so they drop into ``norse.torch.SequentialState`` and ``norse.torch.Lift``. Without a
state they start, as Norse's modules do, from one deterministic state that requires
gradients: the model's resting steady state (``V_init='rest'``, the default;
:mod:`hh_plugin.model.rest`). ``V_init='default'`` gives the model's declared default
instead (the reference model's random :math:`\mathcal U(-70, -60)` mV, the Brian2
backend's default).

Example:
    >>> import torch
    >>> from hh_plugin import HHSpec
    >>> from hh_plugin.torch import HHCell
    >>> cell = HHCell(p=HHSpec(), dt=1e-5)            # 0.01 ms steps
    >>> z, s = cell(torch.full((1, 10), 10.0))        # batch 1, 10 neurons, 10 uA
    >>> z.shape, s.V.shape
    (torch.Size([1, 10]), torch.Size([1, 10]))
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np
import torch
from norse.torch.module.snn import SNN, SNNCell, SNNRecurrent, SNNRecurrentCell

from ...model import HHSpec
from ...model.initial import DEFAULT, REST, VOLTAGE_MARKERS
from ...model.rest import UnstableRest, is_stable, resting_state
from ..functional.hh import (check_dt, check_input_current, hh_feed_forward_step,
                             hh_recurrent_step)
from ..functional.parameters import (_tracing, as_parameters, initial_state, parameter_arrays,
                                     recurrent_state_type, state_type)
from ..fused.ops import kernel_key
from .trainable import current_parameters, register_trainable, trainable_names

#: Said when ``norse.torch.to_nir`` (or another NIR tracer) meets an HH module.
NIR_UNSUPPORTED = (
    "NIR cannot describe {module}: NIR's neuron primitives are leaky/integrate-and-fire "
    "types (LIF, CubaLIF, IF, LI, I) and it has no node for Hodgkin-Huxley neurons, so "
    "norse.torch.to_nir would write an empty (None) node for this layer. To store or "
    "exchange the HH population, write its specification and state with "
    "hh_plugin.export.save(path, spec, state) (the plugin's HDF5 file, read back by "
    "hh_plugin.export.load for the torch and Brian2 backends; see export/FORMAT.md), and "
    "keep the other layers' weights with torch.save(model.state_dict()).")


def _nir_tracing() -> bool:
    """True inside nirtorch's graph tracer (used by ``norse.torch.to_nir``), which replaces
    ``torch.nn.Module.__call__`` by its own wrapper while it runs the model."""
    if torch.compiler.is_compiling():
        return False
    return getattr(torch.nn.Module.__call__, "__module__", "").startswith("nirtorch")


#: What ``V_init`` may name: the resting state (the modules' default), the model's
#: default (random for the reference model) and its uniform range.
MODULE_VOLTAGE_MARKERS = (REST,) + VOLTAGE_MARKERS


def _initial_voltage_option(V, seed=None):
    """``V_init`` checked once: ``'rest'``, ``'default'``, ``'uniform'``, a finite number,
    or a finite tensor (mV); ``seed`` only with a random draw."""
    if isinstance(V, str):
        if V not in MODULE_VOLTAGE_MARKERS:
            raise ValueError(f"unknown V_init {V!r}; use a number, an array or one of "
                             f"{MODULE_VOLTAGE_MARKERS}")
        if V == REST and seed is not None:
            raise ValueError(f"seed={seed!r} draws nothing with V_init={REST!r} (the resting "
                             f"state is deterministic); for the model's random default "
                             f"state pass V_init={DEFAULT!r} with the seed")
        return V
    if V is None or isinstance(V, bool):
        raise ValueError(f"V_init must be a number, an array or one of "
                         f"{MODULE_VOLTAGE_MARKERS}, got {V!r}")
    if isinstance(V, (int, float)):
        value = float(V)
    else:
        if hasattr(V, "dim") and hasattr(V, "has_same_dimensions"):  # a Brian2 quantity
            from ...model.spec import to_plain

            V = to_plain(V, "mV", "V_init")
        value = V if isinstance(V, torch.Tensor) else torch.as_tensor(
            np.asarray(V, dtype=np.float64))
    finite = (math.isfinite(value) if isinstance(value, float)
              else bool(torch.isfinite(value.detach()).all()))
    if not finite:
        raise ValueError("V_init contains NaN or infinite values")
    return value


def _requiring_grad(state):
    """``state`` with ``V`` a leaf that requires gradients, as Norse's initial states
    (``state.v.requires_grad = True``), when autograd records (not under
    :func:`torch.no_grad`, not while a graph is captured)."""
    if torch.is_grad_enabled() and not torch.compiler.is_compiling() \
            and not torch.jit.is_tracing() and state.V.is_floating_point():
        state.V.requires_grad_(True)
    return state


class _HHMixin:
    """Shared by all HH modules: parameter casting cache, initial state, input checks,
    trainable biophysical parameters (:mod:`.trainable`)."""

    @property
    def p(self):
        """The parameters NamedTuple, with the trainable fields at their current values."""
        return current_parameters(self, self.__dict__["_base_p"],
                                  self.__dict__.get("_trainable", ()))

    @p.setter
    def p(self, value):
        self.__dict__["_base_p"] = value

    def _setup(self, p, V_init, seed, trainable=()):
        names = trainable_names(trainable, type(p).model)
        register_trainable(self, p, names)
        self.__dict__["_trainable"] = names
        self._cast_cache = {}
        self.V_init = _initial_voltage_option(V_init, seed)
        self.seed = seed
        self._n_neurons = p.size  # p was validated by as_parameters
        type(p).model.compiled("torch")  # build the rate functions now, not while traced
        state_type(type(p).model)  # and the state's class
        kernel_key(type(p).model, p.method)  # and its fused kernel's name (torch.library)
        self.__dict__["_rest_cache"] = None
        if isinstance(self.V_init, str) and self.V_init == REST:
            try:  # solved now, so that a traced first call finds it
                self._initial_voltage(use=False)
            except ValueError:  # NoRestingState, or parameters it cannot take (2-D):
                pass  # said at the first call without a state; one with a state needs none

    def resting_state(self):
        r"""The state that ``V_init='rest'`` starts from, for the current parameters: a
        dict of float64 numpy arrays, ``V`` (mV) and each gate at :math:`x_\infty(V)`, of
        shape ``()`` or ``(N,)`` for per-neuron parameters
        (:func:`hh_plugin.model.rest.resting_state`)."""
        return resting_state(type(self.p).model, parameter_arrays(self.p))

    def _initial_voltage(self, use: bool = True):
        """``V`` for :func:`~hh_plugin.torch.functional.parameters.initial_state`:
        ``V_init``, or for ``'rest'`` the resting potential (a float, or a float64 tensor
        of the neurons), solved again only when the parameters' values changed (a
        trained parameter); while a graph is traced, the value last solved. The first
        use (``use=True``) of an unstable equilibrium warns (:class:`UnstableRest`)."""
        if not (isinstance(self.V_init, str) and self.V_init == REST):
            return self.V_init
        cache = self.__dict__["_rest_cache"]
        if cache is not None and _tracing():
            return cache["V"]
        values = parameter_arrays(self.p)
        key = tuple(v.tobytes() for v in values.values())
        if cache is None or cache["key"] != key:
            model = type(self.p).model
            V = resting_state(model, values)["V"]
            cache = self.__dict__["_rest_cache"] = {
                "key": key, "V": float(V) if V.ndim == 0 else torch.from_numpy(V),
                "stable": bool(np.all(is_stable(model, V, values))), "warned": False}
        if use and not cache["stable"] and not cache["warned"]:
            cache["warned"] = True
            V = cache["V"]
            warnings.warn(
                f"{type(self).__name__}: model {type(self.p).model.name!r} has no stable "
                f"resting state at zero input with these parameters (it fires on its own); "
                f"V_init={REST!r} starts it from its unstable equilibrium "
                f"({float(V if isinstance(V, float) else V.min()):.2f} mV), which it leaves "
                f"as rounding errors grow. Pass V_init={DEFAULT!r} or a potential in mV to "
                f"choose another start", UnstableRest, stacklevel=3)
        return cache["V"]

    def parameters_like(self, tensor: torch.Tensor):
        """``self.p`` cast to ``tensor``'s dtype and device, cached (parameters that
        require gradients are cast on every call so that gradients reach them)."""
        p = self.p
        if torch.jit.is_tracing() or any(isinstance(v, torch.Tensor) and v.requires_grad
                                         for v in p):
            # torch.jit.trace runs forward twice and compares the graphs: a cache filled
            # by the first run would leave the casts out of the second
            return p.to(dtype=tensor.dtype, device=tensor.device)
        key = (id(p), tensor.dtype, tensor.device)
        cached = self._cast_cache.get(key)
        if cached is None:
            self._cast_cache.clear()
            cached = self._cast_cache[key] = p.to(dtype=tensor.dtype, device=tensor.device)
        return cached

    def _as_current(self, input_tensor, state_V=None, name="input current", neurons=True):
        r"""``(current, sparse)``: the input as a dense floating-point tensor (uA) in the
        dtype the step computes in, and whether it came in sparse.

        As Norse's cells: boolean (spike) and integer inputs become currents of 0/1/... uA
        in the state's dtype (float32 without a state); a sparse input is made dense (the
        spikes go back sparse). A floating input and a floating state are promoted to a
        common dtype, so ``V`` and the gates always share one dtype.
        """
        if _nir_tracing():
            raise NotImplementedError(NIR_UNSUPPORTED.format(module=type(self).__name__))
        if not isinstance(input_tensor, torch.Tensor):
            if isinstance(input_tensor, torch.fx.Proxy):  # nirtorch.torch_to_nir's fx tracer
                raise NotImplementedError(NIR_UNSUPPORTED.format(module=type(self).__name__))
            raise TypeError(f"{name} must be a torch.Tensor, got {type(input_tensor).__name__}")
        sparse = input_tensor.layout != torch.strided
        if sparse:
            input_tensor = input_tensor.to_dense()
        if input_tensor.is_complex():
            raise TypeError(f"{name} must be real (uA), got {input_tensor.dtype}")
        state_dtype = (state_V.dtype if isinstance(state_V, torch.Tensor)
                       and state_V.is_floating_point() else None)
        if input_tensor.is_floating_point():
            dtype = (input_tensor.dtype if state_dtype is None
                     else torch.promote_types(input_tensor.dtype, state_dtype))
        else:  # boolean spikes or integer currents
            dtype = state_dtype or torch.get_default_dtype()
        if input_tensor.dtype != dtype:
            input_tensor = input_tensor.to(dtype)
        if neurons and self._n_neurons is not None and (
                input_tensor.ndim == 0 or input_tensor.shape[-1] != self._n_neurons):
            raise ValueError(f"{name} of shape {tuple(input_tensor.shape)}: the last dimension "
                             f"must be the {self._n_neurons} neurons of the heterogeneous "
                             f"parameters")
        return input_tensor, sparse

    def _prepare_state(self, state, shape, like: torch.Tensor):
        """``state`` with every field of ``shape`` in ``like``'s dtype and device. A field
        with one element (a 0-d tensor, as Norse's cells take) is broadcast; any other
        shape must match."""
        names = type(self.p).model.state_names
        if getattr(state, "_fields", None) != names:
            raise TypeError(f"state must be a {state_type(type(self.p).model).__name__} "
                            f"({', '.join(names)}), got {type(state).__name__}")
        shape = tuple(shape)
        if all(isinstance(v, torch.Tensor) and v.shape == shape and v.dtype == like.dtype
               and v.device == like.device for v in state):
            return state
        values = []
        for value in state:
            value = torch.as_tensor(value, device=like.device)
            if value.layout != torch.strided:
                value = value.to_dense()
            value = value.to(like.dtype)
            if tuple(value.shape) != shape:
                if value.numel() != 1:
                    raise ValueError(f"state of shape {tuple(value.shape)} does not match the "
                                     f"input (expected {shape}, or one value to broadcast; "
                                     f"mismatched batch or neuron count?)")
                value = value.reshape(()).expand(shape).contiguous()
            values.append(value)
        return type(state)(*values) if hasattr(type(state), "model") else \
            state_type(type(self.p).model)(*values)

    def initial_state(self, input_tensor: torch.Tensor, shape=None):
        """State for an input like ``input_tensor`` (``V_init``, ``seed``; gates at steady
        state). As in Norse's modules, its ``V`` requires gradients (with gradients
        enabled), so that a backward pass works whatever the input."""
        dtype = (input_tensor.dtype if input_tensor.is_floating_point()
                 else torch.get_default_dtype())
        state = initial_state(self.p, input_tensor.shape if shape is None else shape,
                              V=self._initial_voltage(), seed=self.seed, dtype=dtype,
                              device=input_tensor.device)
        return _requiring_grad(state)


class HHCell(_HHMixin, SNNCell):
    r"""One step of an HH population with the spec's method (exponential Euler by default, or
    RK4: ``HHSpec(method='rk4')``; see :mod:`hh_plugin.torch.functional.hh`; on the CPU in
    float32/float64 one call of the fused C++ step, :mod:`hh_plugin.torch.fused.step`).

    Arguments:
        p: an :class:`~hh_plugin.HHSpec` or ``HHParameters`` (default: the reference model).
        dt: time step in seconds (default :math:`10^{-5}` s = 0.01 ms).
        V_init: initial membrane potential when no state is given.

            * ``'rest'`` (default): the model's resting steady state, deterministic as
              Norse's initial states (LIF: :math:`v = v_{leak}`): the :math:`V^*` (mV)
              with :math:`\dot V = -\sum_c g_c(x_\infty(V^*))\,(V^* - E_c)/C = 0` at
              zero input, gates at :math:`x_\infty(V^*)`, solved from the model
              definition for the current parameters (per neuron for per-neuron ones;
              :mod:`hh_plugin.model.rest`, :meth:`resting_state`). Reference model:
              -70.68 mV. A model without a stable rest (Traub-Miles' COBAHH values fire
              on their own) starts from its unstable equilibrium, with an
              :class:`~hh_plugin.model.rest.UnstableRest` warning at the first call
              without a state; one without any equilibrium in -100..60 mV raises
              :class:`~hh_plugin.model.rest.NoRestingState` there (a module always given
              a state needs no rest).
            * ``'default'``: the model's declared default state, the Brian2 backend's
              and the network module's default (the reference model:
              :math:`\mathcal U(-70,-60)` mV drawn anew on every call, gates at steady
              state; Wang-Buzsaki: -65 mV, :math:`h = 0.6, n = 0.32`).
            * ``'uniform'`` (the model's range), a number or a tensor (mV).
        seed: seed for the random draws of ``'default'`` and ``'uniform'`` (numpy
            generator, identical to the Brian2 backend's); ``None`` uses torch's global
            generator. Refused with ``'rest'``, which draws nothing.
        trainable: model parameters to train, such as ``("gNa", "gK", "EL")``: registered
            as ``nn.Parameter``\ s (in ``parameters()`` and ``state_dict()``), positive
            ones through their logarithm (:mod:`hh_plugin.torch.module.trainable`);
            ``self.p`` holds their current values. The other modules take it too.

    ``forward(input_tensor, state=None) -> (spikes, HHState)``; the input is a current in uA
    of any shape (batch, ..., neurons).

    Checks: ``dt`` above the model's ``max_dt`` is refused
    (:class:`~hh_plugin.model.limits.StepTooLong`). A CPU input containing NaN or inf is
    refused with ``ValueError`` and an implausibly large one draws an
    :class:`~hh_plugin.model.limits.ImplausibleInputWarning` (one reduction per step); on
    other devices a step does not check its input (that would synchronise the device at
    every step): NaN then propagates into the state, so check inputs yourself or use
    :class:`HH`, which checks a whole sequence at once.
    """

    def __init__(self, p=None, dt: float = 1e-5, V_init=REST, seed: Optional[int] = None,
                 trainable=()):
        p = as_parameters(HHSpec() if p is None else p)
        super().__init__(activation=hh_feed_forward_step, state_fallback=self.initial_state,
                         p=p, dt=check_dt(dt, type(p).model, p.method))
        self._setup(p, V_init, seed, trainable)

    def forward(self, input_tensor: torch.Tensor, state=None):
        current, sparse = self._as_current(input_tensor, getattr(state, "V", None))
        if current.device.type == "cpu":  # on a GPU it would synchronise every step
            check_input_current(current, self.parameters_like(current))
        if state is None:
            state = self.initial_state(current)
        else:
            state = self._prepare_state(state, current.shape, current)
        z, state = self.activation(current, state, self.parameters_like(current), self.dt)
        return (z.to_sparse() if sparse else z), state


class HH(_HHMixin, SNN):
    r"""HH population over time: input of shape ``(T, ...)`` in uA, spikes of the same shape.

    Returns ``(spikes, state)`` where ``state`` is the final ``HHState``, or, with
    ``record_states=True``, an ``HHState`` of stacked ``(T, ...)`` trajectories.
    Arguments as :class:`HHCell`, and:

    record_states: ``False`` (default: the final state), ``True`` (every state variable's
        trajectory) or the names to record, such as ``('V',)``: an ``HHState`` with the
        ``(T, ...)`` trajectories of those variables and ``None`` in the other fields.
        Only the named trajectories are stored (float64, :math:`N = 10^4`,
        :math:`T = 1000`: 80 MB for ``V`` against 320 MB for all four; see
        ``benchmarks/record_states.py``). An unknown name is refused (``ValueError``).
        A run recorded in part cannot be continued from its result (the gates' final
        values are not returned): record all, or nothing, to continue.

    path: how the time loop runs (:mod:`hh_plugin.torch.fused`); every path gives the
        same spikes and states. ``'auto'`` (default): the fused C++ kernel for CPU
        float32/float64 inputs when a C++ compiler is available (compiled at first
        use and cached), the Triton kernel for CUDA inputs without gradients when
        Triton is installed, else ``'naive'``; ``'naive'``: a Python loop over
        :func:`~hh_plugin.torch.functional.hh.hh_step` (the reference);
        ``'compiled'``: chunks of steps under :func:`torch.compile`; ``'fused_cpp'``,
        ``'triton'``: force a kernel. A forced path that cannot run raises
        :class:`~hh_plugin.torch.fused.PathUnavailable`.
    checkpoint: the fused C++ backward stores the state every ``checkpoint`` steps and
        recomputes in between (default ``None``: every :math:`\lceil\sqrt T\rceil` steps;
        ``1``: every step). Gradients do not depend on it.

    The whole input is checked once before the run, on every device: NaN or inf is refused
    with ``ValueError``, an implausibly large current draws an
    :class:`~hh_plugin.model.limits.ImplausibleInputWarning`; ``dt`` above the model's
    ``max_dt`` is refused (:class:`~hh_plugin.model.limits.StepTooLong`).
    """

    def __init__(self, p=None, dt: float = 1e-5, V_init=REST, seed: Optional[int] = None,
                 record_states=False, path: str = "auto", checkpoint=None, trainable=()):
        from ..fused.sequence import PATHS, checkpoint_interval, record_names

        p = as_parameters(HHSpec() if p is None else p)
        record_names(record_states, type(p).model)  # validate early
        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}; choose one of {PATHS}")
        checkpoint_interval(checkpoint, 1)  # validate early
        super().__init__(activation=hh_feed_forward_step, state_fallback=self.initial_state,
                         p=p, dt=check_dt(dt, type(p).model, p.method), record_states=record_states)
        self._setup(p, V_init, seed, trainable)
        self.path = path
        self.checkpoint = checkpoint

    def forward(self, input_tensor: torch.Tensor, state=None):
        current, sparse = self._as_current(input_tensor, getattr(state, "V", None))
        if current.ndim < 1 or current.shape[0] == 0:
            raise ValueError(f"input of shape {tuple(current.shape)}: expected (T, ...) "
                             f"with T >= 1 time steps")
        step_shape = current.shape[1:]
        if state is None:
            state = self.initial_state(current, step_shape)
        else:
            state = self._prepare_state(state, step_shape, current)
        from ..fused.sequence import hh_sequence  # the naive loop is one of its paths

        p = self.parameters_like(current)
        check_input_current(current, p)  # the whole input, once, before the run
        z, state = hh_sequence(current, state, p, self.dt,
                               record_states=self.record_states, path=self.path,
                               checkpoint=self.checkpoint)
        return (z.to_sparse() if sparse else z), state


class _RecurrentMixin(_HHMixin):
    def recurrent_initial_state(self, input_tensor: torch.Tensor, shape=None):
        shape = tuple(input_tensor.shape[:-1] if shape is None else shape)
        hidden = shape + (self._hidden_neurons(),)
        dtype = (input_tensor.dtype if input_tensor.is_floating_point()
                 else torch.get_default_dtype())
        neuron = _requiring_grad(initial_state(self.p, hidden, V=self._initial_voltage(),
                                               seed=self.seed,
                                               dtype=dtype, device=input_tensor.device))
        return recurrent_state_type(type(self.p).model)(
            *neuron, torch.zeros(hidden, dtype=dtype, device=input_tensor.device))

    def _prepare_recurrent(self, x, state, time_axis: bool):
        """``(input, state, sparse)``: the input as in :meth:`_as_current` (last dimension
        ``input_size``) and the state, if given, in its dtype with dense spikes ``z``."""
        x, sparse = self._as_current(x, getattr(state, "V", None), name="input",
                                     neurons=False)
        if x.ndim < (2 if time_axis else 1) or x.shape[-1] != self._input_columns():
            raise ValueError(f"input of shape {tuple(x.shape)}: expected "
                             f"({'T, ' if time_axis else ''}..., input_size) with "
                             f"input_size={self._input_columns()}")
        if state is not None:
            model = type(self.p).model
            cls = recurrent_state_type(model)
            if getattr(state, "_fields", None) != cls._fields:
                raise TypeError(f"state must be a {cls.__name__} ({', '.join(cls._fields)}), "
                                f"got {type(state).__name__}")
            hidden = tuple(x.shape[1 if time_axis else 0:-1]) + (self._hidden_neurons(),)
            neuron = self._prepare_state(state_type(model)(*state[:-1]), hidden, x)
            z = state.z.to_dense() if state.z.layout != torch.strided else state.z
            z = z.to(dtype=x.dtype, device=x.device)
            if tuple(z.shape) != hidden:
                if z.numel() != 1:
                    raise ValueError(f"state.z of shape {tuple(z.shape)} does not match "
                                     f"{hidden}")
                z = z.reshape(()).expand(hidden).contiguous()
            state = cls(*neuron, z)
        return x, state, sparse

    def _hidden_neurons(self) -> int:
        """``hidden_size`` as a Python int, read from the weights' shape (Norse keeps
        ``hidden_size`` as a tensor, whose ``int()`` is data-dependent under
        :func:`torch.compile`)."""
        return self.input_weights.shape[0]

    def _input_columns(self) -> int:
        """``input_size`` as a Python int, from the input weights' shape."""
        return self.input_weights.shape[1]

    def _setup_recurrent(self, p, V_init, seed, hidden_size, trainable=()):
        self._setup(p, V_init, seed, trainable)
        if self._n_neurons is not None and self._n_neurons != hidden_size:
            raise ValueError(f"per-neuron parameters for {self._n_neurons} neurons, "
                             f"but hidden_size={hidden_size}")
        self._n_neurons = None  # checked here once; inputs have input_size columns


class HHRecurrentCell(_RecurrentMixin, SNNRecurrentCell):
    r"""HH cell with input and recurrent weights (as Norse's ``LIFRecurrentCell``).

    Current (uA): :math:`I_t = W_{in} x_t + W_{rec} z_{t-1}`. State: the flat
    ``HHRecurrentState(V, m, h, n, z)`` (another model: its gates;
    :func:`~hh_plugin.torch.functional.parameters.recurrent_state_type`), ``z`` the last
    step's spikes. Weights default to Norse's random initialisation; ``autapses=False`` zeroes the
    diagonal of :math:`W_{rec}`. ``p``, ``dt``, ``V_init`` (the resting state by default),
    ``seed`` and ``trainable`` as for :class:`HHCell`.
    """

    def __init__(self, input_size: int, hidden_size: int, p=None, dt: float = 1e-5,
                 V_init=REST, seed: Optional[int] = None, trainable=(), **kwargs):
        p = as_parameters(HHSpec() if p is None else p)
        super().__init__(activation=hh_recurrent_step, state_fallback=self.recurrent_initial_state,
                         input_size=input_size, hidden_size=hidden_size, p=p,
                         dt=check_dt(dt, type(p).model, p.method), **kwargs)
        self._setup_recurrent(p, V_init, seed, hidden_size, trainable)

    def forward(self, input_tensor: torch.Tensor, state=None):
        x, state, sparse = self._prepare_recurrent(input_tensor, state, time_axis=False)
        if state is None:
            state = self.recurrent_initial_state(x)
        z, state = hh_recurrent_step(x, state, self.input_weights.to(x.dtype),
                                     self.recurrent_weights.to(x.dtype),
                                     self.parameters_like(x), self.dt)
        return (z.to_sparse() if sparse else z), state


class HHRecurrent(_RecurrentMixin, SNNRecurrent):
    r"""Recurrent HH layer over time: input ``(T, ..., input_size)``, spikes ``(T, ..., hidden)``.

    Step :math:`t`: :math:`I_t = x_t W_{in}^\top + z_{t-1} W_{rec}^\top` (uA), then the
    HH step (:func:`~hh_plugin.torch.functional.hh.hh_recurrent_step`).

    ``record_states``: ``False`` (the final ``HHRecurrentState``), ``True`` (an
    ``HHRecurrentState`` of the stacked ``(T, ..., hidden)`` trajectories of ``V``, the gates
    and ``z``), or names of neuron state variables such as ``('V',)``: an
    ``HHRecurrentState`` holding those trajectories and ``None`` in its other fields and
    in ``z`` (the spikes are the first output).

    ``path``: as for :class:`HH`. ``'auto'`` (default): the fused C++ kernel of the
    recurrent layer for CPU float32/float64 inputs where a compiler is found
    (:mod:`hh_plugin.torch.fused.recurrent`: the time loop with the recurrent product
    inside, forward and checkpointed backward; built at first use and cached), else the
    step loop; ``'fused_cpp'`` forces the kernel, ``'naive'`` the step loop. There is no
    ``'compiled'`` or ``'triton'`` path for the recurrent layer
    (:class:`~hh_plugin.torch.fused.PathUnavailable`). ``checkpoint``: as for :class:`HH`.
    The other arguments as for :class:`HHRecurrentCell`."""

    def __init__(self, input_size: int, hidden_size: int, p=None, dt: float = 1e-5,
                 V_init=REST, seed: Optional[int] = None, record_states=False,
                 trainable=(), path: str = "auto", checkpoint=None, **kwargs):
        from ..fused.sequence import PATHS, checkpoint_interval, record_names

        p = as_parameters(HHSpec() if p is None else p)
        record_names(record_states, type(p).model)  # validate early
        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}; choose one of {PATHS}")
        checkpoint_interval(checkpoint, 1)  # validate early
        super().__init__(activation=hh_recurrent_step, state_fallback=self.recurrent_initial_state,
                         input_size=input_size, hidden_size=hidden_size, p=p,
                         dt=check_dt(dt, type(p).model, p.method), record_states=record_states, **kwargs)
        self._setup_recurrent(p, V_init, seed, hidden_size, trainable)
        self.path = path
        self.checkpoint = checkpoint

    def forward(self, input_tensor: torch.Tensor, state=None):
        x, state, sparse = self._prepare_recurrent(input_tensor, state, time_axis=True)
        if x.shape[0] == 0:
            raise ValueError(f"input of shape {tuple(x.shape)}: expected (T, ..., input_size) "
                             f"with T >= 1 time steps")
        if state is None:
            state = self.recurrent_initial_state(x[0])
        from ..fused.recurrent import hh_recurrent_sequence

        z, state = hh_recurrent_sequence(
            x, state, self.input_weights.to(x.dtype), self.recurrent_weights.to(x.dtype),
            self.parameters_like(x), self.dt, record_states=self.record_states,
            path=self.path, checkpoint=self.checkpoint)
        return (z.to_sparse() if sparse else z), state
