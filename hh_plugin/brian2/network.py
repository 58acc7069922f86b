r"""A ``brian2.Network`` built from a :class:`~hh_plugin.network.NetworkSpec`.

Each population becomes a plugin ``NeuronGroup`` (:func:`~hh_plugin.brian2.neuron_group`:
the model's equations, rising-edge spikes, reset, initial state) extended with its
receptors' variables; each projection becomes ``Synapses`` with a per-synapse weight
``w`` and ``on_pre='<variable>_post += w'``; spike sources become
``SpikeGeneratorGroup``\ s replaying the specification's raster; currents become a
``TimedArray`` (or a constant per-neuron ``I_ext``).

Generated per receptor (see :mod:`hh_plugin.network.synapses`):

- exponential: ``dx/dt = -x/tau_<receptor> : siemens`` (or ``amp``), integrated by
  ``exponential_euler`` as :math:`x e^{-\Delta t/\tau}`;
- pulse: ``x : amp``, cleared right after the group's state update;
- entry: ``I = I_ext + <currents> + <g>*(E - V)``, the ``current`` expression of
  the group. Exponential Euler treats :math:`g (E - V)` as part of the membrane
  conductance, as the torch step does.

**Schedule.** The torch side updates populations one after the other within a step
(``spec.order``) so that a zero-delay spike reaches its target in the same step. Here,
everything that belongs to one population runs in the ``groups`` slot, at
``order = 10 (r + 1) + j`` for the population of rank :math:`r` in ``spec.order``:

====  ===================================================================
 j    object
====  ===================================================================
 0    zero-delay ``Synapses`` into the population (spike delivery)
 1    the group's state update (neurons and synaptic variables)
 2    clearing of pulse variables
 3    ``StateMonitor`` of synaptic variables
 4    threshold (``set_event_schedule('spike', 'groups', ...)``)
 5    ``SpikeMonitor``
====  ===================================================================

Spike sources emit at ``order = 4`` (before every population); each group's copy of ``V``
into ``V_start`` (the rising edge's start of the step) runs in ``before_groups``, before
them all. Projections with delay
:math:`d \ge 1` keep Brian2's ``synapses`` slot with ``delay = (d-1)*dt``: delivered at
the end of step :math:`k + d - 1`, seen by the update of step :math:`k + d`. Resets stay
in the ``resets`` slot. ``StateMonitor``\ s of neuron variables record at ``end`` (the
state after step :math:`k` and its reset); those of synaptic variables right after the
decay (before the deliveries for the next step), both as the torch backend's traces.
"""

from __future__ import annotations

import ast
import sys
import weakref
from typing import Dict, Optional, Sequence

import brian2
import numpy as np

from hh_plugin.model.spec import brian2_unit
from hh_plugin.network.spec import NetworkSpec

from . import _compat
from .equations import _DIMENSIONS as _PLUGIN_DIMENSIONS
from .equations import _PRODUCT, _Printer, _paren, _scalar_text
from .functions import FUNCTION_NAME
from .group import neuron_group
from .leaky_integrator import VARIABLES as LI_VARIABLES
from .leaky_integrator import leaky_integrator_group

#: Brian2 dimension name of a synaptic variable of each plugin unit.
_DIMENSIONS = {"mS": "siemens", "uA": "amp"}


def _order(rank: int, slot: int) -> int:
    return 10 * (rank + 1) + slot


#: Id of the network whose ``before_run`` is under way (the plugin's objects check it).
_PREPARING: list = []


def _all_objects(objects):
    """The objects and, recursively, their contained objects (state updaters, ...)."""
    out, todo = [], list(objects)
    while todo:
        obj = todo.pop()
        out.append(obj)
        todo += list(getattr(obj, "contained_objects", ()))
    return out


def _foreign_run_message(name: str) -> str:
    return (f"'{name}' belongs to the network that hh_plugin's build_network made; Brian2's "
            f"run() and Network objects that hold only part of it cannot run it (they "
            f"would simulate part of it, or nothing): call net.run(steps) on the "
            f"BrianNetwork that build_network returned, and add objects of your own with "
            f"net.network.add(...) first")


def _check_foreign_network(obj, network) -> None:
    """Allow a ``Network`` of the user's that holds every object of the plugin's network
    (one standalone project with objects of both); refuse the magic network and partial
    networks, naming ``net.run``."""
    owner = obj._hh_network()
    complete = (isinstance(network, brian2.Network)
                and not isinstance(network, type(_compat.magic_network()))
                and owner is not None
                and {id(o) for o in owner.objects} <= {id(o) for o in network.objects})
    if not complete:
        raise RuntimeError(_foreign_run_message(obj.name))


