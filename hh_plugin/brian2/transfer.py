r"""From a Brian2 network to the specification, and trained weights back into Brian2.

A network built in Brian2 through the plugin (:func:`~hh_plugin.brian2.network.build_network`)
is edited the way Brian2 scripts edit networks: ``S.w = ...`` on its ``Synapses``
(numbers, arrays or Brian2 expressions such as ``'0.02*msiemens*rand()'``), ``S.delay =
...``, more synapses with ``S.connect(...)``, neuron parameters on the groups
(``G.gNa = ...``). :func:`network_spec_from_brian2` reads those objects back into a
:class:`~hh_plugin.network.NetworkSpec`, so that
``NetworkModule(network_spec_from_brian2(net))`` is the same network as a trainable
PyTorch module (its weights are ``nn.Parameter``\ s); :func:`set_weights` writes trained
weights into the Brian2 ``Synapses`` again::

    net = build_network(spec, steps=2000)
    net.synapses["H_to_H_rec"][0].w = "0.02*msiemens*rand()"
    net.network.store()               # after the edits: restore() brings all of them back
    module = NetworkModule(network_spec_from_brian2(net), dtype=torch.float64)
    ...                               # train the module's weights
    net.network.restore()             # t = 0 and the initial state (and the old weights)
    set_weights(net, module)          # so the trained weights go in after restore()
    net.run()                         # the same spikes as module(steps=2000)

What is read from Brian2 and what comes from the specification the network was built
from:

- **Synapses** (read): the pairs ``S.i``, ``S.j``, the weights ``S.w`` and the delays
  ``S.delay`` of every ``Synapses`` object of a projection. A delay of the delayed part
  must be a whole number of steps, :math:`(d - 1)\,\Delta t` with :math:`d \ge 1`
  (the delay convention of :mod:`hh_plugin.network.spec`); the zero-delay part
  (``<projection>_d0``, spikes delivered in the same step) must keep delay 0.
  A dense projection whose pairs are still all pairs stays dense (a matrix in torch);
  otherwise it becomes :class:`~hh_plugin.network.Sparse`.
- **Neuron parameters** (read): a model parameter changed on a group is carried over
  (one value, or one per neuron); unchanged ones keep the specification's values exactly.
- **Initial state**: ``initial='spec'`` (default) takes the specification's initial
  values; ``initial='groups'`` the groups' present ``V``, gates and synaptic variables
  (what the next run starts from: after ``G.V = ...`` and before a run, or after
  ``restore()``).
- **Inputs** (current inputs, spike sources), receptors, ``dt`` and refractory periods come
  from the specification.

Both functions work on the runtime targets; in C++ standalone Brian2 knows the values only
after the run, and reading them before is an error that says so.
"""

from __future__ import annotations

from typing import Mapping, Union

import numpy as np

from hh_plugin.model.spec import brian2_unit
from hh_plugin.network.connectivity import Dense, Sparse
from hh_plugin.network.spec import NetworkSpec, Population, Projection

from .network import BrianNetwork

#: Relative difference below which a value read back from Brian2 is the specification's
#: own (unit conversions round in the last bit).
_SAME = 1e-12

INITIAL = ("spec", "groups")


def _scale(unit: str) -> float:
    return float(brian2_unit(unit))


def _read(obj, name: str, unit: str, what: str) -> np.ndarray:
    """Values of a Brian2 variable in the plugin's ``unit`` (float64 array)."""
    try:
        values = np.asarray(getattr(obj, name + "_")[:], dtype=np.float64)
    except NotImplementedError as exc:  # standalone before the run
        raise RuntimeError(f"cannot read {what} from Brian2: {exc} (in standalone mode the "
                           f"values exist only after the run)") from exc
    out = values / _scale(unit)
    if not np.all(np.isfinite(out)):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ValueError(f"{what}: {bad} value(s) are NaN or infinite")
    return out


def _snap(values: np.ndarray, original) -> np.ndarray:
    """``original`` where ``values`` equals it up to unit round-off, else ``values``."""
    original = np.broadcast_to(np.asarray(original, dtype=np.float64), values.shape)
    same = np.abs(values - original) <= _SAME * np.maximum(np.abs(original), 1e-300)
    return np.where(same, original, values)


def _one_or_all(values: np.ndarray):
    """One number if all values are equal (or the variable is shared), else the array."""
    flat = values.reshape(-1)
    return float(flat[0]) if np.all(flat == flat[0]) else flat


def _check_network(net) -> None:
    if not isinstance(net, BrianNetwork):
        raise TypeError(f"expected the BrianNetwork returned by hh_plugin.brian2.network."
                        f"build_network (it knows which Brian2 objects make which "
                        f"projection), got {type(net).__name__}")


