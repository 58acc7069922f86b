r"""The trainable PyTorch network built from a :class:`~hh_plugin.network.NetworkSpec`.

:class:`NetworkModule` is a ``torch.nn.Module`` whose parameters are the projections'
weights (:mod:`.projection`). Its time loop follows the schedule of
:mod:`hh_plugin.network.spec`; in step :math:`k`, for each population in
``spec.order``:

.. math::
    \begin{align*}
    x_r &\mathrel{+}= \sum_{\text{proj} \to r} W\, z^{src}_{k-d}
        && \text{(spikes due now, per receptor } r\text{)}\\
    I &= I_{ext,k} + \sum_{r\ \text{current}} x_r, \quad
    G_s = \sum_{r\ \text{cond.}} x_r, \quad
    J_s = \sum_{r\ \text{cond.}} x_r E_r \\
    z_k, s_{k+1} &= \operatorname{hh\_step}(I, s_k; G_s, J_s)
        && \text{(exponential Euler, conductances in } G\text{)}\\
    x_r &\leftarrow x_r\, e^{-\Delta t/\tau_r} \quad (\text{a pulse: } x_r \leftarrow 0)
    \end{align*}

with :func:`~hh_plugin.torch.functional.hh.hh_step`. This is the picture for the
one-state synapse models; every receptor is generated from its synapse definition
(:mod:`.receptors`): states :math:`x_s \mathrel{+}= c_s W z`, output
:math:`y = \sum_s k_s x_s` (times a voltage-dependent factor at the step's start
:math:`V` for a conductance), propagator :math:`x \leftarrow e^{A\Delta t} x`; a graded
synapse (Wang-Buzsaki) adds :math:`W\,\mathrm{transmit}(s)` of its source's presynaptic
states :math:`s`, which then take one exponential Euler step from the step's start.
Projections with Tsodyks-Markram plasticity transmit :math:`W (z \odot u x)` and update
:math:`u, x` per source neuron; projections with STDP transmit with their current
weights (``NetworkState.plasticity``) and update them on pre- and postsynaptic spikes
(both plasticity states are updated in the forward pass and not differentiated).
The surrogate gradient flows through spikes, synaptic variables and weights, so the
weights train with autograd; ``synapse_parameters`` gives gradients with respect to a
receptor's parameters.
Batches: currents of shape ``(T, *batch, N)`` give states of shape ``(*batch, N)``;
the specification's own inputs are shared by every batch element.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import warnings

import numpy as np
import torch

from ...model.spec import HHSpec
from ...network.leaky_integrator import LISpec
from ...network.spec import NetworkSpec
from ...model.integrators import DEFAULT_METHOD
from ..functional.hh import _tracing, finite_peak, hh_step
from ..fused.cpp import PathUnavailable
from ..functional.parameters import parameters_type, state_type
from ..functional.surrogate import heaviside_relu, surrogate_scale
from .projection import ProjectionOperator
from .receptors import ReceptorNumerics

#: Computation paths of :class:`NetworkModule` (see its docstring).
PATHS = ("auto", "naive", "fused")


@dataclass
class NetworkState:
    """State of a :class:`NetworkModule` between calls.

    ``neurons[pop]``: the population's state NamedTuple (``V`` mV, gates);
    ``synapses[pop][variable]``: synaptic variables (mS or uA); ``history[source]``:
    the spikes of the last steps, oldest first (as long as the longest delay leaving the
    source); ``step``: steps run since :math:`t = 0` (indexes the specification's inputs);
    ``since_spike[pop]``: steps since each neuron's last spike (populations with a
    refractory period only); ``short_term[projection]``: ``{'u': ..., 'x': ...}`` of a
    projection with Tsodyks-Markram plasticity, per presynaptic neuron (updated in the
    forward pass, detached: not differentiated); ``plasticity[projection]``: ``{'w': ...,
    'a_pre': ..., 'a_post': ...}`` of a projection with STDP or another plasticity rule
    (its weights as they are now, in the layout of its weight parameter, and the rule's
    traces by name).
    """

    neurons: Dict[str, object]
    synapses: Dict[str, Dict[str, torch.Tensor]]
    history: Dict[str, List[torch.Tensor]]
    step: int = 0
    since_spike: Dict[str, torch.Tensor] = field(default_factory=dict)
    short_term: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict)
    plasticity: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict)

    def detach(self) -> "NetworkState":
        """A copy with every tensor detached (truncated backpropagation through time)."""
        return NetworkState({k: v.detach() for k, v in self.neurons.items()},
                            {k: {n: t.detach() for n, t in d.items()}
                             for k, d in self.synapses.items()},
                            {k: [t.detach() for t in v] for k, v in self.history.items()},
                            self.step, {k: v.detach() for k, v in self.since_spike.items()},
                            {k: {n: t.detach() for n, t in d.items()}
                             for k, d in self.short_term.items()},
                            {k: {n: t.detach() for n, t in d.items()}
                             for k, d in self.plasticity.items()})


@dataclass
class NetworkOutput:
    """``spikes[pop]``: ``(T, *batch, N)`` 0/1 with surrogate gradient; ``state``: the
    :class:`NetworkState` after the run; ``traces[pop][variable]``: recorded ``(T, *batch,
    N)`` values after each step (``record=``)."""

    spikes: Dict[str, torch.Tensor]
    state: NetworkState
    traces: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict)


class _HHDynamics:
    r"""The HH population kind: parameters, initial state and step of one population.

    ``refractory_steps`` :math:`R` (``None``: the rising-edge rule of
    :func:`~hh_plugin.torch.functional.hh.hh_step`): the spike of a step is
    :math:`H((V' - V_{th})/V_{scale})\,[c \ge R]` (:math:`V_{scale}` as in
    :func:`~hh_plugin.torch.functional.surrogate.surrogate_scale`), :math:`c` the steps since the last
    spike at the step's start (Brian2's ``refractory=`` period with
    ``threshold='V >= V_th'``)."""

    def __init__(self, spec: HHSpec, refractory_steps: Optional[int] = None):
        self.spec = spec
        self.model = spec.model
        self.refractory_steps = refractory_steps
        self._cache: Dict = {}

    def parameters(self, dtype, device):
        key = (dtype, str(device))
        if key not in self._cache:
            self._cache[key] = parameters_type(self.model).from_spec(self.spec, dtype, device)
        return self._cache[key]

    def initial_state(self, values: Mapping[str, np.ndarray], shape, dtype, device):
        tensors = [torch.broadcast_to(torch.as_tensor(np.array(values[name]), dtype=dtype,
                                                      device=device), shape).clone()
                   for name in self.model.state_names]
        return state_type(self.model)(*tensors)

    def step(self, current, state, p, dt, conductance, conductance_current, since=None):
        """``(z, new_state, new_since)``; ``since`` is ``None`` without a refractory period."""
        z, new = hh_step(current, state, p, dt, conductance=conductance,
                         conductance_current=conductance_current)
        if self.refractory_steps is None:
            return z, new, None
        V_th = getattr(p, self.model.threshold)
        ready = (since >= self.refractory_steps).to(new.V.dtype)
        scale = surrogate_scale(V_th, p.V_scale)
        z = heaviside_relu((new.V - V_th) / scale, p.alpha, p.width) * ready
        since = torch.where(z > 0, torch.ones_like(since), since + 1)
        return z, new, since

    @property
    def state_names(self) -> Tuple[str, ...]:
        return self.model.state_names


class _LIDynamics:
    r"""The leaky-integrator population kind: Norse's own ``li_feed_forward_step``
    (:mod:`hh_plugin.network.leaky_integrator` gives the math), with its parameters as
    tensors of the run's dtype. It emits no spikes (:math:`z = 0`)."""

    refractory_steps = None

    def __init__(self, spec: LISpec, refractory_steps: Optional[int] = None):
        self.spec = spec
        self._cache: Dict = {}

    def parameters(self, dtype, device):
        from norse.torch.functional.leaky_integrator import LIParameters

        key = (dtype, str(device))
        if key not in self._cache:
            self._cache[key] = LIParameters(**{
                name: torch.tensor(value, dtype=dtype, device=device)
                for name, value in self.spec.parameters.items()})
        return self._cache[key]

    def initial_state(self, values: Mapping[str, np.ndarray], shape, dtype, device):
        from norse.torch.functional.leaky_integrator import LIState

        return LIState(*(torch.broadcast_to(torch.as_tensor(
            np.array(values[name]), dtype=dtype, device=device), shape).clone()
            for name in LIState._fields))

    def step(self, current, state, p, dt, conductance, conductance_current, since=None):
        from norse.torch.functional.leaky_integrator import li_feed_forward_step

        if conductance is not None:
            raise ValueError("a leaky integrator takes no conductance input")
        v, new = li_feed_forward_step(current, state, p, dt)
        return torch.zeros_like(v), new, None

    @property
    def state_names(self) -> Tuple[str, ...]:
        return self.spec.state_names


