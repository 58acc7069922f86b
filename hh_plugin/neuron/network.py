r"""A :class:`~hh_plugin.network.NetworkSpec` in NEURON, spread over MPI ranks by global id.

**Cells and ranks.** Every neuron is a :class:`~.cell.HHCell` with a global id (gid):
the populations in the specification's order, neuron :math:`i` of a population at
offset :math:`o` has gid :math:`o + i`. Gid :math:`g` lives on rank :math:`g \bmod K`
of :math:`K` MPI processes (``ParallelContext``: ``set_gid2node``, ``cell``); a rank builds
only its own cells, their synapses and inputs. Spikes are recorded on every rank
(``spike_record``) and gathered on rank 0 (``py_gather``). With ``threads > 1`` each rank
spreads its cells over threads (``pc.nthread``).

**Projections.** Synapse :math:`k` of a projection (:mod:`hh_plugin.network.connectivity`)
from a population is a ``pc.gid_connect`` from the source gid to the target's receptor
(:mod:`.receptors`), with the weight in NEURON's unit and the delay
:math:`d\,\Delta t` ms (:math:`d` in steps). A spike at time :math:`t_s` reaches the
target at :math:`t_s + d\,\Delta t`. In the plugin's step schedule
(:mod:`hh_plugin.network.spec`) a spike of step :math:`k` (:math:`t_s \in (t_k,
t_{k+1}]`) takes effect from :math:`t_{k+d}`: NEURON's arrival is later by
:math:`t_s - t_k \in (0, \Delta t]`, a difference that vanishes with :math:`\Delta t`.
A zero delay between populations is refused with more than one process or thread
(NEURON exchanges spikes between ranks and threads once per minimum delay, which must
be positive), and so is a delay of one step with the fixed step there (NEURON 9.0.2
needs the minimum delay to exceed one step; CVODE takes it).

**Spike sources.** A :class:`~hh_plugin.network.PoissonSource` or
:class:`~hh_plugin.network.SpikeTrains` is drawn exactly as the other backends draw it
(:meth:`~hh_plugin.network.inputs.SpikeSource.spikes`: the same raster from the same
seed); its spike of step :math:`k` reaches each target synapse at exactly
:math:`(k + d)\,\Delta t`, the time the other backends use it. NEURON's wheel has no
``VecStim``; the trains are delivered, on the rank of each target, by ``NetCon.event``
calls made when the run is initialised (one source-less ``NetCon`` per synapse, with the
synapse's weight), which is what a ``VecStim`` does.

**Currents.** A population's current inputs (:class:`~hh_plugin.network.CurrentInput`,
uA) are one ``IClamp`` per cell (:math:`10^3 I` nA): constant, or the per-step table
played with ``Vector.play`` as a step function (row :math:`k` from :math:`t_k` on,
only the rows where the value changes).

**Spike rule.** A population without a refractory period spikes at each upward crossing
of its threshold (a ``NetCon`` on ``v``); one with a refractory period follows Brian2's
level rule with dead time (:mod:`.spike_rule`, a generated point process).

**Refused** (a ``ValueError`` naming it): leaky-integrator populations, ``V_reset``,
synapse models other than the three shipped ones, non-zero initial values of a current
pulse, initial potentials at or above threshold (without a refractory period).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..model.spec import HHSpec
from .build import ensure_mechanisms
from .cell import HHCell, check_initial_voltage, check_spec, current_nA, mechanism_for
from .integration import Integration, restore
from .receptors import SOURCES, receptor_map
from .spike_rule import REFRACTORY, REFRACTORY_SOURCE


@dataclass
class NetworkRun:
    """The result of :func:`run_network`. On rank 0 (and in a single process)
    ``spikes[pop] = (times, indices)``: spike times (ms, float64) and neuron indices,
    ordered by time then index; ``traces[pop]['V']``: ``(steps, size)`` V (mV) at the end
    of each step where recorded. On other ranks both are empty. ``rank``, ``nhost``,
    ``threads``: where it ran; ``dt``, ``steps``: the network's step and the run's length;
    ``seconds``: wall time of this rank's ``'build'`` (cells, connections, inputs) and
    ``'simulate'`` (``finitialize`` and ``psolve``)."""

    dt: float
    steps: int
    rank: int = 0
    nhost: int = 1
    threads: int = 1
    spikes: Dict[str, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    traces: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)
    integration: str = ""
    seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def steps_of(self, population: str) -> np.ndarray:
        r"""The plugin's step :math:`k` of each spike of ``population`` ("a spike in step
        :math:`k`": a crossing in :math:`(t_k, t_{k+1}]`), :math:`k = \lceil t/\Delta t -
        10^{-6}\rceil - 1` (NEURON's fixed step reports :math:`t_{k+1} + 10^{-10}` ms for a
        crossing in step :math:`k`, which the :math:`10^{-6}` absorbs; a spike at
        :math:`t = 0`, the level rule's, is in step 0)."""
        times = self.spikes[population][0]
        k = np.ceil(times / self.dt - 1e-6).astype(np.int64) - 1
        return np.clip(k, 0, max(self.steps - 1, 0))

    def raster(self, population: str, size: int) -> np.ndarray:
        """``(steps, size)`` bool: each spike in its step (:meth:`steps_of`)."""
        out = np.zeros((self.steps, size), dtype=bool)
        out[self.steps_of(population), self.spikes[population][1]] = True
        return out

    def results(self, spec) -> Dict:
        """The ``results`` mapping of :func:`hh_plugin.export.save_network` (rank 0): the
        rasters (:meth:`raster`), the recorded traces and every spike's time (ms; format
        1.2), in the raster's order (step, then neuron), kept inside its step (the fixed
        step's :math:`10^{-10}` ms beyond the step's end removed). A neuron that spikes
        twice within one step has no place in a raster: refused, naming it."""
        if not self.is_root:
            raise RuntimeError("network results are gathered on rank 0")
        rasters, times = {}, {}
        for name, pop in spec.populations.items():
            t, index = self.spikes[name]
            k = self.steps_of(name)
            order = np.lexsort((index, k))
            k, index, t = k[order], index[order], t[order]
            twice = np.nonzero((np.diff(k) == 0) & (np.diff(index) == 0))[0]
            if len(twice):
                j = int(twice[0])
                raise ValueError(f"population {name!r}: neuron {int(index[j])} spikes twice "
                                 f"in step {int(k[j])} ({t[j]:.6g} and {t[j + 1]:.6g} ms); "
                                 f"a network file holds one spike per neuron and step: "
                                 f"use a smaller dt")
            rasters[name] = self.raster(name, pop.size)
            times[name] = np.clip(t, k * self.dt, (k + 1) * self.dt)
        return {"steps": self.steps, "spikes": rasters,
                "traces": {p: dict(self.traces.get(p, {})) for p in spec.populations},
                "spike_times": times}


#: Delay (ms) of the source-less NetCons of spike sources (ignored by NetCon.event).
SOURCE_NETCON_DELAY = 1e3


def check_network(spec, nhost: int = 1, threads: int = 1, integration=None) -> None:
    """Refuse, by name, what this backend does not map (see the module docstring)."""
    for name, pop in spec.populations.items():
        if not isinstance(pop.spec, HHSpec):
            raise ValueError(f"population {name!r} is a {type(pop.spec).__name__} (a leaky "
                             f"integrator readout), which the NEURON backend does not map")
        check_spec(pop.spec, f"population {name!r}")
        state = spec.initial_state(name)
        if pop.refractory is None:  # the level rule of a refractory period spikes at 0
            check_initial_voltage(state["V"], pop.spec.parameters[pop.model.threshold],
                                  f"population {name!r}")
        for syn in spec.receptors[name].values():
            mapping = receptor_map(syn, spec.dt)
            if mapping.state is None and np.any(np.asarray(state[syn.variable]) != 0):
                raise ValueError(f"population {name!r}: an initial value of the current "
                                 f"pulse {syn.variable!r} cannot be represented in NEURON "
                                 f"(a pulse starts with a spike); leave it 0")
    for proj in spec.projections:
        for kind, label in (("short_term", "short-term plasticity (Tsodyks-Markram)"),
                            ("stdp", "STDP")):
            if getattr(proj, kind, None) is not None:
                raise ValueError(f"projection {proj.name!r}: {label} has no NEURON mapping "
                                 f"in this backend; run the network on torch or Brian2")
    if nhost > 1 or threads > 1:
        fixed = Integration.coerce(integration).method == "fixed"
        for proj in spec.projections:
            conn = spec.connections[proj.name]
            if not (proj.source in spec.populations and conn.size):
                continue
            shortest = int(conn.delay.min())
            if shortest == 0:
                raise ValueError(f"projection {proj.name!r}: a zero delay between "
                                 f"populations cannot be represented with {nhost} processes "
                                 f"and {threads} threads (NEURON exchanges spikes between "
                                 f"ranks and threads after a positive minimum delay); give "
                                 f"it a delay >= 1 step")
            if shortest == 1 and fixed:
                raise ValueError(f"projection {proj.name!r}: a delay of one step cannot be "
                                 f"represented by NEURON's fixed step with {nhost} processes "
                                 f"and {threads} threads (its minimum delay between ranks "
                                 f"and threads must exceed one step); use CVODE "
                                 f"(Integration.cvode(), --integration cvode), one process "
                                 f"and thread, or delays >= 2 steps")


def mechanism_sources(spec) -> Dict[str, str]:
    """``{mechanism: NMODL}`` of every model of ``spec``, the synapse point processes and
    the refractory spike rule."""
    out = {**SOURCES, REFRACTORY: REFRACTORY_SOURCE}
    for pop in spec.populations.values():
        mech = mechanism_for(pop.spec)
        out[mech.suffix] = mech.source
    return out


def gid_offsets(spec) -> Dict[str, int]:
    """The first gid of each population (populations in the specification's order)."""
    offsets, start = {}, 0
    for name, pop in spec.populations.items():
        offsets[name] = start
        start += pop.size
    return offsets


def _change_points(column: np.ndarray, dt: float):
    """Times (ms) and values of a per-step table column where its value changes."""
    keep = np.ones(len(column), dtype=bool)
    keep[1:] = column[1:] != column[:-1]
    steps = np.nonzero(keep)[0]
    return steps * dt, column[steps]


def run_network(spec, steps: int, integration=None, threads: int = 1,
                record: Sequence[str] = ()) -> NetworkRun:
    """Run ``spec`` for ``steps`` steps of ``spec.dt`` ms in NEURON.

    The same call works in one process and under ``mpirun -np K`` (every rank calls it;
    MPI is initialised first by :func:`hh_plugin.neuron.mpi.parallel_context` when an MPI
    launcher started the process).
    ``integration``: :class:`~.integration.Integration` (default CVODE with ``atol =
    1e-6``; the fixed step defaults to ``spec.dt``). ``threads``: threads per process.
    ``record``: ``('V',)`` to sample V at the end of every step (gathered on rank 0).
    Returns a :class:`NetworkRun` (spikes on rank 0)."""
    from neuron import h

    from .mpi import parallel_context

    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    record = tuple(record)
    unknown = [name for name in record if name != "V"]
    if unknown:
        raise ValueError(f"the NEURON backend records 'V' only, not {unknown}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    integration = Integration.coerce(integration)
    every = 1  # fixed step: V is recorded at every step of NEURON, every-th sample kept
    if record and integration.method == "fixed":
        ratio = spec.dt / integration.step(spec.dt)
        every = int(round(ratio))
        if every < 1 or abs(ratio - every) > 1e-9 * ratio:
            raise ValueError(f"recording V needs a fixed step that divides the network's "
                             f"dt = {spec.dt} ms, got {integration.step(spec.dt)} ms")
    if record and threads > 1 and integration.method == "cvode":
        # seen with NEURON 9.0.2: Vector.record(&v, Dt or tvec, sec=) of the cells of the
        # second thread samples at wrong times (the spikes are right); recording every
        # step is right, which is what the fixed step does
        raise ValueError("recording V with CVODE and threads > 1 is not supported by the "
                         "NEURON backend (NEURON 9.0.2 samples the other threads' cells at "
                         "wrong times); use the fixed step, one thread, or more processes")
    pc = parallel_context()
    rank, nhost = int(pc.id()), int(pc.nhost())
    check_network(spec, nhost, threads, integration)
    ensure_mechanisms(mechanism_sources(spec))
    build_start = time.perf_counter()
    dt = float(spec.dt)
    tstop = steps * dt
    offsets = gid_offsets(spec)
    pc.gid_clear()
    # threads first: NEURON reorganises its data when the thread count changes, which
    # would leave earlier recording and playing pointers stale
    pc.nthread(threads)

    cells: Dict[int, HHCell] = {}
    local: Dict[str, List[int]] = {}
    keep: list = []  # NEURON objects that must live while the run lasts
    starts: List[Tuple[HHCell, Dict[str, float]]] = []
    synaptic_starts = []
    receptors: Dict[Tuple[int, str], object] = {}
    for name, pop in spec.populations.items():
        mechanism = mechanism_for(pop.spec)
        state = spec.initial_state(name)
        local[name] = [i for i in range(pop.size) if (offsets[name] + i) % nhost == rank]
        for i in local[name]:
            gid = offsets[name] + i
            cell = HHCell(pop.spec, mechanism, i, name=f"{name}[{i}]")
            cells[gid] = cell
            pc.set_gid2node(gid, rank)
            if pop.refractory is None:
                pc.cell(gid, cell.spike_detector())
            else:  # Brian2's refractory rule (.spike_rule)
                rule = h.hhp_Refractory(cell.seg)
                rule.vth = cell.threshold
                rule.refractory = pop.refractory_steps(dt) * dt
                pc.cell(gid, h.NetCon(rule, None))
                keep.append(rule)
            starts.append((cell, {"V": float(state["V"][i]),
                                  **{g: float(state[g][i]) for g in pop.model.gate_names}}))
            for syn in spec.receptors[name].values():
                mapping = receptor_map(syn, dt)
                pp = getattr(h, mapping.mechanism)(cell.seg)
                for key, value in mapping.parameters.items():
                    setattr(pp, key, value)
                receptors[(gid, syn.receptor)] = pp
                value = float(state[syn.variable][i])
                if mapping.state is not None and value != 0:
                    synaptic_starts.append((pp, mapping.state, value * mapping.state_scale))

    # current inputs: one IClamp per local cell of a population with inputs (each cell's
    # column of the summed per-step table, without making the whole table)
    for name, pop in spec.populations.items():
        items = [c.table(steps, pop.size) for c in spec.currents if c.target == name]
        if not items or not local[name]:
            continue
        for i in local[name]:
            column = np.sum([np.asarray(t[:, i], dtype=np.float64) for t in items], axis=0)
            clamp = cells[offsets[name] + i].current_clamp()
            if np.all(column == column[0]):
                clamp.amp = current_nA(column[0])
                keep.append(clamp)
                continue
            times, values = _change_points(column, dt)
            tvec, avec = h.Vector(times), h.Vector(values * 1e3)
            avec.play(clamp._ref_amp, tvec, 0, sec=cells[offsets[name] + i].sec)
            keep.extend((clamp, tvec, avec))

    # projections
    scheduled = []  # (NetCon, delivery times) of spike sources
    source_spikes = {name: src.spikes(steps, dt) for name, src in spec.sources.items()}
    for proj in spec.projections:
        conn = spec.connections[proj.name]
        if not conn.size:
            continue
        mapping = receptor_map(proj.synapse, dt)
        target_offset = offsets[proj.target]
        mine = (target_offset + conn.post) % nhost == rank
        pre, post = conn.pre[mine], conn.post[mine]
        weight = conn.weight[mine] * mapping.weight_scale
        delay = np.broadcast_to(conn.delay, conn.pre.shape)[mine]
        if proj.source in spec.populations:
            source_offset = offsets[proj.source]
            for j, i, w, d in zip(pre, post, weight, delay):
                nc = pc.gid_connect(int(source_offset + j),
                                    receptors[(int(target_offset + i), proj.synapse.receptor)])
                nc.weight[0] = float(w)
                nc.delay = float(d) * dt
                keep.append(nc)
        else:
            k, index = source_spikes[proj.source]
            by_source: Dict[int, np.ndarray] = {}
            for j, i, w, d in zip(pre, post, weight, delay):
                j = int(j)
                if j not in by_source:
                    by_source[j] = k[index == j] * dt
                nc = h.NetCon(None, receptors[(int(target_offset + i),
                                               proj.synapse.receptor)])
                nc.weight[0] = float(w)
                # NetCon.event(t) delivers at t whatever the delay; a long delay keeps these
                # NetCons out of NEURON's minimum delay (threads exchange events after it)
                nc.delay = SOURCE_NETCON_DELAY
                scheduled.append((nc, by_source[j] + float(d) * dt))

    def set_v():
        for cell, values in starts:
            cell.seg.v = values["V"]

    def set_states():
        for cell, values in starts:
            cell.set_state({k: v for k, v in values.items() if k != "V"})
        for pp, variable, value in synaptic_starts:
            setattr(pp, variable, value)
        for nc, times in scheduled:
            for t in times:
                if t < tstop:
                    nc.event(float(t))

    handlers = [h.FInitializeHandler(0, set_v), h.FInitializeHandler(1, set_states)]

    t_vec, id_vec = h.Vector(), h.Vector()
    pc.spike_record(-1, t_vec, id_vec)
    traces = {}
    if "V" in record:
        for name in spec.populations:
            # sec=: with threads, NEURON needs the section to find the pointer's thread
            traces[name] = []
            for i in local[name]:
                cell = cells[offsets[name] + i]
                vec = h.Vector()
                if integration.method == "fixed":
                    vec.record(cell.seg._ref_v, sec=cell.sec)
                else:
                    vec.record(cell.seg._ref_v, dt, sec=cell.sec)
                traces[name].append((i, vec))

    previous = None  # NEURON's settings before the run, put back after it
    try:
        simulate_start = time.perf_counter()
        previous = integration.apply(dt)
        pc.set_maxstep(10)
        h.finitialize()
        pc.psolve(tstop)
        seconds = {"build": simulate_start - build_start,
                   "simulate": time.perf_counter() - simulate_start}
        # to_python: numpy cannot convert an empty NEURON Vector (a run without spikes)
        mine_spikes = (np.array(t_vec.to_python(), dtype=np.float64),
                       np.array(id_vec.to_python(), dtype=np.int64))
        # V after each step: the samples at dt, 2 dt, ...; the last one (at the stop
        # time, which the recording may not reach) read from the cell
        mine_traces = {name: [(i, np.append(np.array(v.to_python())[every::every][:steps - 1],
                                            cells[offsets[name] + i].seg.v))
                              for i, v in rows]
                       for name, rows in traces.items()}
        gathered = pc.py_gather((mine_spikes, mine_traces), 0)
    finally:
        if previous is not None:
            restore(previous)
        pc.gid_clear()
        handlers.clear()  # kept alive until here: NEURON calls them in finitialize
        keep.clear()
        traces.clear()
        cells.clear()
        if threads > 1:
            pc.nthread(1)
    out = NetworkRun(dt, steps, rank, nhost, threads, integration=integration.describe(),
                     seconds=seconds)
    if rank != 0:
        return out
    times = np.concatenate([g[0][0] for g in gathered])
    gids = np.concatenate([g[0][1] for g in gathered])
    order = np.lexsort((gids, times))
    times, gids = times[order], gids[order]
    for name, pop in spec.populations.items():
        inside = (gids >= offsets[name]) & (gids < offsets[name] + pop.size)
        out.spikes[name] = (times[inside], gids[inside] - offsets[name])
        if "V" in record:
            V = np.full((steps, pop.size), math.nan)
            for g in gathered:
                for i, values in g[1].get(name, []):
                    V[:len(values), i] = values
            out.traces[name] = {"V": V}
    return out
