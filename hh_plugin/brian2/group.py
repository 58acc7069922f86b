r"""A ready-to-run Brian2 ``NeuronGroup`` of the model in an :class:`~hh_plugin.model.HHSpec`.

**Spike rule** (the reference model's, BrainPy's ``brainpy.state.HH``): neuron :math:`j`
spikes in the step that takes it from :math:`V < V_{th}` to :math:`V \ge V_{th}`, once
per upward crossing, exactly as the torch backend. In Brian2 this is
``threshold='V >= V_th and V_start < V_th'`` where ``V_start : volt`` is the membrane
potential at the start of the step (after the previous step's reset), copied from ``V``
by the group's ``<name>_V_start`` operation in the ``before_groups`` slot, and a
refractory period of 0 ms: an ``(unless refractory)`` flag of the user's equations is
then never held (``not_refractory`` is true again at the next step's update), and with
``refractory=<duration>`` it is held for that period only. A neuron that starts above
threshold does not spike in step 0.

With ``refractory=<duration>`` the rule is instead Brian2's absolute refractory period, as
Brian2 scripts such as ``examples/COBAHH.py`` write it: a neuron spikes in a step that
ends with :math:`V \ge V_{th}` if at least that long (rounded to steps) has passed since
its last spike.

With ``spec.V_reset`` set, the spiking step also resets the membrane, right after the
update (Brian2's reset slot of the same time step):

- ``'soft'``: :math:`V \leftarrow V - (V_{th} - V_{reset})`,
- ``'hard'``: :math:`V \leftarrow V_{reset}`.

**Initial state.** ``V`` starts from ``V_init``; a random draw (the model's default
distribution, ``'uniform'``) is a Brian2 expression (``-70*mV + 10*mV*rand()``,
``randn()`` for a normal distribution) that Brian2 evaluates, so ``brian2.seed()``
governs it, also inside a standalone binary; with ``seed=k`` the draw is numpy's
``default_rng(k)``, identical to :func:`hh_plugin.initial_state` and the torch backend.
The dynamic gates start at the model's declared constants (``V_init='default'`` only)
or at their steady state, the group code ``x = x_inf`` evaluated from ``V``
(with ``seed=k``: numpy's values, as the torch backend's). :func:`set_steady_state`
does the same after creation.
"""

from __future__ import annotations

import numbers
import re
import warnings
from typing import Dict, Optional

import numpy as np

from hh_plugin.model.definition import VoltageDistribution
from hh_plugin.model.initial import DEFAULT, UNIFORM, VOLTAGE_MARKERS, initial_state
from hh_plugin.model.integrators import DEFAULT_METHOD, METHODS
from hh_plugin.model.limits import check_step, warn_if_implausible
from hh_plugin.model.quantities import convert, unit_expression
from hh_plugin.model.spec import HHSpec, brian2_unit, to_plain

from . import _compat
from .equations import PARAMETER_CURRENT, equations
from .shared import check_shared_assignment
from .functions import namespace as functions_namespace
from .methods import state_updater
from .spike_times import EQUATION as spike_time_equation
from .spike_times import add_recording as add_spike_time_recording

#: Plain numbers for ``V`` are in mV; outside this range they are refused (units hint).
PLAUSIBLE_VOLTAGE_MV = 1000.0
#: Plain numbers for a current are in uA; :math:`\max |I|/C` (mV/ms) must lie in this range.
PLAUSIBLE_CURRENT_DENSITY = (1e-4, 1e5)
#: mV/ms: plain-number currents with :math:`\max |I|/C` above this draw a warning (the
#: steepest spike upstroke is about 300 mV/ms; 0.5 uA into a Traub & Miles cell of
#: 0.2 nF gives 2500 mV/ms, likely meant as 0.5 nA).
PLAIN_CURRENT_RATE = 1e3

_SPIKE_RULE_HINT = (
    "the spike rule is the model's (a spike when V crosses V_th upwards, once per "
    "crossing, as on every backend): change the threshold level with the spec "
    "(HHSpec(V_th=...)) or between runs (group.V_th = ...), or watch another condition "
    "with a custom event (events={'name': 'condition'}, then EventMonitor or "
    "group.run_on_event)")
