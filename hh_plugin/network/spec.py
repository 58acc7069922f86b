r"""The network specification: populations, projections, inputs and the step schedule.

A :class:`NetworkSpec` is backend-independent and validated once; the Brian2 builder
(:func:`hh_plugin.brian2.network.build_network`) and the PyTorch module
(:class:`hh_plugin.torch.network.NetworkModule`) are both generated from it, from the same
expanded synapse lists (:mod:`.connectivity`), initial values and input rasters.

**Schedule and delays.** Time advances in steps of ``dt`` (ms). Step :math:`k` takes
every population from :math:`t_k = k\Delta t` to :math:`t_{k+1}`; a neuron *spikes in
step* :math:`k` when that step takes it across threshold (rising edge). A projection has
an integer delay :math:`d \ge 0` (steps, one value or one per synapse):

    the spike of step :math:`k` is added to the target's synaptic variable so that the
    target's update in step :math:`k + d` is the first one that sees it (with the full
    weight, not yet decayed).

- :math:`d = 0` is the semantics of a ``torch.nn.Linear`` between two Norse layers: the
  target's step :math:`k` uses the source's spike of the same step :math:`k`. The source
  must then be updated before the target within a step, so the zero-delay projections
  between populations must not form a loop; populations are updated in an order that puts
  every zero-delay source first (:attr:`NetworkSpec.order`).
- :math:`d = 1` is Brian2's default (``delay=0*ms`` with its standard schedule) and Norse's
  recurrent weights (:math:`W_{rec} z_{t-1}`). In Brian2, :math:`d \ge 1` is
  ``delay = (d - 1)*dt``.

Within step :math:`k`, population by population in :attr:`NetworkSpec.order`:

1. spikes due now are added to the synaptic states (``x += c*w``, the model's
   ``on_pre``);
2. the neuron state is updated from the old state, with the synaptic currents and
   conductances of step start (exponential Euler; a voltage-dependent factor of a
   conductance at the step's start ``V``), and the synaptic states advance by their
   exact propagator (``x *= exp(-dt/tau)`` for one decaying state; a pulse is cleared);
3. spikes of step :math:`k` are detected (and reset, if the model resets).

See ``docs/network.md`` for the timeline figure and the Brian2 slots this maps to.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..model.initial import DEFAULT, initial_state
from ..model.spec import HHSpec
from .connectivity import Connection, Connector, Dense, Sparse, as_connector
from .inputs import CurrentInput, PoissonSource, SpikeSource, SpikeTrains
from .leaky_integrator import KIND as LI_KIND
from .leaky_integrator import LISpec
from .synapses import Plasticity, Synapse, TsodyksMarkram
from .units import as_array, as_count, as_scalar, check_name


class Population:
    r"""A population: ``name``, ``size`` neurons of ``spec`` (an :class:`~hh_plugin.HHSpec`
    of any model definition, per-neuron parameters allowed) and its initial state.

    ``initial``: ``{'V': ..., <gate>: ..., <synaptic variable>: ...}``. ``V`` is a
    number or array (mV), ``'default'`` (the model's default initial state, the default)
    or ``'uniform'`` (the model's range); draws use ``numpy.random.default_rng(seed)``
    (:func:`hh_plugin.model.initial_state`). Gates default to the model's defaults or
    their steady state at ``V``; synaptic variables (``g_<receptor>`` in mS,
    ``I_<receptor>`` in uA) default to 0.

    ``refractory``: ``None`` (default) for the plugin's spike rule (one spike per upward
    crossing of the threshold); or a period in ms for Brian2's absolute refractoriness as
    Brian2 scripts write it (``threshold='V > V_th', refractory=3*ms``): a neuron spikes
    in a step that ends above threshold if at least :math:`R` steps have passed since its
    last spike, :math:`R = \lfloor \text{refractory}/\Delta t + 10^{-3}\rfloor` (Brian2's
    ``timestep``). Not with ``V_reset``.
    """

    def __init__(self, name: str, size: int, spec: Optional[HHSpec] = None,
                 initial: Optional[Mapping] = None, seed: Optional[int] = None,
                 refractory=None):
        self.name = check_name(name, "population")
        self.size = as_count(size, f"size of population {name!r}")
        spec = HHSpec() if spec is None else spec
        if not isinstance(spec, (HHSpec, LISpec)):
            raise TypeError(f"population {name!r}: spec must be an HHSpec or an LISpec (a "
                            f"leaky integrator), got {type(spec).__name__}")
        if isinstance(spec, HHSpec):
            spec.check_size(self.size)
        self.spec = spec
        self.refractory = None if refractory is None else as_scalar(
            refractory, "ms", f"refractory period of {name!r}")
        if self.refractory is not None:
            if not self.refractory >= 0:
                raise ValueError(f"refractory period of {name!r} must be >= 0 ms")
            if isinstance(spec, LISpec):
                raise ValueError(f"population {name!r}: a leaky integrator does not spike, "
                                 f"so it has no refractory period")
            if spec.V_reset is not None:
                raise ValueError(f"population {name!r}: a refractory period cannot be "
                                 f"combined with V_reset (the reset follows the plugin's "
                                 f"rising-edge spike)")
        self.seed = None if seed is None else as_count(seed, f"seed of {name!r}", 0)
        initial = dict(initial or {})
        model = spec.model
        neuron_keys = {"V", *model.gate_names, *model.state_names}
        self._neuron_initial = {k: v for k, v in initial.items() if k in neuron_keys}
        self._synaptic_initial = {}
        for key, value in initial.items():
            if key in neuron_keys:
                continue
            self._synaptic_initial[key] = value  # checked against receptors by NetworkSpec
        # validate the neuron part now
        self._neuron_state = self._compute_neuron_state()

    @property
    def model(self):
        return self.spec.model

    @property
    def spikes(self) -> bool:
        """Whether the population emits spikes (a leaky integrator does not)."""
        return not isinstance(self.spec, LISpec)

    def _compute_neuron_state(self) -> Dict[str, np.ndarray]:
        if isinstance(self.spec, LISpec):
            state = self.spec.initial_state(self.size, self._neuron_initial)
            for array in state.values():
                array.setflags(write=False)
            return state
        values = dict(self._neuron_initial)
        V = values.pop("V", DEFAULT)
        if not isinstance(V, str):
            V = as_array(V, "mV", f"initial V of {self.name!r}", shape=(self.size,))
        gates = {g: as_array(v, "1", f"initial {g} of {self.name!r}", shape=(self.size,))
                 for g, v in values.items()}
        state = initial_state(self.model, (self.size,), V=V, seed=self.seed,
                              parameters=self.spec.parameters, **gates)
        for array in state.values():
            array.setflags(write=False)
        return state

    def neuron_state(self) -> Dict[str, np.ndarray]:
        """Initial ``V`` (mV) and gates (a leaky integrator: ``v``, ``i``), float64
        ``(size,)`` arrays."""
        return dict(self._neuron_state)

    def synaptic_initial(self) -> Dict[str, object]:
        return dict(self._synaptic_initial)

    def refractory_steps(self, dt: float) -> Optional[int]:
        """The refractory period in steps of ``dt`` ms (``None``: rising-edge rule)."""
        if self.refractory is None:
            return None
        return int(np.floor(self.refractory / dt + 1e-3))

    def to_dict(self) -> Dict:
        return {"name": self.name, "size": self.size, "spec": self.spec.to_dict(),
                "refractory": self.refractory,
                "initial": {**{k: np.asarray(v) for k, v in self._neuron_state.items()},
                            **{k: np.asarray(v) for k, v in self._synaptic_initial.items()}}}

    def __repr__(self):
        return f"Population({self.name!r}, {self.size}, model={self.model.name!r})"


class Projection:
    """Synapses from ``source`` (a population or a spike source) to ``target`` (a
    population) through receptor ``synapse``, with ``connectivity`` (a connector of
    :mod:`.connectivity`, or a ``(target, source)`` weight matrix) and ``delay`` in steps
    (default 1; see the module docstring for the convention). ``short_term``: optional
    :class:`~.synapses.TsodyksMarkram` short-term plasticity of the projection (one delay
    value, a spike-driven synapse model). ``stdp``: optional spike-timing plasticity of
    its weights, an :class:`~.synapses.STDP` or any :class:`~.synapses.Plasticity` rule
    (a :class:`~.synapses.PlasticityModel` definition with values; one delay >= 1)."""

    def __init__(self, source: str, target: str, connectivity: Union[Connector, np.ndarray],
                 synapse: Synapse, delay=1, name: Optional[str] = None, short_term=None,
                 stdp=None):
        self.source = check_name(source, "source")
        self.target = check_name(target, "target")
        if not isinstance(synapse, Synapse):
            raise TypeError(f"synapse must be a Synapse (hh_plugin.network.synapses), got "
                            f"{type(synapse).__name__}")
        if short_term is not None:
            if not isinstance(short_term, TsodyksMarkram):
                raise TypeError(f"short_term must be a TsodyksMarkram, got "
                                f"{type(short_term).__name__}")
            if synapse.model.is_graded:
                raise ValueError(f"short_term plasticity acts on spikes; {synapse.model.name!r} "
                                 f"is graded")
        if stdp is not None:
            if not isinstance(stdp, Plasticity):
                raise TypeError(f"stdp must be an STDP or another Plasticity rule, got "
                                f"{type(stdp).__name__}")
            if synapse.model.is_graded:
                raise ValueError(f"{stdp.model.name} acts on spikes; "
                                 f"{synapse.model.name!r} is graded")
        self.short_term = short_term
        self.stdp = stdp
        self.synapse = synapse
        self.connectivity = as_connector(connectivity)
        self.delay = delay
        self.name = None if name is None else check_name(name, "projection")

    def __repr__(self):
        return (f"Projection({self.name!r}: {self.source} -> {self.target}, "
                f"{self.synapse.receptor})")


class NetworkSpec:
    """A validated network: populations, spike sources, projections, currents and ``dt``.

    Arguments:
        populations: :class:`Population` objects (names unique).
        projections: :class:`Projection` objects.
        inputs: :class:`~.inputs.CurrentInput` and spike sources
            (:class:`~.inputs.PoissonSource`, :class:`~.inputs.SpikeTrains`).
        dt: the step in ms (a number or a Brian2 quantity), at most each model's ``max_dt``.

    Derived (read-only): :attr:`connections` (the expanded synapses of each projection),
    :attr:`receptors` (per target population, its receptors in order of first use),
    :attr:`order` (the population update order within a step).
    """

    def __init__(self, populations: Sequence[Population], projections: Iterable[Projection] = (),
                 inputs: Iterable = (), dt=0.01):
        self.dt = as_scalar(dt, "ms", "dt")
        if not self.dt > 0:
            raise ValueError(f"dt must be > 0 ms, got {self.dt}")
        pops: "OrderedDict[str, Population]" = OrderedDict()
        for pop in populations:
            if not isinstance(pop, Population):
                raise TypeError(f"populations must be Population objects, got "
                                f"{type(pop).__name__}")
            if pop.name in pops:
                raise ValueError(f"two populations are named {pop.name!r}")
            method = getattr(pop.spec, "method", "exponential_euler")
            max_dt = (pop.model.max_step(method) if hasattr(pop.model, "max_step")
                      else getattr(pop.model, "max_dt", None))
            if max_dt is not None and self.dt > max_dt * (1 + 1e-12):
                raise ValueError(f"dt = {self.dt} ms is longer than model "
                                 f"{pop.model.name!r}'s max_dt = {max_dt} ms (its {method} "
                                 f"step is not accurate there)")
            pops[pop.name] = pop
        if not pops:
            raise ValueError("a network needs at least one population")
        sources: "OrderedDict[str, SpikeSource]" = OrderedDict()
        currents: List[CurrentInput] = []
        for item in inputs:
            if isinstance(item, CurrentInput):
                if item.target not in pops:
                    raise ValueError(f"current input into unknown population {item.target!r}")
                item = item.on_area(getattr(pops[item.target].spec, "area", None))
                item.check(pops[item.target].size)
                currents.append(item)
            elif isinstance(item, SpikeSource):
                if item.name in pops or item.name in sources:
                    raise ValueError(f"the name {item.name!r} is used twice")
                sources[item.name] = item
            else:
                raise TypeError(f"inputs must be CurrentInput or spike sources, got "
                                f"{type(item).__name__}")
        self.populations = pops
        self.sources = sources
        self.currents = tuple(currents)

        projections = list(projections)
        names = set()
        self.projections: Tuple[Projection, ...] = ()
        out = []
        for proj in projections:
            if not isinstance(proj, Projection):
                raise TypeError(f"projections must be Projection objects, got "
                                f"{type(proj).__name__}")
            if proj.target not in pops:
                raise ValueError(f"projection target {proj.target!r} is not a population"
                                 + (" (spike sources cannot be targets)"
                                    if proj.target in sources else ""))
            if proj.source not in pops and proj.source not in sources:
                raise ValueError(f"projection source {proj.source!r} is neither a population "
                                 f"nor a spike source")
            if proj.source in pops and not pops[proj.source].spikes:
                raise ValueError(f"projection from {proj.source!r}: a leaky integrator "
                                 f"emits no spikes; it can only be a target")
            if not pops[proj.target].spikes and proj.synapse.model.is_conductance:
                raise ValueError(f"projection onto {proj.target!r}: a leaky integrator "
                                 f"takes current synapses only (its v is not a membrane "
                                 f"potential in mV), not {proj.synapse.model.name!r}")
            name = proj.name or f"{proj.source}_to_{proj.target}_{proj.synapse.receptor}"
            base, n = name, 2
            while name in names:
                if proj.name is not None:
                    raise ValueError(f"two projections are named {name!r}")
                name, n = f"{base}_{n}", n + 1
            names.add(name)
            proj.name = name if proj.name is None else proj.name
            out.append(proj)
        self.projections = tuple(out)

        # receptors per target; one definition per receptor name
        receptors: Dict[str, "OrderedDict[str, Synapse]"] = {p: OrderedDict() for p in pops}
        for proj in self.projections:
            table = receptors[proj.target]
            known = table.get(proj.synapse.receptor)
            if known is not None and known != proj.synapse:
                raise ValueError(f"receptor {proj.synapse.receptor!r} of population "
                                 f"{proj.target!r} is used with two definitions: {known} "
                                 f"and {proj.synapse}")
            table[proj.synapse.receptor] = proj.synapse
        self.receptors = receptors
        # graded synapses: their presynaptic states live on the source population
        presynaptic: Dict[str, "OrderedDict[str, Synapse]"] = {p: OrderedDict() for p in pops}
        graded_targets = set()
        for proj in self.projections:
            syn = proj.synapse
            if not syn.model.is_graded:
                continue
            if proj.source not in pops or not pops[proj.source].spikes:
                raise ValueError(f"projection {proj.name!r}: a graded synapse "
                                 f"({syn.model.name}) is driven by the presynaptic potential; "
                                 f"its source must be a population with one, not "
                                 f"{proj.source!r}")
            for end in (proj.source, proj.target):
                method = getattr(pops[end].spec, "method", "exponential_euler")
                if method != "exponential_euler":
                    raise ValueError(f"projection {proj.name!r}: graded synapses run with "
                                     f"exponential Euler only; population {end!r} uses "
                                     f"{method!r}")
            if (proj.target, syn.receptor) in graded_targets:
                raise ValueError(f"receptor {syn.receptor!r} of population {proj.target!r}: "
                                 f"one graded projection per receptor (give the other a "
                                 f"receptor of its own)")
            graded_targets.add((proj.target, syn.receptor))
            known = presynaptic[proj.source].get(syn.receptor)
            if known is not None and known != syn:
                raise ValueError(f"graded receptor {syn.receptor!r} leaving {proj.source!r} is "
                                 f"used with two definitions: {known} and {syn}")
            presynaptic[proj.source][syn.receptor] = syn
        self.presynaptic = presynaptic
        for pop in pops.values():
            model = pop.model
            taken = (set(model.state_names) | set(model.parameter_names) | {"I", "V_reset"}
                     | {f"g_{c.name}" for c in model.channels}
                     | {f"{r}_{g}" for g in model.gate_names for r in ("alpha", "beta")})
            used: Dict[str, str] = {}
            for syn in list(receptors[pop.name].values()) + list(presynaptic[pop.name].values()):
                names = ({*syn.presynaptic_variables,
                          *(f"{v}_start" for v in syn.presynaptic_variables)}
                         if syn.model.is_graded and syn in presynaptic[pop.name].values()
                         else set())
                if syn in receptors[pop.name].values():
                    names |= {syn.variable, *syn.state_variables}
                if syn.model.factor is not None:
                    names.add(f"factor_{syn.receptor}")
                for var in sorted(names):
                    if var in taken:
                        raise ValueError(f"receptor {syn.receptor!r} of population "
                                         f"{pop.name!r}: its variable {var!r} clashes with a "
                                         f"name of model {pop.model.name!r}")
                    if used.get(var, syn.receptor) != syn.receptor:
                        raise ValueError(f"receptors {used[var]!r} and {syn.receptor!r} of "
                                         f"population {pop.name!r} both have a variable "
                                         f"named {var!r}")
                    used[var] = syn.receptor
            known_vars = ({v for s in receptors[pop.name].values() for v in s.state_variables}
                          | {v for s in presynaptic[pop.name].values()
                             for v in s.presynaptic_variables})
            unknown = set(pop.synaptic_initial()) - known_vars
            if unknown:
                raise ValueError(f"initial values for {sorted(unknown)} of population "
                                 f"{pop.name!r}: neither V, a gate of {pop.model.name!r} nor "
                                 f"a synaptic variable of its receptors {sorted(known_vars)}")

        self.connections: Dict[str, Connection] = {}
        for proj in self.projections:
            n_pre = self.size(proj.source)
            n_post = pops[proj.target].size
            self.connections[proj.name] = proj.connectivity.expand(
                n_pre, n_post, proj.synapse.unit, proj.delay, f"projection {proj.name!r}")
            delay = np.asarray(self.connections[proj.name].delay)
            if proj.short_term is not None and delay.size and not np.all(delay == delay[0]):
                raise ValueError(f"projection {proj.name!r}: short-term plasticity keeps one "
                                 f"state per presynaptic neuron, so the projection's delay "
                                 f"must be one value")
            if proj.stdp is not None and delay.size and not (np.all(delay == delay[0])
                                                              and delay[0] >= 1):
                raise ValueError(f"projection {proj.name!r}: STDP keeps its traces per neuron "
                                 f"and orders pre- and postsynaptic events as Brian2's "
                                 f"synapses slot does, so the delay must be one value >= 1")
            if proj.stdp is not None and proj.target not in pops:
                raise ValueError(f"projection {proj.name!r}: STDP needs a target population")
            if proj.synapse.model.is_graded and delay.size and not np.all(delay == 1):
                raise ValueError(f"projection {proj.name!r}: a graded synapse transmits the "
                                 f"presynaptic state of the step's start (delay 1); other "
                                 f"delays are not supported")
        self.order = self._update_order()

    # ------------------------------------------------------------------ queries
    def size(self, name: str) -> int:
        """Number of neurons of a population or spike source."""
        if name in self.populations:
            return self.populations[name].size
        return self.sources[name].size

    def projection(self, name: str) -> Projection:
        for proj in self.projections:
            if proj.name == name:
                return proj
        raise KeyError(f"no projection named {name!r}")

    def incoming(self, target: str) -> Tuple[Projection, ...]:
        return tuple(p for p in self.projections if p.target == target)

    def max_delay(self, source: str) -> int:
        """Longest delay (steps) of the projections leaving ``source`` (0 if none)."""
        delays = [int(self.connections[p.name].delay.max()) for p in self.projections
                  if p.source == source and self.connections[p.name].size]
        return max(delays, default=0)

    def initial_state(self, population: str) -> Dict[str, np.ndarray]:
        """Initial values (float64 ``(size,)``) of ``V``, the gates and the receptors'
        variables of a population (mV, 1, mS or uA)."""
        pop = self.populations[population]
        state = pop.neuron_state()
        given = pop.synaptic_initial()
        for syn in self.receptors[population].values():
            for var in syn.state_variables:
                value = given.get(var, 0.0)
                array = as_array(value, syn.unit, f"initial {var} of {population!r}",
                                 shape=(pop.size,))
                state[var] = np.broadcast_to(array, (pop.size,))
        for syn in self.presynaptic[population].values():
            for var in syn.presynaptic_variables:  # dimensionless
                array = as_array(given.get(var, 0.0), "1", f"initial {var} of {population!r}",
                                 shape=(pop.size,))
                state[var] = np.broadcast_to(array, (pop.size,))
        return state

    def variables(self) -> Tuple[str, ...]:
        """Names of the variables some population has (``V``, gates, a leaky integrator's
        ``v``, ``i``, synaptic variables), in order of first appearance: what a run can
        record."""
        names: Dict[str, None] = {}
        for population in self.populations:
            for var in self.initial_state(population):
                names.setdefault(var, None)
        return tuple(names)

    def current_table(self, population: str, steps: int) -> Optional[np.ndarray]:
        """Summed external current (uA) ``(steps, size)`` of a population, or ``None``."""
        n = self.populations[population].size
        items = [c for c in self.currents if c.target == population]
        if not items:
            return None
        total = np.zeros((steps, n))
        for item in items:
            total = total + item.table(steps, n)
        return total

    def _update_order(self) -> Tuple[str, ...]:
        """Populations ordered so that every zero-delay source comes before its target."""
        names = list(self.populations)
        edges = {n: set() for n in names}
        for proj in self.projections:
            conn = self.connections[proj.name]
            if proj.source in self.populations and conn.size and int(conn.delay.min()) == 0:
                edges[proj.source].add(proj.target)
        indegree = {n: 0 for n in names}
        for src, targets in edges.items():
            for t in targets:
                indegree[t] += 1
        order: List[str] = []
        ready = [n for n in names if indegree[n] == 0]
        while ready:
            n = ready.pop(0)
            order.append(n)
            for t in sorted(edges[n], key=names.index):
                indegree[t] -= 1
                if indegree[t] == 0:
                    ready.append(t)
            ready.sort(key=names.index)
        if len(order) != len(names):
            loop = sorted(set(names) - set(order))
            raise ValueError(f"zero-delay projections form a loop through populations {loop}: "
                             f"a spike cannot reach the target in the step it is emitted "
                             f"when the target must also be updated first; give a projection "
                             f"of the loop a delay >= 1")
        return tuple(order)

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> Dict:
        """A lossless description with numpy arrays (expanded synapses; for files)."""
        projections = []
        for proj in self.projections:
            conn = self.connections[proj.name]
            entry = {"name": proj.name, "source": proj.source, "target": proj.target,
                     "synapse": proj.synapse.to_dict(), "dense": conn.dense,
                     "delay": np.asarray(conn.delay)}
            if proj.short_term is not None:
                entry["short_term"] = proj.short_term.to_dict()
            if proj.stdp is not None:
                entry["stdp"] = proj.stdp.to_dict()
            if conn.dense:
                entry["weight"] = np.asarray(conn.weight_matrix)
            else:
                entry.update(pre=np.asarray(conn.pre), post=np.asarray(conn.post),
                             weight=np.asarray(conn.weight))
            projections.append(entry)
        return {"dt": self.dt,
                "populations": [p.to_dict() for p in self.populations.values()],
                "projections": projections,
                "inputs": [c.to_dict() for c in self.currents]
                + [s.to_dict() for s in self.sources.values()]}

    @classmethod
    def from_dict(cls, data: Mapping) -> "NetworkSpec":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a mapping, got {type(data).__name__}")
        extra = set(data) - {"dt", "populations", "projections", "inputs"}
        if extra:
            raise ValueError(f"unknown key(s) in network specification: {sorted(extra)}")
        pops = []
        for p in data["populations"]:
            kind = p["spec"].get("kind") if isinstance(p["spec"], Mapping) else None
            pop_spec = (LISpec.from_dict(p["spec"]) if kind == LI_KIND
                        else HHSpec.from_dict(p["spec"]))
            pops.append(Population(p["name"], p["size"], pop_spec,
                                   initial=dict(p.get("initial", {})),
                                   refractory=p.get("refractory")))
        projections = []
        for e in data.get("projections", []):
            if not isinstance(e, Mapping):
                raise ValueError("a projection must be a mapping")
            extra = set(e) - {"name", "source", "target", "synapse", "dense", "delay",
                              "weight", "pre", "post", "short_term", "stdp"}
            if extra:
                raise ValueError(f"unknown key(s) in projection: {sorted(extra)}")
            delay = np.asarray(e["delay"]).reshape(-1)
            if delay.size and np.all(delay == delay[0]):
                delay = int(delay[0])
            conn = Dense(e["weight"]) if e["dense"] else Sparse(e["pre"], e["post"],
                                                                e["weight"])
            short_term, stdp = e.get("short_term"), e.get("stdp")
            projections.append(Projection(
                e["source"], e["target"], conn, Synapse.from_dict(e["synapse"]), delay,
                e["name"], None if short_term is None else TsodyksMarkram.from_dict(short_term),
                None if stdp is None else Plasticity.from_dict(stdp)))
        inputs = []
        for i in data.get("inputs", []):
            kind = i.get("type")
            if kind == "current":
                inputs.append(CurrentInput(i["target"], i["values"]))
            elif kind == "poisson":
                inputs.append(PoissonSource(i["name"], i["size"], i["rate"], i["seed"]))
            elif kind == "spikes":
                inputs.append(SpikeTrains(i["name"], i["size"], i["steps"], i["indices"]))
            else:
                raise ValueError(f"unknown input type {kind!r}")
        return cls(pops, projections, inputs, dt=data["dt"])

    def __repr__(self):
        return (f"NetworkSpec(dt={self.dt} ms, populations={list(self.populations)}, "
                f"sources={list(self.sources)}, {len(self.projections)} projections)")