def _network_type():
    """``brian2.Network`` that lets the plugin's objects know that they are being prepared
    by their own network (see :class:`BrianNetwork`)."""
    if "cls" not in _NETWORK_TYPE:
        class HHNetwork(brian2.Network):
            __doc__ = _network_type.__doc__

            def before_run(self, run_namespace):
                # objects that a refused magic run() took come back (it ran none of them)
                magic = _compat.magic_network().id
                for obj in _all_objects(self.objects):
                    if obj._network == magic and getattr(obj, "_hh_owner", None) == self.id:
                        obj._network = None
                _PREPARING.append(self.id)
                try:
                    super().before_run(run_namespace)
                finally:
                    _PREPARING.pop()

        _NETWORK_TYPE["cls"] = HHNetwork
    return _NETWORK_TYPE["cls"]


_NETWORK_TYPE: dict = {}


def _own(objects, network) -> None:
    """Tie the plugin's objects (and what they contain) to ``network``.

    Each resolves its names in its own namespace only (the run namespace of the caller
    is for the objects the user adds, so a script's ``i`` or ``w`` cannot clash with the
    plugin's internal names), and refuses to be prepared by Brian2's magic ``run()`` or a
    ``Network`` that holds only part of the plugin's network: a clear error instead of a
    partial or empty simulation.
    """
    ref = weakref.ref(network)
    for obj in _all_objects(objects):
        if getattr(obj, "_hh_owner", None) is not None:
            continue
        original = obj.before_run

        def before_run(run_namespace, _original=original, _obj=obj):
            if not _PREPARING or _PREPARING[-1] != _obj._hh_owner:
                # called by the preparing network's before_run: which network is it?
                _check_foreign_network(_obj, sys._getframe(1).f_locals.get("self"))
            return _original({})

        obj.before_run = before_run
        obj._hh_owner = network.id
        obj._hh_network = ref


