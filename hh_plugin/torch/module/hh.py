r"""Norse modules for the HH model: a cell (one step), a sequence module, recurrent variants.

They follow Norse's contracts (:mod:`norse.torch.module.snn`): ``forward(input_tensor,
state=None) -> (spikes, state)``, parameters as a NamedTuple ``p``, ``dt`` in seconds,
so they drop into ``norse.torch.SequentialState`` and ``norse.torch.Lift``.

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

from typing import Optional

import torch
from norse.torch.module.snn import SNN, SNNCell, SNNRecurrent, SNNRecurrentCell, _merge_states

from ...model import HHSpec
from ...model.initial import UNIFORM
from ..functional.hh import (HHRecurrentState, check_dt, hh_feed_forward_step,
                             hh_recurrent_step)
from ..functional.parameters import as_parameters, initial_state


class _HHMixin:
    """Shared by all HH modules: parameter casting cache, initial state, input checks."""

    def _setup(self, p, V_init, seed):
        self._cast_cache = {}
        self.V_init = V_init
        self.seed = seed
        self._n_neurons = p.size  # p was validated by as_parameters

    def parameters_like(self, tensor: torch.Tensor):
        """``self.p`` cast to ``tensor``'s dtype and device, cached (parameters that
        require gradients are cast on every call so that gradients reach them)."""
        p = self.p
        if any(isinstance(v, torch.Tensor) and v.requires_grad for v in p):
            return p.to(dtype=tensor.dtype, device=tensor.device)
        key = (id(p), tensor.dtype, tensor.device)
        cached = self._cast_cache.get(key)
        if cached is None:
            self._cast_cache.clear()
            cached = self._cast_cache[key] = p.to(dtype=tensor.dtype, device=tensor.device)
        return cached

    def _check_input(self, input_tensor: torch.Tensor, name="input current"):
        if not isinstance(input_tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(input_tensor).__name__}")
        if not input_tensor.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor (uA), got {input_tensor.dtype}")
        if self._n_neurons is not None and (input_tensor.ndim == 0
                                            or input_tensor.shape[-1] != self._n_neurons):
            raise ValueError(f"{name} of shape {tuple(input_tensor.shape)}: the last dimension "
                             f"must be the {self._n_neurons} neurons of the heterogeneous "
                             f"parameters")

    @staticmethod
    def _check_state(state, shape):
        V = getattr(state, "V", None)
        if V is None:
            raise TypeError(f"state must be an HHState (V, m, h, n), got {type(state).__name__}")
        if tuple(V.shape) != tuple(shape):
            raise ValueError(f"state of shape {tuple(V.shape)} does not match the input "
                             f"(expected {tuple(shape)}; mismatched batch or neuron count?)")

    def initial_state(self, input_tensor: torch.Tensor, shape=None):
        """State for an input like ``input_tensor`` (``V_init``, ``seed``; gates at steady state)."""
        return initial_state(self.p, input_tensor.shape if shape is None else shape,
                             V=self.V_init, seed=self.seed, dtype=input_tensor.dtype,
                             device=input_tensor.device)


class HHCell(_HHMixin, SNNCell):
    r"""One exponential-Euler step of an HH population (see :mod:`hh_plugin.torch.functional.hh`;
    on the CPU in float32/float64 one call of the fused C++ step, :mod:`hh_plugin.torch.fused.step`).

    Arguments:
        p: an :class:`~hh_plugin.HHSpec` or ``HHParameters`` (default: the reference model).
        dt: time step in seconds (default :math:`10^{-5}` s = 0.01 ms).
        V_init: initial membrane potential when no state is given: ``'uniform'``
            (the reference model's :math:`\mathcal U(-70,-60)` mV), a number or a tensor (mV).
        seed: seed for the uniform draw (numpy generator, identical to the Brian2 backend's);
            ``None`` uses torch's global generator.

    ``forward(input_tensor, state=None) -> (spikes, HHState)``; the input is a current in uA
    of any shape (batch, ..., neurons).
    """

    def __init__(self, p=None, dt: float = 1e-5, V_init=UNIFORM, seed: Optional[int] = None):
        p = as_parameters(HHSpec() if p is None else p)
        super().__init__(activation=hh_feed_forward_step, state_fallback=self.initial_state,
                         p=p, dt=check_dt(dt))
        self._setup(p, V_init, seed)

    def forward(self, input_tensor: torch.Tensor, state=None):
        self._check_input(input_tensor)
        if state is None:
            state = self.initial_state(input_tensor)
        else:
            self._check_state(state, input_tensor.shape)
        return self.activation(input_tensor, state, self.parameters_like(input_tensor), self.dt)


class HH(_HHMixin, SNN):
    r"""HH population over time: input of shape ``(T, ...)`` in uA, spikes of the same shape.

    Returns ``(spikes, state)`` where ``state`` is the final ``HHState``, or, with
    ``record_states=True``, an ``HHState`` of stacked ``(T, ...)`` trajectories.
    Arguments as :class:`HHCell`, and:

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
    """

    def __init__(self, p=None, dt: float = 1e-5, V_init=UNIFORM, seed: Optional[int] = None,
                 record_states: bool = False, path: str = "auto", checkpoint=None):
        from ..fused.sequence import PATHS, checkpoint_interval

        p = as_parameters(HHSpec() if p is None else p)
        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}; choose one of {PATHS}")
        checkpoint_interval(checkpoint, 1)  # validate early
        super().__init__(activation=hh_feed_forward_step, state_fallback=self.initial_state,
                         p=p, dt=check_dt(dt), record_states=record_states)
        self._setup(p, V_init, seed)
        self.path = path
        self.checkpoint = checkpoint

    def forward(self, input_tensor: torch.Tensor, state=None):
        self._check_input(input_tensor)
        if input_tensor.ndim < 1 or input_tensor.shape[0] == 0:
            raise ValueError(f"input of shape {tuple(input_tensor.shape)}: expected (T, ...) "
                             f"with T >= 1 time steps")
        step_shape = input_tensor.shape[1:]
        if state is None:
            state = self.initial_state(input_tensor, step_shape)
        else:
            self._check_state(state, step_shape)
        from ..fused.sequence import hh_sequence  # the naive loop is one of its paths

        return hh_sequence(input_tensor, state, self.parameters_like(input_tensor), self.dt,
                           record_states=self.record_states, path=self.path,
                           checkpoint=self.checkpoint)


class _RecurrentMixin(_HHMixin):
    def recurrent_initial_state(self, input_tensor: torch.Tensor, shape=None):
        shape = tuple(input_tensor.shape[:-1] if shape is None else shape)
        hidden = shape + (int(self.hidden_size),)
        neuron = initial_state(self.p, hidden, V=self.V_init, seed=self.seed,
                               dtype=input_tensor.dtype, device=input_tensor.device)
        return HHRecurrentState(neuron, torch.zeros(hidden, dtype=input_tensor.dtype,
                                                    device=input_tensor.device))

    def _check_recurrent(self, x, state, batch_shape):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("input must be a floating-point torch.Tensor")
        if x.shape[-1] != int(self.input_size):
            raise ValueError(f"input of shape {tuple(x.shape)}: last dimension must be "
                             f"input_size={int(self.input_size)}")
        if state is not None:
            if not isinstance(state, HHRecurrentState):
                raise TypeError(f"state must be an HHRecurrentState, got {type(state).__name__}")
            self._check_state(state.neuron, tuple(batch_shape) + (int(self.hidden_size),))

    def _setup_recurrent(self, p, V_init, seed, hidden_size):
        self._setup(p, V_init, seed)
        if self._n_neurons is not None and self._n_neurons != hidden_size:
            raise ValueError(f"per-neuron parameters for {self._n_neurons} neurons, "
                             f"but hidden_size={hidden_size}")
        self._n_neurons = None  # checked here once; inputs have input_size columns


class HHRecurrentCell(_RecurrentMixin, SNNRecurrentCell):
    r"""HH cell with input and recurrent weights (as Norse's ``LIFRecurrentCell``).

    Current (uA): :math:`I_t = W_{in} x_t + W_{rec} z_{t-1}`. State: ``HHRecurrentState(neuron,
    z)``. Weights default to Norse's random initialisation; ``autapses=False`` zeroes the
    diagonal of :math:`W_{rec}`.
    """

    def __init__(self, input_size: int, hidden_size: int, p=None, dt: float = 1e-5,
                 V_init=UNIFORM, seed: Optional[int] = None, **kwargs):
        p = as_parameters(HHSpec() if p is None else p)
        super().__init__(activation=hh_recurrent_step, state_fallback=self.recurrent_initial_state,
                         input_size=input_size, hidden_size=hidden_size, p=p,
                         dt=check_dt(dt), **kwargs)
        self._setup_recurrent(p, V_init, seed, hidden_size)

    def forward(self, input_tensor: torch.Tensor, state=None):
        self._check_recurrent(input_tensor, state, input_tensor.shape[:-1])
        if state is None:
            state = self.recurrent_initial_state(input_tensor)
        p = self.parameters_like(input_tensor)
        return hh_recurrent_step(input_tensor, state, self.input_weights.to(input_tensor.dtype),
                                 self.recurrent_weights.to(input_tensor.dtype), p, self.dt)


class HHRecurrent(_RecurrentMixin, SNNRecurrent):
    """Recurrent HH layer over time: input ``(T, ..., input_size)``, spikes ``(T, ..., hidden)``."""

    def __init__(self, input_size: int, hidden_size: int, p=None, dt: float = 1e-5,
                 V_init=UNIFORM, seed: Optional[int] = None, record_states: bool = False,
                 **kwargs):
        p = as_parameters(HHSpec() if p is None else p)
        super().__init__(activation=hh_recurrent_step, state_fallback=self.recurrent_initial_state,
                         input_size=input_size, hidden_size=hidden_size, p=p,
                         dt=check_dt(dt), record_states=record_states, **kwargs)
        self._setup_recurrent(p, V_init, seed, hidden_size)

    def forward(self, input_tensor: torch.Tensor, state=None):
        if input_tensor.ndim < 2:
            raise ValueError(f"input of shape {tuple(input_tensor.shape)}: expected "
                             f"(T, ..., input_size)")
        self._check_recurrent(input_tensor, state, input_tensor.shape[1:-1])
        if state is None:
            state = self.recurrent_initial_state(input_tensor[0])
        p = self.parameters_like(input_tensor)
        w_in = self.input_weights.to(input_tensor.dtype)
        w_rec = self.recurrent_weights.to(input_tensor.dtype)
        outputs, states = [], []
        for t in range(input_tensor.shape[0]):
            z, state = hh_recurrent_step(input_tensor[t], state, w_in, w_rec, p, self.dt)
            outputs.append(z)
            if self.record_states:
                states.append(state)
        return torch.stack(outputs), (_merge_states(states) if self.record_states else state)