_LEVEL_CONDITION = re.compile(r"^\s*V\s*(>=|>)\s*(?P<level>.+?)\s*$")


def _threshold_as_spec(threshold, spec: HHSpec) -> HHSpec:
    """Brian2's ``threshold='V > 0*mV'`` (or ``>=``, any constant voltage expression) as
    the specification's threshold level: ``spec`` with its threshold parameter set, so the
    group keeps the model's spike rule (one spike per upward crossing, identical on every
    backend). Any other condition is refused with the reason."""
    match = _LEVEL_CONDITION.match(threshold) if isinstance(threshold, str) else None
    if match is None:
        raise TypeError(f"neuron_group does not take threshold={threshold!r}: only a level "
                        f"for V ('V > 0*mV') becomes the model's threshold; "
                        + _SPIKE_RULE_HINT)
    name = spec.model.threshold
    try:
        level = to_plain(unit_expression(match.group("level"), "threshold"), "mV",
                         "threshold")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"neuron_group does not take threshold={threshold!r}: {exc}; only a "
                        f"constant level for V ('V > 0*mV') becomes the model's threshold; "
                        + _SPIKE_RULE_HINT) from None
    return spec.replace(**{name: float(level)})


_REFUSED_KWARGS = {
    "model": "neuron_group builds the model's equations from the spec; add equations of "
             "your own with extra_equations=... (a string or brian2.Equations)",
}


def _check_n(N) -> int:
    if isinstance(N, bool) or not isinstance(N, (numbers.Integral, np.integer)):
        raise TypeError(f"N must be a positive integer, got {N!r}")
    if N < 1:
        raise ValueError(f"N must be a positive integer, got {N}")
    return int(N)


def _check_method(method):
    from brian2 import StateUpdateMethod

    methods = _compat.integration_methods()
    names = [method] if isinstance(method, str) else method
    if isinstance(names, (list, tuple)) and names and all(isinstance(m, str) for m in names):
        unknown = [m for m in names if m not in methods]
        if unknown:
            raise ValueError(f"unknown integration method(s) {unknown}; Brian2 knows "
                             f"{sorted(methods)}")
        return method
    if isinstance(method, StateUpdateMethod):
        return method
    raise TypeError(f"method must be a Brian2 method name, a list of names or a "
                    f"StateUpdateMethod, got {method!r}")


_GROUP_TYPE: dict = {}


def _check_dt(group) -> None:
    check_step(float(group.clock.dt_) * 1e3, group._hh_model,
               "Brian2's dt is the group's dt= or defaultclock.dt",
               getattr(group, "_hh_method", DEFAULT_METHOD))


def _group_type():
    """``brian2.NeuronGroup`` that refuses, at every run (runtime and standalone devices), a
    ``dt`` longer than its model's ``max_dt`` (:mod:`hh_plugin.model.limits`)."""
    if "cls" not in _GROUP_TYPE:
        import brian2

        class HHNeuronGroup(brian2.NeuronGroup):
            __doc__ = _group_type.__doc__

            def before_run(self, run_namespace):
                _check_dt(self)
                super().before_run(run_namespace)

            def __setattr__(self, key, value, level=0):
                check_shared_assignment(self, key, value)
                if key in self.__dict__.get("variables", ()) and \
                        key not in self.__dict__.get("_linked_variables", ()):
                    # a state variable: Group's own assignment, with names resolved in
                    # the caller's frame (Brian2 2.8's NeuronGroup.__setattr__ takes no
                    # level and calls it the same way)
                    brian2.Group.__setattr__(self, key, value, level=level + 1)
                else:
                    super().__setattr__(key, value)

        _GROUP_TYPE["cls"] = HHNeuronGroup
    return _GROUP_TYPE["cls"]


# ------------------------------------------------------------------ plain numbers
def _is_quantity(value) -> bool:
    return hasattr(value, "dim") and hasattr(value, "has_same_dimensions")


