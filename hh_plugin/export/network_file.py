r"""Network files (format 1.1, and 1.2): a :class:`~hh_plugin.network.NetworkSpec` and,
optionally, the spikes, their times and the traces of a run, in the same checksummed HDF5
container as format 1.0.

Layout (``export/FORMAT.md`` section 8): the root attributes ``format = 'hh_plugin'``,
``format_version`` (``'1.2'`` when the file uses what 1.2 added, else ``'1.1'``) and
``metadata``, a JSON object

.. code-block:: text

    {"format": "hh_plugin", "format_version": "1.1" | "1.2", "kind": "network",
     "network": <NetworkSpec.to_dict(), every array replaced by {"$array": "aN"}>,
     "results": null | {"backend": ..., "steps": T,
                        "populations": {name: {"spike_steps": ref, "spike_indices": ref,
                                               ["spike_times": ref,]  (1.2)
                                               "traces": {variable: ref}}}},
     "provenance": {string: string}}

Version 1.2 adds ``spike_times``: each spike's time in ms (float64, in the order of
``spike_steps``), inside its step :math:`[k\,\Delta t, (k+1)\,\Delta t]`
(:mod:`hh_plugin.model.spike_times`), the populations' ``"method"`` (an integration
method other than the default), synapse models beyond 1.1's three (with their definition
when not built in) and short-term plasticity and STDP or another plasticity rule (with its
definition when not built in) on projections.

and one group ``/arrays`` holding the datasets ``a0``, ``a1``, ... that the references
name (each referenced exactly once; no other member). The network's description is the
specification's own ``to_dict`` form (populations with their model, its definition,
parameters and initial state; projections with dense weights or index pairs, delays and
synapse model; inputs), so the file and the Python objects cannot drift apart.

Reading trusts nothing: after the container checks shared with format 1.0 (checksum, attributes,
allowed members, storage, filters, declared sizes; :mod:`.container`) the metadata is checked
for its shape, population and source sizes are bounded by the reader's limit before any
allocation, arrays must be finite numbers, and the network is rebuilt through
``NetworkSpec.from_dict``, whose validation (names, sizes, index ranges, delays, unknown
models and synapse models, parameter values) names the problem; results are checked
against the populations (step and neuron indices in range, trace shapes).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from ..formats import NETWORK_BASE_VERSION, NETWORK_FORMAT_VERSION
from ..network import NetworkSpec
from .container.atomic import atomic_create
from .container.hdf5 import (RawFile, check_compression, check_members, filler, text,
                             writer_versions)
from .container.limits import Limits
from .container.members import DATASET, GROUP
from .errors import FormatError
from .network_run import results_from_brian2, results_from_torch

NETWORK_VERSION = NETWORK_FORMAT_VERSION
KIND = "network"
ARRAY_KEY = "$array"
_ARRAY_NAME = re.compile(r"^a(0|[1-9][0-9]{0,8})$")
_TOP_KEYS = {"format", "format_version", "kind", "network", "results", "provenance"}


@dataclass
class NetworkRecord:
    """A network file's content: ``spec``, and a run's ``steps``, ``spikes``
    (``{population: (step indices, neuron indices)}``), ``traces``
    (``{population: {variable: (steps, size)}}``) and ``backend`` when it holds one."""

    spec: object
    steps: Optional[int] = None
    spikes: Dict[str, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    traces: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)
    backend: Optional[str] = None
    #: ``{population: (n_spikes,) ms}`` in the order of :attr:`spikes`, where the run has
    #: them (format 1.2)
    spike_times: Dict[str, np.ndarray] = field(default_factory=dict)
    version: Optional[str] = None
    provenance: Dict[str, str] = field(default_factory=dict)
    path: Optional[str] = None

    @property
    def has_results(self) -> bool:
        return self.steps is not None

    def raster(self, population: str) -> np.ndarray:
        """``(steps, size)`` 0/1 spikes of a population."""
        out = np.zeros((self.steps, self.spec.populations[population].size))
        k, i = self.spikes[population]
        out[k, i] = 1.0
        return out


# ================================================================= writing
def _encode(value, arrays: Dict[str, Tuple[np.ndarray, str]]):
    """``value`` with every numpy array moved into ``arrays``."""
    if isinstance(value, np.ndarray):
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            raise ValueError(f"cannot store an array of dtype {array.dtype}")
        name = f"a{len(arrays)}"
        arrays[name] = (np.array(array, order="C"), "1")  # keeps 0-d arrays 0-d
        return {ARRAY_KEY: name}
    if isinstance(value, Mapping):
        return {str(k): _encode(v, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _network_dict(spec) -> dict:
    data = spec.to_dict()
    for entry, pop in zip(data["populations"], spec.populations.values()):
        if pop.spikes:  # an HH population: the model's definition travels along
            entry["spec"] = pop.spec.to_dict(include_definition=True)
            parameters = entry["spec"]["parameters"]
            for name, value in parameters.items():  # per-neuron values as datasets
                if isinstance(value, (list, tuple)):
                    parameters[name] = np.asarray(value, dtype=np.float64)
    return data


def _results(spec, results) -> Optional[dict]:
    """``results``: ``None``, the torch ``NetworkOutput``, a Brian2 ``BrianNetwork`` after
    its run, or ``{'steps': T, 'spikes': {pop: (T, size) raster}, 'traces': {pop: {var:
    (T, size)}}}`` with, optionally, ``'spike_times': {pop: (n_spikes,) ms}`` in the
    raster's :func:`numpy.nonzero` order. Spike times not given are computed, for each
    population whose ``V`` was recorded, from its trace and the specification's initial
    state (:func:`spike_times_from_trace`)."""
    if results is None:
        return None
    if hasattr(results, "spike_raster") and hasattr(results, "state_monitors"):
        results = results_from_brian2(results)
    elif hasattr(results, "spikes") and hasattr(results, "traces"):
        results = results_from_torch(results)
    if not isinstance(results, Mapping) or \
            set(results) - {"steps", "spikes", "traces", "spike_times"}:
        raise TypeError("results must be a NetworkOutput, a BrianNetwork or a mapping with "
                        "'steps', 'spikes', 'traces' and optionally 'spike_times'")
    steps = int(results["steps"])
    given_times = dict(results.get("spike_times") or {})
    unknown = set(given_times) - set(spec.populations)
    if unknown:
        raise ValueError(f"spike_times of unknown populations {sorted(unknown)}")
    out = {}
    for pop in spec.populations:
        raster = np.asarray(results.get("spikes", {}).get(pop, np.zeros((steps, 0))))
        size = spec.populations[pop].size
        if raster.ndim != 2 or raster.shape[0] != steps or raster.shape[1] not in (0, size):
            raise ValueError(f"spikes of {pop!r}: shape {raster.shape}, expected "
                             f"({steps}, {size})")
        k, i = np.nonzero(raster)
        entry = {"spike_steps": k.astype(np.int64), "spike_indices": i.astype(np.int64),
                 "traces": {}}
        for var, trace in results.get("traces", {}).get(pop, {}).items():
            trace = np.asarray(trace, dtype=np.float64)
            if trace.ndim > 2:  # batch dimensions are not part of the file
                raise ValueError(f"trace {var!r} of {pop!r} has shape {trace.shape}; save "
                                 f"one sample (steps, size)")
            entry["traces"][var] = trace
        times = given_times.get(pop)
        if times is None and "V" in entry["traces"] and spec.populations[pop].spikes:
            times = spike_times_from_trace(spec, pop, raster, entry["traces"]["V"])
        if times is not None:
            times = np.asarray(times, dtype=np.float64)
            if times.shape != k.shape:
                raise ValueError(f"spike_times of {pop!r}: shape {times.shape}, expected "
                                 f"({len(k)},), one per spike")
            check_spike_times(times, k, spec.dt, f"spike_times of {pop!r}", ValueError)
            entry["spike_times"] = times
        out[pop] = entry
    return {"steps": steps, "populations": out}


def spike_times_from_trace(spec, population: str, raster, V) -> Optional[np.ndarray]:
    r"""Spike times (ms) of a population's spikes (``raster``, ``(T, size)``, in its
    :func:`numpy.nonzero` order) from its recorded ``V`` (``(T, size)``, after each step)
    and its initial state in ``spec``: the linear interpolation of the threshold crossing
    (:func:`hh_plugin.model.spike_times.trace_crossing_times`). A hard reset loses
    :math:`V_{k+1}`, and then ``None`` is returned (no times stored)."""
    from ..model.spike_times import trace_crossing_times

    pop = spec.populations[population]
    p = pop.spec
    if p.V_reset is not None and p.spk_reset != "soft":
        return None
    _, times = trace_crossing_times(raster, V, spec.initial_state(population)["V"],
                                    getattr(p, pop.model.threshold), spec.dt,
                                    V_reset=p.V_reset)
    return times


def check_spike_times(times, steps, dt: float, where: str, error, path=None) -> None:
    r"""Spike times must be finite and inside their steps (ms; :math:`10^{-9}\,\Delta t`
    of slack for round-off)."""
    times = np.asarray(times)
    if times.size == 0:
        return
    if not np.all(np.isfinite(times)):
        raise error(f"{where} contains NaN or infinite values", *(() if path is None
                                                                   else (path,)))
    slack = 1e-9 * dt
    start = np.asarray(steps, dtype=np.float64) * dt
    if np.any(times < start - slack) or np.any(times > start + dt + slack):
        bad = int(np.argmax((times < start - slack) | (times > start + dt + slack)))
        raise error(f"{where}: spike {bad} at {times[bad]!r} ms lies outside its step "
                    f"{int(steps[bad])} ([{start[bad]:g}, {start[bad] + dt:g}] ms)",
                    *(() if path is None else (path,)))


#: The synapse models of format 1.1; any other needs 1.2.
SYNAPSE_MODELS_1_1 = ("current_pulse", "exponential_current", "exponential_conductance")


def _uses_version_1_2(spec, run: Optional[dict]) -> bool:
    if run is not None and any("spike_times" in entry
                               for entry in run["populations"].values()):
        return True
    if any(proj.synapse.model.name not in SYNAPSE_MODELS_1_1 or proj.short_term is not None
           or proj.stdp is not None for proj in spec.projections):
        return True
    return any(getattr(pop.spec, "method", "exponential_euler") != "exponential_euler"
               for pop in spec.populations.values() if pop.spikes)


def _check_1_1_content(network: dict, path) -> None:
    """What a file of version 1.1 cannot hold: synapse models other than 1.1's three (or
    a carried definition), plasticity, an integration method other than the default."""
    for item in network.get("projections") or []:
        if not isinstance(item, dict):
            continue
        synapse = item.get("synapse") if isinstance(item.get("synapse"), dict) else {}
        model = synapse.get("model")
        if "definition" in synapse or (isinstance(model, str)
                                       and model not in SYNAPSE_MODELS_1_1):
            raise FormatError(f"projection {item.get('name')!r}: synapse model {model!r} "
                              f"needs format 1.2, the file says 1.1", path)
        for key in ("short_term", "stdp"):
            if key in item:
                raise FormatError(f"projection {item.get('name')!r}: {key} needs format "
                                  f"1.2, the file says 1.1", path)
    for item in network.get("populations") or []:
        spec = item.get("spec") if isinstance(item, dict) else None
        if isinstance(spec, dict) and spec.get("method", "exponential_euler") != \
                "exponential_euler":
            raise FormatError(f"population {item.get('name')!r}: method "
                              f"{spec.get('method')!r} needs format 1.2, the file says 1.1",
                              path)


def save_network(path, spec, results=None, *, backend: Optional[str] = None,
                 overwrite: bool = False, provenance: Optional[Mapping[str, str]] = None,
                 compression=None) -> Path:
    """Write a network file atomically, with a content checksum: format 1.2 when it holds
    spike times or a population with a method other than the default, else 1.1.

    Args:
        path: the file; refused if it exists unless ``overwrite=True``.
        spec: the :class:`~hh_plugin.network.NetworkSpec`.
        results: a run to store: the torch ``NetworkOutput`` (one sample, no batch
            dimension), a Brian2 ``BrianNetwork`` after ``run()``, or a mapping
            ``{'steps', 'spikes', 'traces'}`` (and optionally ``'spike_times'``). Spike
            times are stored for the populations whose ``V`` was recorded (or given).
        backend: who produced ``results`` (``'torch'``, ``'brian2'``, ...).
        provenance: extra strings.
        compression: ``'gzip'`` or a level 0-9 (default none).
    """
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
    compression = check_compression(compression)
    arrays: Dict[str, Tuple[np.ndarray, str]] = {}
    network = _encode(_network_dict(spec), arrays)
    run = _results(spec, results)
    version = NETWORK_VERSION if _uses_version_1_2(spec, run) else NETWORK_BASE_VERSION
    if run is not None:
        run = {"backend": str(backend or "none"), **_encode(run, arrays)}
    prov = {"writer": "hh_plugin", **writer_versions()}
    for key, value in dict(provenance or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("provenance must map strings to strings")
        prov[key] = value
    metadata = {"format": "hh_plugin", "format_version": version, "kind": KIND,
                "network": network, "results": run, "provenance": prov}
    stored = {f"arrays/{name}": value for name, value in arrays.items()}
    return atomic_create(Path(path), filler(metadata, stored, compression),
                         overwrite=overwrite)


# ================================================================= reading
def _references(value, found: list, where: str, path) -> None:
    if isinstance(value, Mapping):
        if ARRAY_KEY in value:
            name = value[ARRAY_KEY]
            if len(value) != 1 or not isinstance(name, str) or not _ARRAY_NAME.match(name):
                raise FormatError(f"{where}: malformed array reference", path)
            found.append(name)
            return
        for key, item in value.items():
            _references(item, found, f"{where}.{key}", path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _references(item, found, f"{where}[{index}]", path)


def check_metadata(meta: dict, path) -> Tuple[str, ...]:
    """The metadata's shape; returns the referenced array names (each used once)."""
    if set(meta) != _TOP_KEYS:
        missing, extra = _TOP_KEYS - set(meta), set(meta) - _TOP_KEYS
        what = f"missing {sorted(missing)}" if missing else f"unexpected {sorted(extra)}"
        raise FormatError(f"invalid network metadata: {what}", path)
    if meta["format"] != "hh_plugin" or meta["kind"] != KIND:
        raise FormatError("invalid network metadata: format must be 'hh_plugin' and kind "
                          "'network'", path)
    if not isinstance(meta["network"], dict):
        raise FormatError("invalid network metadata: network must be an object", path)
    prov = meta["provenance"]
    if not isinstance(prov, dict) or not all(isinstance(v, str) for v in prov.values()):
        raise FormatError("invalid network metadata: provenance must map strings to "
                          "strings", path)
    if meta["results"] is not None and not isinstance(meta["results"], dict):
        raise FormatError("invalid network metadata: results must be an object or null",
                          path)
    names: list = []
    _references(meta["network"], names, "network", path)
    _references(meta["results"], names, "results", path)
    if len(set(names)) != len(names):
        raise FormatError("invalid network metadata: an array is referenced twice", path)
    return tuple(names)