class BrianNetwork(brian2.BrianObject):
    """What :func:`build_network` made: the ``network`` and its parts by name.

    ``groups[pop]``, ``sources[name]`` (``SpikeGeneratorGroup``),
    ``synapses[projection]`` (a list: the delayed part and the zero-delay part),
    ``spike_monitors[pop]``, ``state_monitors[pop]`` (``{'neuron': ..., 'synaptic': ...}``);
    ``steps`` the run length the inputs were built for (``None``: any); ``clock`` the
    clock of every object (``network.clock``).

    **A Brian2 object that only** :meth:`run` **runs.** The plugin's objects belong to
    ``network``: Brian2's magic ``run()`` that would include this object or any of theirs
    (``E = net.groups['E']``), or a ``Network`` of the user's that holds part of them,
    raises an error saying to call ``net.run``, instead of simulating part of the network,
    or nothing. Add your own objects with ``net.network.add(...)``; :meth:`run` resolves
    their names in the caller's namespace as ``brian2.run`` does. (A ``Network`` of yours
    that holds every object of ``network``, ``Network(*net.network.objects, ...)``, runs
    it too.)
    """

    add_to_magic_network = True
    invalidates_magic_network = False

    def __init__(self, spec: NetworkSpec, network, groups: Dict[str, object],
                 sources: Dict[str, object], synapses: Dict[str, list],
                 spike_monitors: Dict[str, object], state_monitors: Dict[str, object],
                 steps: Optional[int], extra: Optional[Dict[str, object]] = None,
                 clock=None):
        super().__init__(clock=clock, name="hh_network*")
        self.spec = spec
        self.network = network
        self.groups = groups
        self.sources = sources
        self.synapses = synapses
        self.spike_monitors = spike_monitors
        self.state_monitors = state_monitors
        self.steps = steps
        self.extra = {} if extra is None else extra

    def __del__(self):
        # never part of a network by design: no "object never included" warning
        pass

    def before_run(self, run_namespace):
        raise RuntimeError(
            "Brian2's run() and other Network objects do not simulate the network that "
            "hh_plugin's build_network made: call net.run(steps) on the BrianNetwork it "
            "returned, and add objects of your own with net.network.add(...) first")

    @property
    def steps_run(self) -> int:
        """Steps simulated so far (``network.t / dt``; ``restore()`` moves it back)."""
        return int(round(float(self.network.t_) * 1e3 / self.spec.dt))

    def run(self, steps: Optional[int] = None, namespace=None, level: int = 0,
            **kwargs) -> None:
        """Run ``steps`` steps (default: what is left of the ``steps`` built for).

        ``namespace``: names for the objects you added (``net.network.add(...)``); by
        default they are resolved where ``run`` is called (``level``: frames further up),
        as ``brian2.run`` does. The plugin's own objects use their own namespaces only.
        ``kwargs`` go to ``Network.run`` (``report``, ...).

        Raises ``ValueError`` when the run would go past the end of the inputs built
        (spike sources drawn and currents given for ``steps`` steps): build the network
        for the total length of all runs.
        """
        import brian2

        done = self.steps_run
        if steps is None:
            if self.steps is None:
                raise ValueError("give the number of steps to run")
            steps = self.steps - done
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"steps must be a whole number >= 0, got {steps!r}")
        if self.steps is not None and done + steps > self.steps:
            raise ValueError(
                f"the network's inputs were built for {self.steps} steps and it has run "
                f"{done}; {steps} more would go past their end (the spike sources would "
                f"stop and time-varying currents hold their last value): build it with "
                f"steps= the total length of all runs")
        if namespace is None:
            namespace = brian2.get_local_namespace(level=level + 1)
        self.network.run(int(steps) * self.spec.dt * brian2.ms, namespace=namespace,
                         **kwargs)

    def spike_raster(self, population: str, steps: int) -> np.ndarray:
        """``(steps, N)`` 0/1 spikes of a population (row = step)."""
        import brian2

        out = np.zeros((steps, self.spec.populations[population].size))
        if population not in self.spike_monitors:  # a leaky integrator: no spikes
            return out
        mon = self.spike_monitors[population]
        k = np.round(np.asarray(mon.t / brian2.ms) / self.spec.dt).astype(np.int64)
        keep = k < steps
        out[k[keep], np.asarray(mon.i)[keep]] = 1.0
        return out

    def spikes(self, population: str):
        """``(step, index)`` integer arrays of a population's spikes."""
        import brian2

        mon = self.spike_monitors[population]
        k = np.round(np.asarray(mon.t / brian2.ms) / self.spec.dt).astype(np.int64)
        return k, np.asarray(mon.i, dtype=np.int64)

    def recorded(self, population: str) -> tuple:
        """The variables recorded for a population, by the plugin's names (a leaky
        integrator's ``i``, not Brian2's ``i_syn``)."""
        back = {} if self.spec.populations[population].spikes else {
            brian: norse for norse, brian in LI_VARIABLES.items()}
        return tuple(back.get(v, v) for m in self.state_monitors.get(population, {}).values()
                     for v in m.record_variables)

    def trace(self, population: str, variable: str) -> np.ndarray:
        """``(T, N)`` recorded values in the plugin's units (mV, mS, uA or 1)."""
        monitors = self.state_monitors[population]
        if not self.spec.populations[population].spikes:
            variable = LI_VARIABLES.get(variable, variable)
        mon = next(m for m in monitors.values() if variable in m.record_variables)
        values = getattr(mon, variable + "_")  # SI values without units
        unit = _trace_unit(self.spec, population, variable)
        return np.asarray(values).T / unit


def _trace_unit(spec: NetworkSpec, population: str, variable: str) -> float:
    if variable == "V":
        return 1e-3
    for syn in spec.receptors[population].values():
        if variable in syn.state_variables:
            return 1e-3 if syn.unit == "mS" else 1e-6
    return 1.0


def _renamed(text: str, names: Dict[str, str]) -> str:
    """The expression text with each name of the definition replaced by its
    population-level name (the text was checked by the definition's parser)."""
    tree = ast.parse(text.strip(), mode="eval")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names:
            node.id = names[node.id]
    return ast.unparse(tree)