def voltage_values(value, name: str = "V_init") -> np.ndarray:
    """Float64 mV from a Brian2 quantity (volt) or plain numbers in mV.

    Plain numbers outside :math:`\\pm` :data:`PLAUSIBLE_VOLTAGE_MV` mV, or all below 1 mV
    in magnitude (``-0.065``: volts), are refused with a hint about units.
    """
    quantity = _is_quantity(value)
    values = np.asarray(to_plain(value, "mV", name), dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if not quantity and values.size:
        top = float(np.max(np.abs(values)))
        if top > PLAUSIBLE_VOLTAGE_MV or 0.0 < top < 1.0:
            raise ValueError(
                f"{name}: plain numbers are membrane potentials in mV, and {top:g} mV is "
                f"implausible (volts given as numbers?); pass a Brian2 quantity such as "
                f"-65*mV, or the number of mV")
    return values


def _current_values(current, N: int, spec: HHSpec) -> np.ndarray:
    """A constant current (quantity in amp or per area, or number(s) in uA) as floats in
    amp. Plain numbers that move ``V`` faster than :data:`PLAIN_CURRENT_RATE` draw an
    :class:`~hh_plugin.model.limits.ImplausibleInputWarning` naming the unit."""
    quantity = _is_quantity(current)
    current = convert(current, "uA", "current", spec.area) if quantity else current
    values = np.asarray(to_plain(current, "uA", "current"), dtype=np.float64)
    if values.ndim == 1 and len(values) != N:
        raise ValueError(f"current has {len(values)} values for a population of {N} neurons")
    if not np.all(np.isfinite(values)):
        raise ValueError("current contains NaN or infinite values")
    if not quantity and np.any(values != 0):
        capacitance = np.broadcast_to(spec.parameters[spec.model.capacitance], (N,))
        density = float(np.max(np.abs(np.broadcast_to(values, (N,)) / capacitance)))
        low, high = PLAUSIBLE_CURRENT_DENSITY
        if not low <= density <= high:
            raise ValueError(
                f"current: plain numbers are in uA, and max |I|/C = {density:g} mV/ms "
                f"(capacitance {spec.model.capacitance} in uF) is implausible (amps or nA "
                f"given as numbers?); pass a Brian2 quantity such as 10*uA or 0.5*nA")
        if density > PLAIN_CURRENT_RATE:
            _warn_plain_current(float(np.max(np.abs(values))), density, spec)
    return values * 1e-6


def _warn_plain_current(peak_uA: float, rate: float, spec: HHSpec) -> None:
    from hh_plugin.model.limits import ImplausibleInputWarning

    model = spec.model
    C = np.min(spec.parameters[model.capacitance])
    patch = "" if spec.area is None else f", a patch of {spec.area:,.6g} um2"
    warnings.warn(
        f"current: plain numbers are in uA, and {peak_uA:g} uA into model {model.name!r} "
        f"(capacitance {C:g} uF{patch}) moves V at up to {rate:.3g} mV/ms, beyond any "
        f"spike (about 300 mV/ms): if you meant nA or a density, pass a Brian2 quantity "
        f"({peak_uA:g}*nA, or e.g. 10*uA/cm**2, converted with the patch area)",
        ImplausibleInputWarning, stacklevel=4)


# --------------------------------------------------------------- extensions, checks
def _extra_equations(eqs, extra):
    """The generated equations plus the caller's (text or ``brian2.Equations``); a name
    defined twice is refused, naming it."""
    import brian2

    if isinstance(extra, str):
        try:
            extra = brian2.Equations(extra)
        except _compat.equation_errors() as exc:
            raise ValueError(f"extra_equations cannot be parsed: {exc}") from None
    elif not isinstance(extra, brian2.Equations):
        raise TypeError(f"extra_equations must be a string or brian2.Equations, "
                        f"got {type(extra).__name__}")
    clash = sorted(set(extra.names) & set(eqs.names))
    if clash:
        raise ValueError(f"extra_equations define {clash}, which the model's equations "
                         f"already define; choose other names (print(equations(spec)) "
                         f"lists the model's)")
    return eqs + extra


def _refractory_period(value):
    """An absolute refractory period as a Brian2 duration (numbers are ms)."""
    import brian2

    if isinstance(value, str):
        raise TypeError("refractory takes a duration (Brian2's absolute refractory period, "
                        "e.g. 3*ms), not a condition: " + _SPIKE_RULE_HINT)
    period = to_plain(value, "ms", "refractory")
    if np.ndim(period) != 0 or not period >= 0:
        raise ValueError(f"refractory must be one duration >= 0 ms, got {value!r}")
    return float(period) * brian2.ms


def _check_events(events) -> Dict[str, str]:
    if events is None:
        return {}
    if not isinstance(events, dict):
        raise TypeError(f"events must be a dict {{name: condition}}, got {type(events).__name__}")
    for name, condition in events.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"event name {name!r} is not an identifier")
        if name == "spike":
            raise ValueError("events: 'spike' is the model's own event; " + _SPIKE_RULE_HINT)
        if not isinstance(condition, str) or not condition.strip():
            raise TypeError(f"event {name!r}: the condition must be a non-empty string")
    return dict(events)