def expected_network_tree(meta: dict, path) -> Dict[str, Dict[str, str]]:
    names = check_metadata(meta, path)
    return {"/": {"arrays": GROUP}, "/arrays": {name: DATASET for name in names}}


def _decode(value, arrays: Dict[str, np.ndarray]):
    if isinstance(value, Mapping):
        if ARRAY_KEY in value:
            return arrays[value[ARRAY_KEY]]
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


#: Bytes the caller needs per neuron of a population while the network is built from a
#: file and its initial state drawn (state variables, their initial values, spikes and
#: working copies; 130 measured for the reference model, 1e6 neurons).
NEURON_BYTES = 160
#: Bytes per synapse of a sparse projection while it is built (indices, weights, delays
#: and their checked copies; 96 measured for 1e6 synapses).
SYNAPSE_BYTES = 100
#: Bytes per entry of a dense weight matrix (the matrix and two checked copies).
DENSE_ENTRY_BYTES = 24
#: Bytes per neuron of a spike source (a rate or a spike flag, and a copy).
SOURCE_BYTES = 16
#: Bytes per source neuron and step of delay in a projection's spike buffer (float64).
DELAY_BUFFER_BYTES = 8
#: Bytes per step and neuron of a run's spike raster (:meth:`NetworkRecord.raster`).
RASTER_BYTES = 8