def _receptor_brian2(syn, held: bool, dt: float):
    r"""``(lines, terms, after, constants)`` of one receptor, generated from its definition
    (:mod:`hh_plugin.network.synapses`): the equation lines of its states, output and
    factor; the membrane current terms; the statements run right after the group's update
    (pulses cleared; the exact propagator of states held over the update); the namespace
    constants (``<parameter>_<receptor>`` as Brian2 quantities).

    A state whose dynamics are diagonal is written as the definition writes it,
    ``dA_nmda/dt = -A_nmda/tau_rise_nmda : siemens`` (``exponential_euler`` integrates it
    exactly, :math:`A e^{-\Delta t/\tau}`); coupled states (the alpha function), and every
    state with ``held``, are parameters of the update advanced after it by the
    definition's propagator :math:`x \leftarrow e^{A\Delta t} x` (the numbers the torch
    backend uses)."""

    model, r = syn.model, syn.receptor
    dim = _DIMENSIONS[syn.unit]
    names = {p: f"{p}_{r}" for p in model.parameter_names}
    names.update({x: syn.state_variable(x) for x in model.state_names})
    constants = {f"{p.name}_{r}": syn.parameters[p.name] * brian2_unit(p.unit)
                 if p.unit != "1" else syn.parameters[p.name] for p in model.parameters}
    units = {names[p.name]: p.unit for p in model.parameters}
    units.update({syn.state_variable(x): syn.unit for x in model.state_names})
    printer = _Printer(units, {"exprel": FUNCTION_NAME})
    derived = {d for d, _ in model.derived}
    lines, terms, after = [], [], []
    variables = syn.state_variables
    if model.is_graded:  # the summed target of the projection's `(summed)` variable
        lines.append(f"{syn.variable} : {dim}")
    elif model.is_pulse:
        for var in variables:
            lines.append(f"{var} : {dim}")
            after.append(f"{var} = 0*{dim}")
    elif model.is_single_exponential:  # the original one-state models, as they always read
        var, tau = variables[0], f"tau_{r}"
        if held:  # a parameter of the update, decayed exactly after it (as on torch)
            lines.append(f"{var} : {dim}")
            after.append(f"{var} *= exp(-dt/{tau})")
        else:
            lines.append(f"d{var}/dt = -{var}/{tau} : {dim}")
    else:
        texts = []
        if model.is_diagonal and not held:
            for state in model.states:
                text = None
                if not (_symbols(state.dynamics) & derived):
                    renamed = _renamed(state.dynamics, names)
                    native = printer.native(ast.parse(renamed, mode="eval").body)
                    if native is not None and native[2] == _rate_dimension(syn.unit):
                        text = native[0]
                texts.append(text)
        if texts and all(t is not None for t in texts):
            lines += [f"d{var}/dt = {text} : {dim}" for var, text in zip(variables, texts)]
        else:
            lines += [f"{var} : {dim}" for var in variables]
            P = syn.propagator(dt)
            n = len(variables)
            if model.is_diagonal:
                after += [f"{var} *= {float(P[i, i])!r}" for i, var in enumerate(variables)]
            else:
                after += [f"{var}_start = {var}" for var in variables]
                for i, var in enumerate(variables):
                    parts = [f"{float(P[i, j])!r}*{variables[j]}_start" for j in range(n)
                             if P[i, j] != 0.0]
                    after.append(f"{var} = " + (" + ".join(parts) if parts else f"0*{dim}"))
    # the output: the one state itself, or a subexpression as the definition writes it
    coefficients = syn.output_coefficients()
    single = [v for v, k in zip(variables, coefficients) if k]
    if model.is_graded:
        output = syn.variable
    elif len(single) == 1 and coefficients[variables.index(single[0])] == 1.0:
        output = single[0]
    else:
        output = syn.variable
        text = None
        if not (_symbols(model.output) & derived):
            native = printer.native(ast.parse(_renamed(model.output, names), mode="eval").body)
            if native is not None and native[2] == _PLUGIN_DIMENSIONS[syn.unit]:
                text = native[0]
        if text is None:
            text = " + ".join(f"{k!r}*{v}" for k, v in zip(coefficients, variables) if k)
        lines.append(f"{output} = {text} : {dim}")
    if model.is_conductance:
        entry = output
        if model.factor is not None:
            factor_names = dict(names)
            for d, _ in model.derived:  # dimensionless numbers in the factor
                factor_names[d] = f"{d}_{r}"
            values = model.compiled.function("derived", "numpy")(*syn.parameter_values)
            for (d, _), value in zip(model.derived, values):
                constants[f"{d}_{r}"] = float(value)
            text, _ = printer.quantity(_renamed(model.factor, factor_names), "1")
            lines.append(f"factor_{r} = {text} : 1 (constant over dt)")
            entry = f"{output}*factor_{r}"
        terms.append(f"{entry}*({_scalar_text(syn.reversal_potential, 'mV')} - V)")
    else:
        terms.append(output)
    return lines, terms, after, constants