#: Population kinds by specification type (a new kind registers its dynamics here).
POPULATION_KINDS = {HHSpec: _HHDynamics, LISpec: _LIDynamics}


def dynamics_for(population, dt: float):
    """The torch dynamics of a :class:`~hh_plugin.network.Population` (``dt`` in ms)."""
    for kind, dynamics in POPULATION_KINDS.items():
        if isinstance(population.spec, kind):
            return dynamics(population.spec, population.refractory_steps(dt))
    raise TypeError(f"no torch dynamics for population specification "
                    f"{type(population.spec).__name__}")


class NetworkModule(torch.nn.Module):
    r"""A network of the specification as a trainable module.

    Arguments:
        spec: the :class:`~hh_plugin.network.NetworkSpec`.
        dtype: ``torch.float32`` (default) or ``torch.float64`` for the weights and states.
        device: where parameters and buffers live (``.to(...)`` moves them later).

    ``forward(currents=None, steps=None, state=None, record=(), batch_shape=None)``:

    - ``currents``: ``{population: (T, *batch, N) tensor}`` in uA, added to the
      specification's current inputs (for example an encoder's output);
    - ``steps``: number of steps (default: ``T`` of the currents);
    - ``state``: a :class:`NetworkState` to continue from (default: the specification's
      initial state at step 0);
    - ``record``: names of state variables to record for every population that has them
      (``'V'``, gates, synaptic variables such as ``'g_e'``): only those traces are
      stored; a name no population has is refused (``ValueError``);
    - ``batch_shape``: batch dimensions when no currents are given.

    - ``path``: overrides the module's ``path`` for this call;
    - ``spike_dtype``: dtype of the returned spikes (default: the states'; ``torch.uint8``
      saves memory on long runs; the spikes then carry no gradient).

    Returns a :class:`NetworkOutput`. Parameters: ``weights[<projection name>]``, the
    ``(target, source)`` matrix of a dense projection or the synapse values of a sparse one.

    Paths (all give the same spikes; states agree to round-off):

    - ``'naive'``: the Python loop over populations and steps with
      :func:`~hh_plugin.torch.functional.hh.hh_step` (any device, autograd);
    - ``'fused'``: the whole loop in one generated C++ function with event-driven spike
      delivery (:mod:`.fused`): CPU, float32/float64; every synapse model (generated from
      its definition), Tsodyks-Markram plasticity and STDP (updated in the forward pass);
      not leaky-integrator populations or methods other than exponential Euler: such a
      network runs on ``'naive'`` (``'auto'`` chooses it, ``'fused'`` raises
      ``PathUnavailable`` naming the reason). With gradients (:mod:`.fused_backward`): the
      backward in generated C++, to the currents, initial states, weights, trainable
      neuron parameters and the receptors' constants and parameters (so to
      :meth:`synapse_parameters`); for HH populations (any reset, refractory periods)
      and spike-driven receptors (pulse, exponential, biexponential, alpha, NMDA),
      static, Tsodyks-Markram or STDP/plasticity-rule projections (a spike transmits the
      plastic weight of its arrival step; the rule's updates are not differentiated and
      the weight parameter of such a projection gets no gradient, as on ``'naive'``),
      graded synapses without a voltage-dependent factor (Wang-Buzsaki); refused by
      name: gradients to a graded synapse's parameters, graded synapses with a factor,
      and a state whose ``plasticity`` tensors require grad;
    - ``'auto'`` (default): ``'fused'`` when the tensors are on the CPU, a compiler is
      found and either no gradient is needed (``torch.no_grad()`` or nothing requires
      grad) or the fused backward covers the network, else ``'naive'`` (also, with a
      warning, when the kernel cannot be built, or another process's build of it takes
      longer than ``$HH_PLUGIN_BUILD_TIMEOUT`` seconds).
    """

    def __init__(self, spec: NetworkSpec, dtype: torch.dtype = torch.float32, device=None,
                 path: str = "auto"):
        super().__init__()
        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}; choose one of {PATHS}")
        self.path = path
        if not isinstance(spec, NetworkSpec):
            raise TypeError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.spec = spec
        # the dtype and device of a network without projections (no weight to ask)
        self.register_buffer("_empty_reference", torch.zeros((), dtype=dtype, device=device),
                             persistent=False)
        self.dt = spec.dt * 1e-3  # seconds, as Norse
        self.projections = torch.nn.ModuleDict({
            proj.name: ProjectionOperator(spec.connections[proj.name], dtype, device)
            for proj in spec.projections})
        self._dynamics = {name: dynamics_for(pop, spec.dt)
                          for name, pop in spec.populations.items()}
        self._receptors: Dict[str, Dict[str, ReceptorNumerics]] = {}
        for pop, receptors in spec.receptors.items():
            self._receptors[pop] = {}
            for syn in receptors.values():
                self._receptors[pop][syn.receptor] = ReceptorNumerics(syn, spec.dt)
        self._history_length = {name: spec.max_delay(name)
                                for name in list(spec.populations) + list(spec.sources)}
        self._incoming = {pop: spec.incoming(pop) for pop in spec.populations}
        self._raster_cache: Dict = {}

    def synapse_parameters(self, population: str, receptor: str) -> Dict[str, torch.Tensor]:
        """The parameters of a receptor of a population as float64 leaf tensors
        (``{'tau': tensor(5.), 'E_rev': tensor(0.)}``), not module parameters:
        call ``.requires_grad_()`` on those to differentiate with respect to, and the
        naive path computes the receptor's coefficients from them with torch operations
        (gradients w.r.t. time constants and reversal potentials). Changing their values
        does not change the specification."""
        try:
            return self._receptors[population][receptor].parameters
        except KeyError:
            raise KeyError(f"population {population!r} has no receptor {receptor!r}") from None

    @property
    def weights(self) -> Dict[str, torch.nn.Parameter]:
        """``{projection name: weight parameter}``."""
        return {name: op.weight for name, op in self.projections.items()}

    def _reference(self) -> torch.Tensor:
        for p in self.parameters():
            return p
        return self._empty_reference

    # ----------------------------------------------------------------- state
    def initial_state(self, batch_shape: Sequence[int] = (), dtype=None, device=None
                      ) -> NetworkState:
        """The specification's initial state, broadcast to ``(*batch_shape, N)``."""
        ref = self._reference()
        dtype = dtype or ref.dtype
        device = device or ref.device
        batch_shape = tuple(batch_shape)
        neurons, synapses = {}, {}
        for name, pop in self.spec.populations.items():
            values = self.spec.initial_state(name)
            shape = batch_shape + (pop.size,)
            neurons[name] = self._dynamics[name].initial_state(values, shape, dtype, device)
            synapses[name] = {
                var: torch.broadcast_to(torch.as_tensor(
                    np.array(values[var]), dtype=dtype, device=device), shape).clone()
                for syn in self.spec.receptors[name].values() for var in syn.state_variables}
            for syn in self.spec.presynaptic[name].values():
                for var in syn.presynaptic_variables:
                    synapses[name][var] = torch.broadcast_to(torch.as_tensor(
                        np.array(values[var]), dtype=dtype, device=device), shape).clone()
        since = {name: torch.full(batch_shape + (pop.size,), float(dyn.refractory_steps),
                                  dtype=dtype, device=device)
                 for (name, pop), dyn in zip(self.spec.populations.items(),
                                             self._dynamics.values())
                 if dyn.refractory_steps is not None}
        short_term = {}
        for proj in self.spec.projections:
            if proj.short_term is not None:
                n_pre = self.spec.size(proj.source)
                short_term[proj.name] = {
                    "u": torch.full(batch_shape + (n_pre,), proj.short_term.U, dtype=dtype,
                                    device=device),
                    "x": torch.ones(batch_shape + (n_pre,), dtype=dtype, device=device)}
        plasticity = {}
        for proj in self.spec.projections:
            if proj.stdp is not None:
                if batch_shape:
                    raise ValueError(f"projection {proj.name!r} has STDP: its weights are "
                                     f"one set, so the network runs without batch dimensions")
                op = self.projections[proj.name]
                table = {"w": op.weight.detach().to(dtype=dtype, device=device).clone()}
                for trace in proj.stdp.model.pre_trace_names:
                    table[trace] = torch.zeros(op.n_pre, dtype=dtype, device=device)
                for trace in proj.stdp.model.post_trace_names:
                    table[trace] = torch.zeros(op.n_post, dtype=dtype, device=device)
                plasticity[proj.name] = table
        return NetworkState(neurons, synapses, {name: [] for name in self._history_length}, 0,
                            since, short_term, plasticity)

    def _source_rasters(self, start: int, steps: int, dtype, device) -> Dict[str, torch.Tensor]:
        out = {}
        for name, source in self.spec.sources.items():
            key = (name, start, steps)
            raster = self._raster_cache.get(key)
            if raster is None:
                if len(self._raster_cache) >= len(self.spec.sources):
                    self._raster_cache.clear()
                raster = source.window(start, steps, self.spec.dt)
                self._raster_cache[key] = raster
            out[name] = torch.as_tensor(raster, dtype=dtype, device=device)
        return out

    def _external(self, start: int, steps: int, currents, dtype, device):
        out = {}
        for name in self.spec.populations:
            table = self.spec.current_table(name, start + steps)
            total = None if table is None else torch.as_tensor(
                np.ascontiguousarray(table[start:]), dtype=dtype, device=device)
            given = currents.get(name)
            if given is not None:
                total = given if total is None else given + total.reshape(
                    (steps,) + (1,) * (given.ndim - 2) + (total.shape[-1],))
            out[name] = total
        return out

    def _check_currents(self, currents, steps):
        unknown = set(currents) - set(self.spec.populations)
        if unknown:
            raise ValueError(f"currents for unknown population(s) {sorted(unknown)}; "
                             f"populations: {list(self.spec.populations)}")
        batch = None
        for name, tensor in currents.items():
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                raise TypeError(f"current of {name!r} must be a floating-point tensor (uA)")
            n = self.spec.populations[name].size
            if tensor.ndim < 2 or tensor.shape[-1] != n:
                raise ValueError(f"current of {name!r} of shape {tuple(tensor.shape)}: "
                                 f"expected (T, *batch, {n})")
            if tensor.numel() and not _tracing():
                finite_peak(tensor, f"current of {name!r}")
            if steps is not None and tensor.shape[0] != steps:
                raise ValueError(f"current of {name!r} has {tensor.shape[0]} steps, "
                                 f"expected {steps}")
            steps = tensor.shape[0]
            shape = tuple(tensor.shape[1:-1])
            if batch is not None and shape != batch:
                raise ValueError(f"currents have different batch shapes {batch} and {shape}")
            batch = shape
        return steps, batch

    # ----------------------------------------------------------------- forward
    def forward(self, currents: Optional[Mapping[str, torch.Tensor]] = None,
                steps: Optional[int] = None, state: Optional[NetworkState] = None,
                record: Sequence[str] = (), batch_shape: Optional[Sequence[int]] = None,
                path: Optional[str] = None, spike_dtype: Optional[torch.dtype] = None
                ) -> NetworkOutput:
        currents = dict(currents or {})
        steps, batch = self._check_currents(currents, steps)
        if steps is None:
            raise ValueError("give steps= or currents with a time dimension")
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        steps = int(steps)
        ref = self._reference()
        dtype, device = ref.dtype, ref.device
        if batch is None:
            batch = tuple(batch_shape or ())
        elif batch_shape is not None and tuple(batch_shape) != batch:
            raise ValueError(f"batch_shape {tuple(batch_shape)} does not match the currents' "
                             f"{batch}")
        currents = {k: v.to(dtype=dtype, device=device) for k, v in currents.items()}
        if state is None:
            state = self.initial_state(batch, dtype, device)
        elif not isinstance(state, NetworkState):
            raise TypeError(f"state must be a NetworkState, got {type(state).__name__}")
        record = self._record_names(record)
        requested = self.path if path is None else path
        path = self._resolve_path(requested, currents, state, device)
        out = None
        if path == "fused":
            try:
                out = self._run_fused(steps, currents, state, record, batch,
                                      self._needs_grad(currents, state))
            except PathUnavailable as exc:  # the kernel could not be built or loaded
                if requested == "fused":
                    raise
                warnings.warn(f"hh_plugin: the fused network kernel is unavailable ({exc}); "
                              f"falling back to the naive path (the step loop)",
                              RuntimeWarning, stacklevel=2)
                path = "naive"
        if out is None:
            out = self._run_naive(steps, currents, state, record, dtype, device)
        if spike_dtype is not None:
            out.spikes = {k: v.detach().to(spike_dtype) for k, v in out.spikes.items()}
        elif path == "fused":
            out.spikes = {k: v.to(dtype) for k, v in out.spikes.items()}
        return out

    def _record_names(self, record) -> Tuple[str, ...]:
        """``record`` as a tuple of names (one name may be given as a string); a name that
        no population has is refused, naming the variables there are."""
        record = (record,) if isinstance(record, str) else tuple(record)
        known = self.spec.variables()
        for var in record:
            if not isinstance(var, str) or var not in known:
                raise ValueError(f"record: unknown variable {var!r}; the populations have "
                                 f"{', '.join(known)}")
        return record

    def _needs_grad(self, currents, state) -> bool:
        if not torch.is_grad_enabled():
            return False
        tensors = list(self.parameters()) + list(currents.values())
        for neuron in state.neurons.values():
            tensors += list(neuron)
        for table in list(state.synapses.values()) + list(state.plasticity.values()):
            tensors += list(table.values())
        for receptors in self._receptors.values():
            for numerics in receptors.values():
                tensors += list(numerics.parameters.values())
        for dyn in self._dynamics.values():  # neuron parameters a user made trainable
            for p in dyn._cache.values():
                tensors += [v for v in p if isinstance(v, torch.Tensor)]
        return any(t.requires_grad for t in tensors)

    def _resolve_path(self, path, currents, state, device) -> str:
        from ..fused.cpp import compiler_available

        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}; choose one of {PATHS}")
        if path == "naive":
            return path
        from .fused_backward import gradient_refusal

        reason = None
        if torch.device(device).type != "cpu":
            reason = f"the fused network path runs on the CPU, the module is on {device}"
        elif any(not pop.spikes for pop in self.spec.populations.values()):
            reason = "the fused network path has no leaky-integrator populations"
        elif any(pop.spec.method != DEFAULT_METHOD for pop in self.spec.populations.values()):
            methods = sorted({pop.spec.method for pop in self.spec.populations.values()}
                             - {DEFAULT_METHOD})
            reason = (f"the fused network kernel integrates with exponential Euler only; "
                      f"populations with method {methods} run on path='naive'")
        elif self._needs_grad(currents, state):
            reason = gradient_refusal(self, state)
        if reason is None:
            reason = compiler_available()
        if reason is None:
            return "fused"
        if path == "fused":
            raise PathUnavailable(reason)
        return "naive"

    def _run_fused(self, steps, currents, state: NetworkState, record, batch, grad=False):
        from .fused import run_fused

        size = int(np.prod(batch)) if batch else 1

        def element(t, b, n):
            return t.reshape(size, n)[b] if t.ndim > 1 else t

        results = []
        for b in range(size):
            sub_currents = {k: v.reshape(steps, size, v.shape[-1])[:, b] if batch else v
                            for k, v in currents.items()}
            if batch:
                sub = NetworkState(
                    {k: type(v)(*(element(t, b, t.shape[-1]) for t in v))
                     for k, v in state.neurons.items()},
                    {k: {n: element(t, b, t.shape[-1]) for n, t in d.items()}
                     for k, d in state.synapses.items()},
                    {k: [element(t, b, t.shape[-1]) for t in v] for k, v in state.history.items()},
                    state.step,
                    {k: element(t, b, t.shape[-1]) for k, t in state.since_spike.items()},
                    {k: {n: element(t, b, t.shape[-1]) for n, t in d.items()}
                     for k, d in state.short_term.items()},
                    state.plasticity)
            else:
                sub = state
            results.append(run_fused(self, steps, sub_currents, sub, record, grad))
        if not batch:
            spikes, final, traces = results[0]
            return NetworkOutput(spikes, final, traces)

        def join(tensors, time_major):
            stacked = torch.stack(tensors, dim=1 if time_major else 0)
            shape = stacked.shape
            if time_major:
                return stacked.reshape((shape[0],) + tuple(batch) + shape[2:])
            return stacked.reshape(tuple(batch) + shape[1:])

        spikes = {k: join([r[0][k] for r in results], True) for k in results[0][0]}
        traces = {k: {n: join([r[2][k][n] for r in results], True) for n in d}
                  for k, d in results[0][2].items()}
        finals = [r[1] for r in results]
        f0 = finals[0]
        final = NetworkState(
            {k: type(v)(*(join([getattr(f.neurons[k], field) for f in finals], False)
                          for field in v._fields)) for k, v in f0.neurons.items()},
            {k: {n: join([f.synapses[k][n] for f in finals], False) for n in d}
             for k, d in f0.synapses.items()},
            {k: [join([f.history[k][i] for f in finals], False) if k in self.spec.populations
                 else f0.history[k][i] for i in range(len(f0.history[k]))]
             for k in f0.history},
            f0.step,
            {k: join([f.since_spike[k] for f in finals], False) for k in f0.since_spike},
            {k: {n: join([f.short_term[k][n] for f in finals], False) for n in d}
             for k, d in f0.short_term.items()},
            f0.plasticity)
        return NetworkOutput(spikes, final, traces)

    @staticmethod
    def _plasticity_event(op, rule, pl, fired, key: str) -> None:
        r"""The statements of ``rule`` (a :class:`~hh_plugin.network.synapses.Plasticity`)
        for spikes ``fired``: ``key='on_pre'``, presynaptic spikes arriving (``(n_pre,)``),
        ``'on_post'``, the target's spikes (``(n_post,)``). A trace statement adds its
        increment to the trace of every spiking neuron; a weight statement sets
        :math:`w \leftarrow \operatorname{clip}(w + f, w_{lo}, w_{hi})` on their synapses,
        :math:`f` evaluated from the traces as they are at that statement."""
        model = rule.model
        own = model.pre_trace_names if key == "on_pre" else model.post_trace_names
        lo, hi = rule.bounds()
        for k, (index, increment) in enumerate(rule.statements(key)):
            if index is not None:
                pl[own[index]] = pl[own[index]] + increment * fired
                continue
            w = pl["w"]
            if op.dense:  # (n_post, n_pre)
                pre_values = [pl[n].unsqueeze(0).expand_as(w) for n in model.pre_trace_names]
                post_values = [pl[n].unsqueeze(1).expand_as(w) for n in model.post_trace_names]
                mask = (fired > 0).unsqueeze(0 if key == "on_pre" else 1).expand_as(w)
            else:
                pre, post = op.synapse_indices()
                pre_values = [pl[n].index_select(0, pre) for n in model.pre_trace_names]
                post_values = [pl[n].index_select(0, post) for n in model.post_trace_names]
                mask = fired.index_select(0, pre if key == "on_pre" else post) > 0
            change = model.weight_function(key, k, "torch")(*pre_values, *post_values, w,
                                                             *rule.parameter_values)
            if not torch.is_tensor(change):
                change = torch.full_like(w, float(change))
            pl["w"] = torch.where(mask, torch.clamp(w + change, lo, hi), w)

    @classmethod
    def _stdp_pre(cls, op, rule, pl, fired) -> None:
        """Presynaptic spikes arriving (``fired``, ``(n_pre,)``): the rule's ``on_pre``
        (STDP: ``a_pre += d_pre``, ``w = clip(w + a_post, 0, w_max)`` on their synapses)."""
        cls._plasticity_event(op, rule, pl, fired, "on_pre")

    @classmethod
    def _stdp_post(cls, op, rule, pl, fired, dt) -> None:
        """The traces decay exactly over the step, then the target's spikes (``fired``)
        run the rule's ``on_post`` (STDP: ``a_post += d_post``,
        ``w = clip(w + a_pre, 0, w_max)`` on their synapses)."""
        model = rule.model
        for name, factor in zip(model.pre_trace_names + model.post_trace_names,
                                rule.trace_decay(dt)):
            pl[name] = pl[name] * factor
        cls._plasticity_event(op, rule, pl, fired, "on_post")

    def _run_naive(self, steps, currents, state: NetworkState, record, dtype, device):
        spec = self.spec
        start = state.step
        rasters = self._source_rasters(start, steps, dtype, device)
        external = self._external(start, steps, currents, dtype, device)
        params = {name: self._dynamics[name].parameters(dtype, device)
                  for name in spec.populations}
        neurons = dict(state.neurons)
        synapses = {k: dict(v) for k, v in state.synapses.items()}
        history = {k: list(v) for k, v in state.history.items()}
        since = dict(state.since_spike)
        short_term = {k: dict(v) for k, v in state.short_term.items()}
        plasticity = {k: dict(v) for k, v in state.plasticity.items()}
        stdp_in = {name: [p for p in spec.incoming(name) if p.stdp is not None]
                   for name in spec.populations}
        stp_decay = {proj.name: proj.short_term.decay(spec.dt) for proj in spec.projections
                     if proj.short_term is not None}
        spikes: Dict[str, List[torch.Tensor]] = {name: [] for name in spec.populations}
        traces: Dict[str, Dict[str, List[torch.Tensor]]] = {name: {} for name in spec.populations}
        for name in spec.populations:
            names = set(self._dynamics[name].state_names) | set(synapses[name])
            for var in record:
                if var in names:
                    traces[name][var] = []
        dt = self.dt
        track = torch.is_grad_enabled()
        numerics = {name: list(self._receptors[name].values()) for name in spec.populations}
        constants = {name: [r.constants(dtype, device) for r in numerics[name]]
                     for name in spec.populations}
        receptor_of = {proj.name: list(spec.receptors[proj.target]).index(
            proj.synapse.receptor) for proj in spec.projections}
        graded_in = {(proj.target, proj.synapse.receptor): proj for proj in spec.projections
                     if proj.synapse.model.is_graded}
        graded_out = {name: [ReceptorNumerics(syn, spec.dt)
                             for syn in spec.presynaptic[name].values()]
                      for name in spec.populations}
        for name, items in graded_out.items():  # the same parameter tensors as the target's
            for item in items:
                for target, receptors in self._receptors.items():
                    twin = receptors.get(item.synapse.receptor)
                    if twin is not None and twin.synapse == item.synapse:
                        item.parameters = twin.parameters
        for k in range(steps):
            now: Dict[str, torch.Tensor] = {src: rasters[src][k] for src in spec.sources}
            # graded synapses read the presynaptic states and V of the step's start
            pre_start = {(name, item.synapse.receptor): (
                [synapses[name][v] for v in item.presynaptic], neurons[name].V)
                     for name, items in graded_out.items() for item in items}
            for name in spec.order:
                x = synapses[name]
                for proj in self._incoming[name]:
                    if proj.synapse.model.is_graded:
                        continue
                    op = self.projections[proj.name]
                    r = receptor_of[proj.name]
                    receptor, inc = numerics[name][r], constants[name][r][1]
                    var = receptor.variables[0]
                    for d in op.delays:
                        if d == 0:
                            z = now[proj.source]
                        else:
                            past = history[proj.source]
                            if len(past) >= d:
                                z = past[-d]
                            elif track and op.weight.requires_grad:
                                # no spike is due yet; applying the weights to no spikes
                                # adds exactly 0 but puts them in the graph, so that every
                                # weight gets a gradient (DistributedDataParallel needs one
                                # from every parameter in every backward pass)
                                z = x[var].new_zeros(x[var].shape[:-1] + (op.n_pre,))
                            else:
                                continue
                        stp, spikes_in = proj.short_term, z
                        if stp is not None:  # Tsodyks-Markram: release r = u x, then
                            st = short_term[proj.name]  # depress x and facilitate u
                            fired = z.detach()  # the state is not differentiated
                            r = st["u"] * st["x"]
                            st["x"] = st["x"] - fired * r
                            st["u"] = st["u"] + fired * (stp.U * (1.0 - st["u"]))
                            z = z * r
                        if proj.stdp is not None:  # transmit, then the pre event
                            pl = plasticity[proj.name]
                            receptor.add_spikes(x, op.apply(z, d, pl["w"]), inc)
                            self._stdp_pre(op, proj.stdp, pl, spikes_in.detach())
                            continue
                        receptor.add_spikes(x, op.apply(z, d), inc)
                current = external[name][k] if external[name] is not None else None
                conductance = conductance_current = None
                for receptor, (P, inc, out, E, values) in zip(numerics[name], constants[name]):
                    if receptor.model.is_graded:
                        proj = graded_in[(name, receptor.synapse.receptor)]
                        states = pre_start[(proj.source, receptor.synapse.receptor)][0]
                        value = self.projections[proj.name].apply(
                            receptor.transmit(states, values), 1)
                    else:
                        value = receptor.output(x, out)
                    if E is not None:
                        factor = receptor.factor(neurons[name].V, values)
                        if factor is not None:
                            value = value * factor
                        conductance = value if conductance is None else conductance + value
                        term = value * E
                        conductance_current = (term if conductance_current is None
                                               else conductance_current + term)
                    else:
                        current = value if current is None else current + value
                if current is None:
                    current = torch.zeros((), dtype=dtype, device=device)
                z, neurons[name], since_new = self._dynamics[name].step(
                    current, neurons[name], params[name], dt, conductance, conductance_current,
                    since.get(name))
                if since_new is not None:
                    since[name] = since_new
                for receptor, (P, *_) in zip(numerics[name], constants[name]):
                    receptor.advance(x, P)
                for item in graded_out[name]:
                    states, V0 = pre_start[(name, item.synapse.receptor)]
                    values = item.constants(dtype, device)[4]
                    for var, value in zip(item.presynaptic,
                                          item.advance_presynaptic(V0, states, values)):
                        x[var] = value
                for proj in stdp_in[name]:  # traces to the step's end, then post events
                    self._stdp_post(self.projections[proj.name], proj.stdp,
                                    plasticity[proj.name], z.detach(), spec.dt)
                now[name] = z
                spikes[name].append(z)
                for var, out in traces[name].items():
                    out.append(x[var] if var in x else getattr(neurons[name], var))
            for proj_name, (ef, ed) in stp_decay.items():  # exact relaxation over the step
                st = short_term[proj_name]
                U = spec.projection(proj_name).short_term.U
                st["u"] = U + (st["u"] - U) * ef
                st["x"] = 1.0 + (st["x"] - 1.0) * ed
            for src, length in self._history_length.items():
                if length:
                    past = history[src]
                    past.append(now[src])
                    if len(past) > length:
                        del past[0]
        final = NetworkState(neurons, synapses, history, start + steps, since, short_term,
                             plasticity)
        return NetworkOutput({k: torch.stack(v) for k, v in spikes.items()}, final,
                             {k: {n: torch.stack(t) for n, t in d.items()}
                              for k, d in traces.items()})