def _count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else 0


def _bounded_sizes(network: dict, limits: Limits, path) -> None:
    """Population and source sizes bounded before anything is allocated for them."""
    most = limits.max_bytes // 8
    for group in ("populations", "inputs"):
        items = network.get(group, [])
        if not isinstance(items, list):
            raise FormatError(f"invalid network: {group} must be a list", path)
        for item in items:
            if not isinstance(item, dict):
                raise FormatError(f"invalid network: an entry of {group} is not an object",
                                  path)
            size = item.get("size")
            if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                                     or not 0 < size <= most):
                raise FormatError(f"invalid network: size {size!r} of {item.get('name')!r} "
                                  f"is not an integer in 1..{most} (the reader's limit)", path)


def network_memory(meta: dict, arrays: Mapping[str, object]) -> list:
    """Bytes the caller will need to build a network file's content, from its declared
    sizes only (nothing is allocated): ``[(what, bytes)]`` for every population
    (:data:`NEURON_BYTES` per neuron), spike source (:data:`SOURCE_BYTES`), projection
    (:data:`SYNAPSE_BYTES` per sparse synapse or :data:`DENSE_ENTRY_BYTES` per dense
    entry, plus a spike buffer of :data:`DELAY_BUFFER_BYTES` per source neuron and step
    of the longest delay) and the run's raster (:data:`RASTER_BYTES` per step and
    neuron). ``arrays`` maps dataset paths (``/arrays/aN``) to the arrays read, or, before
    any data is read, to anything with a ``shape`` (the longest delay then counts 0).
    Entries of the wrong type count 0; their validation names them later."""
    network = meta.get("network") if isinstance(meta.get("network"), dict) else {}

    def array(ref):
        if isinstance(ref, dict) and isinstance(ref.get(ARRAY_KEY), str):
            return arrays.get(f"/arrays/{ref[ARRAY_KEY]}")
        return None

    need = []
    sizes: Dict[str, int] = {}
    for group, per in (("populations", NEURON_BYTES), ("inputs", SOURCE_BYTES)):
        items = network.get(group)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and "size" in item:
                size = _count(item["size"])
                sizes[str(item.get("name"))] = size
                kind = "population" if group == "populations" else "source"
                need.append((f"{kind} {item.get('name')!r} ({size} neurons)", size * per))
    projections = network.get("projections")
    for item in projections if isinstance(projections, list) else []:
        if not isinstance(item, dict):
            continue
        weight = array(item.get("weight"))
        entries = 0 if weight is None else math.prod(weight.shape)
        per = DENSE_ENTRY_BYTES if item.get("dense") is True else SYNAPSE_BYTES
        delay = array(item.get("delay"))
        longest = 0
        if isinstance(delay, np.ndarray) and delay.size and delay.dtype.kind in "iu":
            longest = max(0, int(delay.max()))
        buffer = (longest + 1) * sizes.get(str(item.get("source")), 0) * DELAY_BUFFER_BYTES
        need.append((f"projection {item.get('name')!r} ({entries} synapses, delays up to "
                     f"{longest} steps)", entries * per + buffer))
    results = meta.get("results")
    if isinstance(results, dict):
        steps = _count(results.get("steps"))
        neurons = sum(_count(item.get("size")) for item in network.get("populations", [])
                      if isinstance(item, dict)) \
            if isinstance(network.get("populations"), list) else 0
        need.append((f"the run's spike rasters ({steps} steps)",
                     steps * neurons * RASTER_BYTES))
    return need