def _presynaptic_brian2(syn):
    """``(lines, start, constants)`` of a graded synapse on its source population: the
    presynaptic states' equations as the definition writes them
    (``ds_gaba/dt = alpha_gaba/(1.0 + exp(...))*(1 - s_gaba) - beta_gaba*s_gaba : 1``,
    integrated by the group's exponential Euler with the step's start ``V``), a copy
    ``s_gaba_start : 1`` of each made in ``before_groups`` (what the projection's summed
    variable reads, the state of the step's start as on torch), and the namespace
    constants."""
    model, r = syn.model, syn.receptor
    names = {p: f"{p}_{r}" for p in model.parameter_names}
    names.update({x: syn.state_variable(x) for x in model.presynaptic_names})
    constants = {f"{p.name}_{r}": syn.parameters[p.name] * brian2_unit(p.unit)
                 if p.unit != "1" else syn.parameters[p.name] for p in model.parameters}
    units = {names[p.name]: p.unit for p in model.parameters}
    units.update({v: "1" for v in syn.presynaptic_variables})
    printer = _Printer(units, {"exprel": FUNCTION_NAME})
    if model.derived:
        raise ValueError(f"graded synapse model {model.name!r}: derived values are not "
                         f"written for Brian2 yet")
    lines, start = [], []
    for x, var in zip(model.presynaptic, syn.presynaptic_variables):
        text, _ = printer.quantity(_renamed(x.dynamics, names), "1/ms")
        lines += [f"d{var}/dt = {text} : 1", f"{var}_start : 1"]
        start.append(f"{var}_start = {var}")
    return lines, start, constants


def _transmit_brian2(syn) -> str:
    """The graded signal as the projection reads it (``s_gaba_start_pre``)."""
    model, r = syn.model, syn.receptor
    names = {p: f"{p}_{r}" for p in model.parameter_names}
    names.update({x: f"{syn.state_variable(x)}_start_pre" for x in model.presynaptic_names})
    units = {names[p.name]: p.unit for p in model.parameters}
    units.update({f"{v}_start_pre": "1" for v in syn.presynaptic_variables})
    return _Printer(units, {"exprel": FUNCTION_NAME}).quantity(
        _renamed(model.transmit, names), "1")[0]


def _stdp(rule, unit: str):
    """``(model, on_pre lines, on_post, namespace)`` of a projection's plasticity rule
    (:class:`~hh_plugin.network.synapses.Plasticity`), generated from its definition as
    Brian2's ``examples/synapses/STDP.py`` writes additive STDP: the weight ``w`` a
    variable of the synapses, each trace an ``(event-driven)`` variable of the synapses
    (``a_pre`` is ``a_pre_trace``, parameters ``<name>_rule``: Brian2 reads a trailing
    ``_pre``/``_post`` as the pre-/postsynaptic group's variable), ``on_pre``/``on_post``
    the definition's statements in order, ``x += increment`` and
    ``w = clip(w + f, w_lo, w_hi)``."""
    import brian2

    model = rule.model
    dim = _DIMENSIONS[unit]
    names = {p: f"{p}_rule" for p in model.parameter_names}
    traces = model.pre_trace_names + model.post_trace_names
    names.update({x: f"{x}_trace" for x in traces})
    units = {names[p.name]: unit if p.unit == "w" else p.unit for p in model.parameters}
    units.update({names[x]: unit for x in traces})
    units["w"] = unit
    printer = _Printer(units, {"exprel": FUNCTION_NAME})
    namespace = {}
    for p in model.parameters:
        value = rule.parameters[p.name]
        namespace[names[p.name]] = (value * brian2_unit(unit) if p.unit == "w" else
                                    value * brian2.ms if p.unit == "ms" else value)
    lines = [f"w : {dim}"]
    for x, rate in zip(model.pre_traces + model.post_traces, model._compiled["rates"]):
        text, prec = printer.quantity(_renamed(str(-rate), names), "1/ms")
        lines.append(f"d{names[x.name]}/dt = -{_paren(text, prec, _PRODUCT)}*{names[x.name]} "
                     f": {dim} (event-driven)")
    lo, hi = (printer.quantity(_renamed(b, names), unit)[0] for b in model.bounds)

    def statements(key):
        out = []
        for target, text in getattr(model, key):
            value = printer.quantity(_renamed(text, names), unit)[0]
            if target == "w":
                out.append(f"w = clip(w + {value}, {lo}, {hi})")
            else:
                out.append(f"{names[target]} += {value}")
        return "\n".join(out) if out else None

    return "\n".join(lines), statements("on_pre") or "", statements("on_post"), namespace