def _group_namespace(namespace) -> Dict[str, object]:
    ours = functions_namespace()
    if namespace is None:
        return ours
    if not isinstance(namespace, dict):
        raise TypeError(f"namespace must be a dict, got {type(namespace).__name__}")
    taken = [k for k in ours if k in namespace and namespace[k] is not ours[k]]
    if taken:
        raise ValueError(f"namespace: {taken} are the plugin's functions; use other names")
    return {**namespace, **ours}


def _unresolved(group, identifiers, run_namespace):
    unknown = []
    for name in sorted(identifiers):
        try:
            group.resolve_all([name], run_namespace)
        except KeyError:
            unknown.append(name)
    return unknown


def _check_user_code(group, pieces, run_namespace) -> None:
    """Report unknown names and inconsistent units of what the caller added, now.

    Brian2 itself resolves names and checks units only at ``run()``, inside its
    "unexpected error" report.
    """
    import brian2

    for where, identifiers in pieces:
        unknown = _unresolved(group, identifiers, run_namespace)
        if unknown:
            raise ValueError(
                f"neuron_group: {where} uses {unknown}, which {'is' if len(unknown) == 1 else 'are'}"
                f" not defined: declare state variables in extra_equations (e.g. "
                f"'dge/dt = -ge/taue : siemens'), pass constants, functions and TimedArrays "
                f"in namespace={{...}}, or define them before calling neuron_group")
    try:
        group.equations.check_units(group, run_namespace)
    except brian2.DimensionMismatchError as exc:
        text = str(exc)
        if "subexpression I" in text or "'I'" in text:
            raise TypeError(f"the current expression must be in amp: {text}") from None
        raise TypeError(f"neuron_group: inconsistent units in the equations: {text}") from None


# ------------------------------------------------------------------- initial state
def _voltage_code(distribution: VoltageDistribution) -> str:
    """A Brian2 expression drawing ``V`` from ``distribution`` (mV values)."""
    kind, values = distribution.kind, distribution.values
    if kind == "constant":
        return f"{values[0]!r}*mV"
    if kind == "uniform":
        low, high = values
        return f"{low!r}*mV + {high - low!r}*mV*rand()"
    mean, std = values
    return f"{mean!r}*mV + {std!r}*mV*randn()"


def _set_voltage(group, V, name: str) -> None:
    """``group.V`` from a quantity, plain mV numbers or a Brian2 expression string."""
    import brian2

    if isinstance(V, str):
        try:
            group.V = V
        except (KeyError, SyntaxError, ValueError, brian2.DimensionMismatchError) as exc:
            raise ValueError(f"initial voltage {name}={V!r} is neither 'default', 'uniform' "
                             f"nor a Brian2 expression of a potential: {exc}") from None
        return
    group.V = voltage_values(V, name) * brian2.mV