@dataclass(frozen=True)
class _Shape:
    """A dataset's shape without its data (:func:`network_memory` counts no delay)."""

    shape: Tuple[int, ...]


def check_memory(meta: dict, arrays: Mapping[str, object], limits: Limits, path) -> None:
    """Refuse a network whose declared sizes need more memory than the reader's limit
    (:func:`network_memory`); run on the declared sizes and shapes alone, then with the
    arrays (for the delays), before the network is built."""
    need = network_memory(meta, arrays)
    total = sum(n for _, n in need)
    if total > limits.max_bytes:
        largest, most = max(need, key=lambda item: item[1])
        raise FormatError(f"the network's declared sizes would need about "
                          f"{total / 2**20:.0f} MiB to build (largest: {largest}, "
                          f"{most / 2**20:.0f} MiB), more than the reader's limit "
                          f"of {limits.max_bytes / 2**20:.0f} MiB "
                          f"(max_bytes or HH_PLUGIN_MAX_READ_BYTES)", path)


def _arrays(raw, path) -> Dict[str, np.ndarray]:
    out = {}
    for where, (values, unit) in raw.arrays.items():
        name = where.rsplit("/", 1)[-1]
        if text(unit, f"{where} unit attribute", path) != "1":
            raise FormatError(f"{where} has unit {unit!r}; network arrays carry '1' (the "
                              f"specification fixes each value's unit)", path)
        array = np.asarray(values)
        if array.dtype.kind == "b":
            array = array.astype(np.int64)
        if array.dtype.kind not in "fiu":
            raise FormatError(f"{where} is {array.dtype}; expected numbers", path)
        if array.dtype.kind == "f":
            if not np.all(np.isfinite(array)):
                raise FormatError(f"{where} contains NaN or infinite values", path)
            array = array.astype(np.float64)
        else:
            array = array.astype(np.int64)
        out[name] = array
    return out