def _symbols(text: str) -> set:
    return {n.id for n in ast.walk(ast.parse(text.strip(), mode="eval"))
            if isinstance(n, ast.Name)}


def _rate_dimension(unit: str) -> tuple:
    return tuple(a - b for a, b in zip(_PLUGIN_DIMENSIONS[unit], _PLUGIN_DIMENSIONS["ms"]))


def _receptor_equations(spec: NetworkSpec, population: str, held: bool = False):
    """Extra equations, current terms, the statements run after the update and the
    namespace constants of a population's receptors (:func:`_receptor_brian2`)."""
    lines, terms, pulses, constants = [], [], [], {}
    for syn in spec.receptors[population].values():
        l, t, a, c = _receptor_brian2(syn, held, spec.dt)
        lines += l
        terms += t
        pulses += a
        constants.update(c)
    return lines, terms, pulses, constants


def _on_pre(syn, weight: str = "w") -> str:
    """The ``on_pre`` code of a projection onto a receptor: ``x_post += c*w`` per state
    the definition's ``on_pre`` changes (``x_post += w`` when ``c`` is 1)."""
    lines = []
    for var, c in zip(syn.state_variables, syn.increments()):
        if c == 1.0:
            lines.append(f"{var}_post += {weight}")
        elif c != 0.0:
            lines.append(f"{var}_post += {c!r}*{weight}")
    return "\n".join(lines)


def _short_term(stp):
    """``(model lines, on_pre lines, namespace)`` of Tsodyks-Markram plasticity on a
    projection, as Brian2's ``examples/synapses/short_term_plasticity.py`` writes it:
    ``u_stp`` and ``x_stp`` per synapse, ``(event-driven)`` (exact relaxation since the
    last spike), and the release ``r_stp = u_stp*x_stp`` weighting the spike."""
    import brian2

    model = ("\ndu_stp/dt = (U_stp - u_stp)/tau_facil_stp : 1 (event-driven)"
             "\ndx_stp/dt = (1 - x_stp)/tau_rec_stp : 1 (event-driven)")
    on_pre = "r_stp = u_stp*x_stp\nx_stp -= r_stp\nu_stp += U_stp*(1 - u_stp)\n"
    namespace = {"U_stp": stp.U, "tau_facil_stp": stp.tau_facil * brian2.ms,
                 "tau_rec_stp": stp.tau_rec * brian2.ms}
    return model, on_pre, namespace