def _initialize(group, spec: HHSpec, N: int, V_init, seed) -> None:
    import brian2

    model = spec.model
    gates = model.gate_names
    if isinstance(V_init, str) and V_init not in VOLTAGE_MARKERS and seed is not None:
        raise ValueError("seed applies to the draws of V_init='default' and 'uniform'; a "
                         "Brian2 expression draws with Brian2's generator (brian2.seed())")
    if seed is not None:
        values = V_init if isinstance(V_init, str) else voltage_values(V_init)
        state = initial_state(model, N, V=values, seed=seed, parameters=spec.parameters)
        group.V = state["V"] * brian2.mV
        for gate in gates:
            setattr(group, gate, state[gate])
    else:
        constants = {}
        if isinstance(V_init, str) and V_init in VOLTAGE_MARKERS:
            if V_init == DEFAULT:
                distribution = model.initial_voltage
                constants = dict(model.initial_gates)
            else:
                distribution = VoltageDistribution.uniform(*model.initial_voltage_range)
            group.V = _voltage_code(distribution)
        else:
            _set_voltage(group, V_init, "V_init")
        for gate in gates:
            setattr(group, gate, constants[gate] if gate in constants else f"{gate}_inf")
    group.not_refractory = True  # the spike rule compares with V_start, set every step


def set_steady_state(group, V=None) -> None:
    r"""Set ``V`` (optional) and bring the gates to their steady state there, without a spike.

    Every dynamic gate :math:`x` of a group made by :func:`neuron_group` (or from
    :func:`~hh_plugin.brian2.equations`) is set to :math:`x_\infty(V)` by the group code
    ``x = x_inf``. A neuron put above threshold does not spike at the next step: the
    spike rule compares with ``V`` at the start of the step (in a group of your own with
    Brian2's ``refractory='V >= V_th'``, ``not_refractory`` is set to ``V < V_th`` for
    the same effect). A plain ``group.V = 30*mV`` would leave the gates at the old steady
    state and fire. Works on a subgroup (``set_steady_state(group[:10], ...)``), at any
    time between runs.

    Args:
        group: the group (or a subgroup of it).
        V: ``None`` (keep the current ``V``), a Brian2 quantity, a Brian2 expression
            string (``'-65*mV + 2*mV*randn()'``) or plain numbers in mV.

    In C++ standalone the assignments are code of the binary; to have the gates follow a
    ``V`` given through ``run_args``, apply the run arguments first::

        group = neuron_group(N, spec)
        brian2.device.apply_run_args()   # run_args values are set here...
        set_steady_state(group)          # ...and the gates computed from them
    """
    source = getattr(group, "source", group)  # a Subgroup's group
    eqs = getattr(source, "equations", None)
    if eqs is None or "V" not in eqs.names:
        raise TypeError("set_steady_state needs a group made by neuron_group (or from "
                        "hh_plugin.brian2.equations), with a membrane potential V")
    if V is not None:
        _set_voltage(group, V, "V")
    subexpressions = set(eqs.subexpr_names)
    for gate in eqs.diff_eq_names:
        if f"{gate}_inf" in subexpressions and eqs[gate].dim is eqs[f"{gate}_inf"].dim:
            setattr(group, gate, f"{gate}_inf")
    spike = getattr(source, "events", {}).get("spike")
    if spike is not None and "not_refractory" in source.variables:
        group.not_refractory = f"not ({spike})"