def _population(net: BrianNetwork, name: str, initial: str) -> Population:
    spec = net.spec
    pop = spec.populations[name]
    group = net.groups[name]
    if not pop.spikes:
        raise NotImplementedError(f"population {name!r} is a leaky integrator: reading "
                                  f"leaky-integrator populations back from Brian2 is not "
                                  f"supported (take them from the specification)")
    model = pop.model
    changed = {}
    for pname, value in pop.spec.parameters.items():
        read = _read(group, pname, model.units[pname], f"parameter {pname!r} of group "
                     f"{group.name!r}")
        read = _snap(read, value)
        if not np.array_equal(read, np.broadcast_to(value, read.shape)):
            changed[pname] = _one_or_all(read)
    if pop.spec.V_reset is not None and "V_reset" in group.variables:
        read = _snap(_read(group, "V_reset", "mV", f"V_reset of {group.name!r}"),
                     pop.spec.V_reset)
        if not np.array_equal(read, np.broadcast_to(pop.spec.V_reset, read.shape)):
            changed["V_reset"] = _one_or_all(read)
    hh = pop.spec.replace(**changed) if changed else pop.spec
    state = spec.initial_state(name)
    if initial == "groups":
        units = {"V": "mV", **{g: "1" for g in model.gate_names},
                 **{v: s.unit for s in spec.receptors[name].values()
                    for v in s.state_variables},
                 **{v: "1" for s in spec.presynaptic[name].values()
                    for v in s.presynaptic_variables}}
        state = {key: _snap(_read(group, key, unit, f"{key} of group {group.name!r}"),
                            state[key]) for key, unit in units.items()}
    return Population(name, pop.size, hh, initial={k: np.array(v) for k, v in state.items()},
                      refractory=pop.refractory)


def _projection(net: BrianNetwork, proj: Projection) -> Projection:
    spec = net.spec
    conn = spec.connections[proj.name]
    unit = proj.synapse.unit
    dt = spec.dt
    pres, posts, weights, delays = [], [], [], []
    original_delay = np.asarray(conn.delay)
    for S in net.synapses[proj.name]:
        zero = S.name.endswith("_d0")
        pre = np.asarray(S.i[:], dtype=np.int64)
        post = np.asarray(S.j[:], dtype=np.int64)
        w = _read(S, "w", unit, f"weights of Synapses {S.name!r}")
        # one shared value when the Synapses were made with a scalar delay (a graded
        # synapse has no pathway: the state of the step's start, delay 1)
        delay_ms = (np.zeros(pre.shape) if proj.synapse.model.is_graded else np.broadcast_to(
            _read(S, "delay", "ms", f"delays of Synapses {S.name!r}"), pre.shape))
        steps = delay_ms / dt
        whole = np.round(steps)
        if np.any(np.abs(steps - whole) > 1e-6):
            raise ValueError(f"Synapses {S.name!r}: delays must be whole steps of dt = {dt} ms "
                             f"to carry over; got e.g. {delay_ms[np.argmax(np.abs(steps - whole))]}"
                             f" ms")
        if zero:
            if np.any(whole != 0):
                raise ValueError(f"Synapses {S.name!r} deliver spikes in the step they are "
                                 f"emitted (delay 0 steps) and must keep delay 0*ms; change "
                                 f"the delay in the specification instead")
            d = np.zeros(len(pre), dtype=np.int64)
        else:
            d = whole.astype(np.int64) + 1  # delay = (d - 1)*dt
        # weights that are the specification's own, up to the unit conversion, stay exact
        sel = np.nonzero((original_delay == 0) if zero else (original_delay > 0))[0]
        if (len(sel) == len(pre) and np.array_equal(np.asarray(conn.pre)[sel], pre)
                and np.array_equal(np.asarray(conn.post)[sel], post)):
            w = _snap(w, np.asarray(conn.weight)[sel])
        pres.append(pre), posts.append(post), weights.append(w), delays.append(d)
    empty = np.zeros(0, dtype=np.int64)
    pre = np.concatenate(pres) if pres else empty
    post = np.concatenate(posts) if posts else empty
    weight = np.concatenate(weights) if weights else np.zeros(0)
    delay = np.concatenate(delays) if delays else empty
    n_pre, n_post = conn.n_pre, conn.n_post
    key = post * n_pre + pre
    if conn.dense and len(key) == n_pre * n_post and len(np.unique(key)) == len(key):
        matrix = np.empty(n_post * n_pre)
        matrix[key] = weight
        delay_matrix = np.empty(n_post * n_pre, dtype=np.int64)
        delay_matrix[key] = delay
        connectivity = Dense(matrix.reshape(n_post, n_pre))
        delay = delay_matrix.reshape(n_post, n_pre)
    else:
        connectivity = Sparse(pre, post, weight)
    if len(delay) and np.all(delay == delay.flat[0]):
        delay = int(delay.flat[0])
    return Projection(proj.source, proj.target, connectivity, proj.synapse, delay, proj.name,
                      proj.short_term, proj.stdp)