def build_network(spec: NetworkSpec, steps: Optional[int] = None,
                  record: Sequence[str] = ("V",), record_spikes: bool = True,
                  method: Optional[str] = None, name_prefix: str = "",
                  **group_kwargs) -> BrianNetwork:
    r"""Build the Brian2 network of ``spec`` (in the current Brian2 device).

    Arguments:
        spec: the :class:`~hh_plugin.network.NetworkSpec`.
        steps: the run length in steps; needed when the specification has spike
            sources (their spikes are generated for it) or time-varying currents
            (checked against their length).
        record: state variables recorded for every population (``'V'``, gates,
            synaptic variables), all neurons, at the end of each step; ``()``: none.
        record_spikes: add a ``SpikeMonitor`` per population.
        method: ``None`` (default): each population's ``spec.method``
            (:mod:`hh_plugin.model.integrators`; the torch network integrates the same);
            a method name overrides it for every HH population (``neuron_group``'s
            ``method``). With ``'rk4'`` a population's receptor variables are held over
            the step in its membrane equation and decay exactly after it
            (``x *= exp(-dt/tau)``), as on torch. Leaky integrators integrate with
            exponential Euler.
        name_prefix: prefix of every object name (several networks in one process).
        **group_kwargs: passed to every ``NeuronGroup`` (e.g. ``dtype``).

    The network runs on the runtime targets and in C++ standalone or Brian2CUDA (build it
    inside :func:`~hh_plugin.brian2.use_device`); :meth:`BrianNetwork.run` runs it.

    **Clock.** Every object runs on a clock of its own with ``dt = spec.dt``
    (``net.clock``; give it to objects of yours with ``clock=net.clock``), so
    ``defaultclock.dt`` stays as it was and the script's other objects keep their step.
    Under Brian2CUDA, whose templates refer to the default clock by name, the objects run
    on ``defaultclock`` and its ``dt`` is set to ``spec.dt``.
    """
    import brian2

    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
    if spec.sources and steps is None:
        raise ValueError("the specification has spike sources: give steps= (their spikes "
                         "are drawn for that many steps)")
    timed = [c.steps for c in spec.currents if not c.is_constant]
    if timed and steps is not None and steps > min(timed):
        raise ValueError(f"a current input has {min(timed)} steps; cannot build for {steps}")
    dt = spec.dt * brian2.ms
    if _is_cuda_device():
        # Brian2CUDA's templates refer to the default clock by name
        brian2.defaultclock.dt = dt
        clock = brian2.defaultclock
    else:
        clock = brian2.Clock(dt, name=f"{name_prefix}hh_clock*")
    prefix = name_prefix
    objects = []
    groups, sources, synapses, spike_mons, state_mons = {}, {}, {}, {}, {}
    rank = {name: r for r, name in enumerate(spec.order)}

    for name, source in spec.sources.items():
        k, i = source.spikes(steps, spec.dt)
        gen = brian2.SpikeGeneratorGroup(source.size, i, (k * spec.dt) * brian2.ms, clock=clock,
                                         when="groups", order=4, name=f"{prefix}{name}")
        sources[name] = gen
        objects.append(gen)

    for name, pop in spec.populations.items():
        r = rank[name]
        effective = getattr(pop.spec, "method", None) if method is None else method
        held = pop.spikes and effective == "rk4"
        lines, terms, pulses, constants = _receptor_equations(spec, name, held=held)
        starts = []
        for syn in spec.presynaptic[name].values():
            pre_lines, pre_start, pre_constants = _presynaptic_brian2(syn)
            lines += pre_lines
            starts += pre_start
            constants.update(pre_constants)
        namespace = dict(constants)
        current_terms = []
        constant_current = None
        if any(c.target == name for c in spec.currents):
            if timed and any(not c.is_constant for c in spec.currents if c.target == name):
                length = min(c.steps for c in spec.currents
                             if c.target == name and not c.is_constant)
                table = spec.current_table(name, length)
                namespace[f"I_ext_{name}"] = brian2.TimedArray(table * brian2.uA, dt=dt)
                lines.append(f"I_ext = I_ext_{name}(t, i) : amp")
            else:
                constant_current = spec.current_table(name, 1)[0]
                lines.append("I_ext : amp (constant)")
            current_terms.append("I_ext")
        current_terms += terms
        current = " + ".join(current_terms) if current_terms else "parameter"
        state = spec.initial_state(name)
        if pop.spikes:
            ref_steps = pop.refractory_steps(spec.dt)
            if ref_steps is not None:
                group_kwargs_pop = {**group_kwargs, "refractory": ref_steps * spec.dt}
            else:
                group_kwargs_pop = group_kwargs
            group = neuron_group(pop.size, pop.spec, current=current, V_init=state["V"],
                                 method=method, extra_equations="\n".join(lines) or None,
                                 namespace=namespace, clock=clock, order=_order(r, 1),
                                 name=f"{prefix}{name}", **group_kwargs_pop)
            for gate in pop.model.gate_names:
                setattr(group, gate, state[gate])
            group.set_event_schedule("spike", when="groups", order=_order(r, 4))
        else:
            group = leaky_integrator_group(
                pop.size, pop.spec, state, current if current_terms else None, lines,
                namespace, clock, _order(r, 1), f"{prefix}{name}",
                method=method or "exponential_euler")
        for syn in spec.receptors[name].values():
            for var in syn.state_variables:
                setattr(group, var, state[var] * brian2_unit(syn.unit))
        for syn in spec.presynaptic[name].values():
            for var in syn.presynaptic_variables:
                setattr(group, var, state[var])
        if starts:  # the presynaptic states of the step's start, for the summed variables
            group.run_regularly("\n".join(starts), when="before_groups",
                                name=f"{prefix}{name}_presynaptic_start")
        if constant_current is not None:
            group.I_ext = constant_current * brian2.uA
        if pulses:  # the regular operation is contained in the group
            group.run_regularly("\n".join(pulses), when="groups", order=_order(r, 2),
                                name=f"{prefix}{name}_clear_pulses")
        groups[name] = group
        objects.append(group)
        if record_spikes and pop.spikes:
            mon = brian2.SpikeMonitor(group, name=f"{prefix}{name}_spikes")
            mon.when, mon.order = "groups", _order(r, 5)
            spike_mons[name] = mon
            objects.append(mon)

    for proj in spec.projections:
        conn = spec.connections[proj.name]
        source = groups.get(proj.source, sources.get(proj.source))
        target = groups[proj.target]
        syn = proj.synapse
        dim = _DIMENSIONS[syn.unit]
        parts = []
        delay = np.asarray(conn.delay)
        if syn.model.is_graded:  # no spikes: the summed conductance of the presynaptic states
            S = brian2.Synapses(
                source, target, clock=clock, namespace={}, name=f"{prefix}{proj.name}",
                model=f"w : {dim} (constant)\n"
                      f"{syn.variable}_post = w*{_transmit_brian2(syn)} : {dim} (summed)")
            S.connect(i=np.asarray(conn.pre), j=np.asarray(conn.post))
            S.w = np.asarray(conn.weight) * brian2_unit(syn.unit)
            synapses[proj.name] = [S]
            objects.append(S)
            continue
        for zero in (False, True):
            sel = np.nonzero((delay == 0) if zero else (delay > 0))[0]
            if len(sel) == 0:
                continue
            suffix = "_d0" if zero else ""
            uniform = not zero and np.all(delay[sel] == delay[sel][0])
            kwargs = {}
            if uniform:
                kwargs["delay"] = (int(delay[sel][0]) - 1) * dt
            model, on_pre, namespace = f"w : {dim} (constant)", _on_pre(syn), {}
            on_post = None
            if proj.short_term is not None:
                extra, release, namespace = _short_term(proj.short_term)
                model += extra
                on_pre = release + _on_pre(syn, "w*r_stp")
            if proj.stdp is not None:
                model, stdp_pre, on_post, stdp_namespace = _stdp(proj.stdp, syn.unit)
                model += extra if proj.short_term is not None else ""
                on_pre = on_pre + "\n" + stdp_pre
                namespace = {**namespace, **stdp_namespace}
            S = brian2.Synapses(source, target, model=model,
                                on_pre=on_pre, on_post=on_post, clock=clock,
                                namespace=namespace, name=f"{prefix}{proj.name}{suffix}",
                                **kwargs)
            if on_post is not None:  # post before pre within the synapses slot (as torch)
                S.post.order = S.pre.order - 1
            S.connect(i=np.asarray(conn.pre)[sel], j=np.asarray(conn.post)[sel])
            S.w = np.asarray(conn.weight)[sel] * brian2_unit(syn.unit)
            if proj.short_term is not None:
                S.u_stp = proj.short_term.U
                S.x_stp = 1.0
            if zero:
                S.pre.when, S.pre.order = "groups", _order(rank[proj.target], 0)
            elif not uniform:
                S.delay = (delay[sel] - 1) * dt
            parts.append(S)
            objects.append(S)
        synapses[proj.name] = parts

    record = tuple(record)
    for name, group in groups.items():
        synaptic = {v for s in spec.receptors[name].values() for v in s.state_variables}
        if not spec.populations[name].spikes:
            names = [LI_VARIABLES.get(v, v) for v in record]
        else:
            names = list(record)
        neuron = [v for v in names if v in group.variables and v not in synaptic]
        syn_vars = [v for v in record if v in synaptic]
        monitors = {}
        if neuron:
            monitors["neuron"] = brian2.StateMonitor(group, neuron, record=True, when="end",
                                                     name=f"{prefix}{name}_states")
        if syn_vars:
            monitors["synaptic"] = brian2.StateMonitor(
                group, syn_vars, record=True, when="groups", order=_order(rank[name], 3),
                name=f"{prefix}{name}_synaptic_states")
        if monitors:
            state_mons[name] = monitors
            objects += list(monitors.values())

    network = _network_type()(*objects, name=f"{prefix}hh_network*")
    _own(objects, network)
    limit = steps if steps is not None else (min(timed) if timed else None)
    return BrianNetwork(spec, network, groups, sources, synapses, spike_mons, state_mons,
                        limit, clock=clock)


def _is_cuda_device() -> bool:
    """Whether the active Brian2 device is Brian2CUDA's ``cuda_standalone``."""
    return "cuda" in type(brian2.get_device()).__name__.lower()