# --------------------------------------------------------------------- the group
def neuron_group(N, spec: HHSpec = None, current=PARAMETER_CURRENT, V_init=DEFAULT,
                 seed: Optional[int] = None, method=None, *,
                 extra_equations=None, namespace=None, events=None, reset=None,
                 refractory=None, spike_times: bool = False, **kwargs):
    r"""Build a Brian2 ``NeuronGroup`` of ``N`` neurons of ``spec`` (default ``HHSpec()``).

    The group has the model's equations (:func:`~hh_plugin.brian2.equations`), its
    parameters as variables (``group.gNa``: shared when scalar, per neuron when the spec
    has an array; settable between runs and through standalone ``run_args``; a random
    expression or an array for a shared one is refused, :mod:`hh_plugin.brian2.shared`),
    the spike rule and reset of the module docs, and the initial state set.

    Args:
        N: number of neurons.
        spec: the :class:`~hh_plugin.model.HHSpec`; per-neuron arrays must have length ``N``.
        current: the input current ``I`` of the membrane equation:

            - ``'parameter'`` (default): ``I : amp``, a per-neuron parameter, initially 0;
            - a Brian2 expression in amp, which may use the ``extra_equations``
              (``'ge*(Ee - V) + gi*(Ei - V)'``), a ``TimedArray`` (``'I_stim(t, i)'``)
              and ``namespace`` entries;
            - a constant: a Brian2 quantity (``10*uA``, one per neuron or one for all),
              or plain numbers in uA (implausible magnitudes are refused, naming the unit).
        V_init: initial membrane potential: ``'default'`` (the model's default initial
            state, e.g. uniform in -70..-60 mV for the reference model), ``'uniform'``
            (the model's ``initial_voltage_range``), a Brian2 quantity, plain number(s)
            in mV, or a Brian2 expression string (``'-65*mV + 5*mV*randn()'``).
            Random draws are Brian2's (``brian2.seed()`` makes them reproducible, in
            standalone too) unless ``seed`` is given.
        seed: draw ``'default'``/``'uniform'`` with ``numpy.random.default_rng(seed)``,
            identical to :func:`hh_plugin.initial_state` and the torch backend (for
            cross-backend validation); the gates then take numpy's steady-state values.
        method: ``None`` (default): ``spec.method``; a plugin method name
            (``'exponential_euler'``, ``'rk4'``; :mod:`hh_plugin.model.integrators`)
            replaces ``spec.method``, so ``method='rk4'`` re-evaluates instantaneous gates
            at every stage (Brian2's own ``rk4`` on the equations of an exponential-Euler
            spec would hold them over the step) and the dt limit is the method's; any
            other Brian2 method (a name or a ``StateUpdateMethod``) is passed to Brian2
            as it is, on the equations of ``spec``.
        extra_equations: equations added to the model (a string or ``brian2.Equations``):
            synaptic variables with their own dynamics (``'dge/dt = -ge/taue :
            siemens'``), parameters, anything ``current`` uses. They start at 0; the
            spike rule, reset and initial state stay the plugin's. A name the model's
            equations define is refused.
        namespace: constants, functions and ``TimedArray``\ s for the equations
            (``{'taue': 5*ms, 'Ee': 0*mV}``), as ``NeuronGroup(namespace=...)``.
        events: custom events ``{'name': 'condition'}`` (Brian2's ``events``); the
            ``'spike'`` event is the model's.
        reset: statements run when a neuron spikes, after the model's own reset
            (``spec.V_reset``), e.g. ``'w += b'`` for an adaptation variable.
        refractory: ``None`` (default: one spike per upward crossing of the threshold)
            or an absolute refractory period (a Brian2 duration, or a number in ms) with
            Brian2's rule (see the module docs).
        spike_times: keep ``V`` at the start of each step in ``V_before`` so that
            :func:`~hh_plugin.brian2.spike_time_monitor` and
            :func:`~hh_plugin.brian2.spike_times` give each spike's time inside its step
            (:mod:`hh_plugin.brian2.spike_times`).
        **kwargs: passed to ``brian2.NeuronGroup`` (``name``, ``dt``, ``clock``,
            ``order``, ``dtype``...). ``threshold='V > 0*mV'`` (or ``>=``, any constant
            voltage) sets the spec's threshold level, with the model's spike rule (one
            spike per upward crossing, as on every backend); any other condition, and
            ``model``, are refused with an explanation (see the module docs).

    Unknown names and inconsistent units in ``current``, ``extra_equations``,
    ``events`` and ``reset`` are reported here (names are resolved in ``namespace`` and
    where ``neuron_group`` is called), not at ``run()``.

    Returns:
        the ``NeuronGroup``.

    A ``dt`` longer than the model's ``max_dt`` is refused when the group is made and at
    every run (:class:`~hh_plugin.model.limits.StepTooLong`; at run time Brian2 wraps it in a
    ``BrianObjectException``); a constant current with NaN/inf is refused, an implausibly
    large one draws an :class:`~hh_plugin.model.limits.ImplausibleInputWarning`.
    """
    import brian2
    from brian2 import get_local_namespace

    spec = HHSpec() if spec is None else spec
    if not isinstance(spec, HHSpec):
        raise TypeError(f"spec must be an HHSpec, got {type(spec).__name__}")
    N = _check_n(N)
    spec.check_size(N)
    if method is None or (isinstance(method, str) and method in METHODS):
        spec = spec if method in (None, spec.method) else spec.replace(method=method)
        method = state_updater(spec.method)
    else:
        method = _check_method(method)
    if "threshold" in kwargs:
        spec = _threshold_as_spec(kwargs.pop("threshold"), spec)
    for key, why in _REFUSED_KWARGS.items():
        if key in kwargs:
            raise TypeError(f"neuron_group does not take {key}=: {why}")
    events = _check_events(events)
    if reset is not None and not (isinstance(reset, str) and reset.strip()):
        raise TypeError("reset must be a string of Brian2 statements")

    constant_current = None
    if isinstance(current, str):
        eqs = equations(spec, current)
        current = current.strip()
    else:
        constant_current = _current_values(current, N, spec)
        eqs = equations(spec, PARAMETER_CURRENT)
    user_pieces = []
    if constant_current is None and current != PARAMETER_CURRENT:
        user_pieces.append((f"the current expression {current!r}",
                            brian2.Expression(current).identifiers))
    if spike_times:
        eqs = _extra_equations(eqs, spike_time_equation)
    if extra_equations is not None:
        extra_eqs = _extra_equations(eqs, extra_equations)
        user_pieces.append(("extra_equations",
                            set(extra_eqs.identifiers) - set(eqs.names)))
        eqs = extra_eqs
    for name, condition in events.items():
        user_pieces.append((f"the event {name!r}", brian2.Expression(condition).identifiers))
    if reset is not None:
        user_pieces.append(("reset", brian2.Statements(reset).identifiers))

    model = spec.model
    th_name = model.threshold
    condition = f"V >= {th_name}"
    if refractory is None:  # the rising edge: below threshold at the start of the step
        eqs = eqs + brian2.Equations("V_start : volt")
        condition += f" and V_start < {th_name}"
    reset_lines = []
    if spec.V_reset is not None:
        reset_lines.append(f"V -= {th_name} - V_reset" if spec.spk_reset == "soft"
                           else "V = V_reset")
    if reset is not None:
        reset_lines.append(reset.strip())
    # no refractory period by default: 0 ms, so that (unless refractory) is never held
    refractory_rule = _refractory_period(0.0 if refractory is None else refractory)
    group = _group_type()(N, eqs, threshold=condition, refractory=refractory_rule,
                          reset="\n".join(reset_lines) or None,
                          events=events or None, method=method,
                          namespace=_group_namespace(namespace), **kwargs)
    group._hh_model = model
    group._hh_method = spec.method
    if refractory is None:
        group.run_regularly("V_start = V", when="before_groups", name=f"{group.name}_V_start")
    _check_dt(group)  # again at every run: dt may change before it
    _check_user_code(group, user_pieces, get_local_namespace(level=1))

    for name, value in spec.parameters.items():
        setattr(group, name, value * brian2_unit(model.units[name]))
    if spec.V_reset is not None:
        group.V_reset = spec.V_reset * brian2.mV
    _initialize(group, spec, N, V_init, seed)
    if spike_times:
        add_spike_time_recording(group)
    if constant_current is not None:
        group.I = constant_current * brian2.amp
        warn_if_implausible(np.abs(constant_current) * 1e6, spec.parameters[model.capacitance],
                            model)
    return group


__all__ = ["neuron_group", "set_steady_state", "voltage_values", "UNIFORM"]