def network_spec_from_brian2(net: BrianNetwork, initial: str = "spec") -> NetworkSpec:
    """The :class:`~hh_plugin.network.NetworkSpec` of a Brian2 network built by
    :func:`~hh_plugin.brian2.network.build_network`, with the synapses (pairs, weights,
    delays) and neuron parameters its Brian2 objects have now.

    Arguments:
        net: the :class:`~hh_plugin.brian2.network.BrianNetwork`.
        initial: ``'spec'`` (the specification's initial state) or ``'groups'`` (the
            groups' present state variables).

    ``NetworkModule(network_spec_from_brian2(net))`` trains it in PyTorch; see the module
    docstring for what is read from Brian2.
    """
    _check_network(net)
    if initial not in INITIAL:
        raise ValueError(f"initial must be one of {INITIAL}, got {initial!r}")
    spec = net.spec
    populations = [_population(net, name, initial) for name in spec.populations]
    projections = [_projection(net, proj) for proj in spec.projections]
    return NetworkSpec(populations, projections,
                       list(spec.currents) + list(spec.sources.values()), dt=spec.dt)


def set_weights(net: BrianNetwork, weights: Union[Mapping, "object"]) -> None:
    """Write weights into the ``Synapses`` of ``net``.

    ``weights``: a :class:`~hh_plugin.torch.network.NetworkModule` (its trained
    ``weights``; also wrapped in ``DistributedDataParallel``) or ``{projection name: values}`` in the synapse model's unit (mS or uA),
    each the ``(target, source)`` matrix of a dense projection or one value per synapse in
    the order of the specification's connection (``spec.connections[name]``). The network's
    synapses must be the pairs of that specification (as for a module made from
    :func:`network_spec_from_brian2` of this network); projections not given keep their
    weights. Call it after ``Network.restore()``, which restores the weights too.
    """
    _check_network(net)
    inner = getattr(weights, "module", None)  # a DistributedDataParallel wrapper
    if hasattr(inner, "weights") and hasattr(inner, "spec"):
        weights = inner
    if hasattr(weights, "weights") and hasattr(weights, "spec"):
        module = weights
        spec = module.spec
        weights = {name: p.detach().cpu().double().numpy() for name, p in
                   module.weights.items()}
    else:
        spec = None
        if not isinstance(weights, Mapping):
            raise TypeError(f"weights must be a NetworkModule or a mapping of projection name "
                            f"to values, got {type(weights).__name__}")
    known = {p.name for p in net.spec.projections}
    unknown = set(weights) - known
    if unknown:
        raise ValueError(f"no projection(s) named {sorted(unknown)}; known: {sorted(known)}")
    for name, values in weights.items():
        conn = (spec or net.spec).connections[name]
        proj = net.spec.projection(name)
        values = np.asarray(values, dtype=np.float64)
        if values.shape == (conn.n_post, conn.n_pre) and conn.dense:
            values = values.reshape(-1)
        if values.shape != (conn.size,):
            matrix = f" or a {(conn.n_post, conn.n_pre)} matrix" if conn.dense else ""
            raise ValueError(f"weights of {name!r}: expected {conn.size} values{matrix}, "
                             f"got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"weights of {name!r} contain NaN or infinite values")
        # the order of the synapses of each Brian2 object, in the connection's list
        pre, post = np.asarray(conn.pre), np.asarray(conn.post)
        lookup = {(int(i), int(j)): k for k, (i, j) in enumerate(zip(pre, post))}
        if len(lookup) != len(pre):
            raise ValueError(f"projection {name!r} has repeated (source, target) pairs: "
                             f"weights cannot be matched to Brian2 synapses by pair")
        unit = brian2_unit(proj.synapse.unit)
        for S in net.synapses[name]:
            i = np.asarray(S.i[:], dtype=np.int64)
            j = np.asarray(S.j[:], dtype=np.int64)
            try:
                index = np.array([lookup[(a, b)] for a, b in zip(i, j)], dtype=np.int64)
            except KeyError as exc:
                raise ValueError(f"Synapses {S.name!r} have a synapse {exc.args[0]} that "
                                 f"projection {name!r} of the weights does not") from None
            S.w = values[index] * unit