def _index_array(value, where: str, upper: int, path) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise FormatError(f"{where} must be a 1-D integer array", path)
    if array.size and (array.min() < 0 or array.max() >= upper):
        raise FormatError(f"{where} has values outside 0..{upper - 1}", path)
    return array.astype(np.int64)


def _results_from(meta_results, arrays, spec, path, version: str):
    version_1_2 = tuple(int(x) for x in version.split(".")) >= (1, 2)
    run = _decode(meta_results, arrays)
    if set(run) != {"backend", "steps", "populations"}:
        raise FormatError("invalid network results: expected backend, steps, populations",
                          path)
    steps = run["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise FormatError(f"invalid network results: steps {steps!r}", path)
    if not isinstance(run["populations"], dict) or \
            set(run["populations"]) != set(spec.populations):
        raise FormatError("invalid network results: one entry per population is required",
                          path)
    spikes, traces, times = {}, {}, {}
    keys = {"spike_steps", "spike_indices", "traces"}
    for pop, entry in run["populations"].items():
        size = spec.populations[pop].size
        if not isinstance(entry, dict) or not (
                set(entry) == keys or (version_1_2 and set(entry) == keys | {"spike_times"})):
            if isinstance(entry, dict) and "spike_times" in entry and not version_1_2:
                raise FormatError(f"results of {pop!r}: spike_times need format 1.2, the "
                                  f"file says {version}", path)
            raise FormatError(f"invalid network results of {pop!r}", path)
        k = _index_array(entry["spike_steps"], f"results of {pop!r}: spike_steps",
                         max(steps, 1), path)
        i = _index_array(entry["spike_indices"], f"results of {pop!r}: spike_indices", size,
                         path)
        if len(k) != len(i):
            raise FormatError(f"results of {pop!r}: spike_steps and spike_indices differ in "
                              f"length", path)
        spikes[pop] = (k, i)
        if "spike_times" in entry:
            t = np.asarray(entry["spike_times"])
            if t.dtype.kind != "f" or t.shape != k.shape:
                raise FormatError(f"results of {pop!r}: spike_times must be {len(k)} floats, "
                                  f"one per spike; found {t.dtype} {t.shape}", path)
            check_spike_times(t, k, spec.dt, f"results of {pop!r}: spike_times",
                              FormatError, path)
            times[pop] = t
        if not isinstance(entry["traces"], dict):
            raise FormatError(f"invalid traces of {pop!r}", path)
        traces[pop] = {}
        for var, trace in entry["traces"].items():
            trace = np.asarray(trace)
            if trace.dtype.kind != "f" or trace.shape != (steps, size):
                raise FormatError(f"trace {var!r} of {pop!r} has shape {trace.shape}, "
                                  f"expected ({steps}, {size})", path)
            traces[pop][var] = trace
    return steps, spikes, traces, str(run["backend"]), times


def record_from_raw(raw: RawFile, meta: dict, version: str, path,
                    limits: Optional[Limits] = None) -> NetworkRecord:
    """A network file's container content (its root already decoded into ``meta`` and
    ``version``) checked and built into a :class:`NetworkRecord`: the metadata's shape,
    the exact groups and datasets it names, sizes and memory bounded before the network
    is built through ``NetworkSpec.from_dict``, then the run's results."""
    limits = limits or Limits.default()
    names = check_metadata(meta, path)
    if version == NETWORK_BASE_VERSION:
        _check_1_1_content(meta["network"], path)
    check_members(raw, expected_network_tree(meta, path), path, version)
    _bounded_sizes(meta["network"], limits, path)
    shapes = {where: _Shape(np.shape(values)) for where, (values, _) in raw.arrays.items()}
    check_memory(meta, shapes, limits, path)  # names the largest declared size first
    check_memory(meta, {where: values for where, (values, _) in raw.arrays.items()},
                 limits, path)
    arrays = _arrays(raw, path)
    if set(arrays) != set(names):
        raise FormatError("the arrays in the file differ from those the metadata names",
                          path)
    try:
        spec = NetworkSpec.from_dict(_decode(meta["network"], arrays))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        detail = str(exc) if not isinstance(exc, KeyError) else f"missing field {exc}"
        raise FormatError(f"invalid network: {detail}", path) from None
    record = NetworkRecord(spec=spec, provenance=dict(meta["provenance"]), path=str(path),
                           version=version)
    if meta["results"] is not None:
        (record.steps, record.spikes, record.traces, record.backend,
         record.spike_times) = _results_from(meta["results"], arrays, spec, path, version)
    return record


def is_network_version(version: str) -> bool:
    """Whether a (checked) ``MAJOR.MINOR`` version is that of a network file."""
    return tuple(int(x) for x in version.split(".")) >= (1, 1)


def summary(record: NetworkRecord) -> str:
    """What ``hh-plugin inspect`` prints for a network file."""
    spec = record.spec
    lines = [f"hh_plugin network file (format {record.version or NETWORK_VERSION}), "
             f"dt = {spec.dt:g} ms"]
    lines.append("populations:")
    for pop in spec.populations.values():
        model = pop.model.name
        extra = f", refractory {pop.refractory:g} ms" if pop.refractory is not None else ""
        lines.append(f"  {pop.name}: {pop.size} x {model}{extra}")
    if spec.sources:
        lines.append("spike sources:")
        for src in spec.sources.values():
            lines.append(f"  {src.name}: {src.size} ({type(src).__name__})")
    lines.append("projections:")
    for proj in spec.projections:
        conn = spec.connections[proj.name]
        w = np.asarray(conn.weight)
        d = np.asarray(conn.delay)
        stats = (f"w mean {w.mean():.4g}, min {w.min():.4g}, max {w.max():.4g} "
                 f"{proj.synapse.unit}" if w.size else "no synapses")
        delays = f"delay {int(d.min())}..{int(d.max())} steps" if d.size else ""
        lines.append(f"  {proj.name}: {proj.source} -> {proj.target}, "
                     f"{proj.synapse.model.name} ({proj.synapse.receptor}), {w.size} synapses "
                     f"({'dense' if conn.dense else 'sparse'}), {stats}, {delays}")
    for cur in spec.currents:
        lines.append(f"current input -> {cur.target}: "
                     f"{'constant' if cur.is_constant else f'{cur.steps} steps'}")
    if record.has_results:
        lines.append(f"results ({record.backend}, {record.steps} steps):")
        for pop, (k, _) in record.spikes.items():
            names = ", ".join(sorted(record.traces.get(pop, {}))) or "none"
            timed = ", with times inside the step" if pop in record.spike_times else ""
            lines.append(f"  {pop}: {len(k)} spikes{timed}, traces: {names}")
    return "\n".join(lines)
