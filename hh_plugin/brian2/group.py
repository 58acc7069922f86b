r"""A ready-to-run Brian2 ``NeuronGroup`` of the model in an :class:`~hh_plugin.model.HHSpec`.

Spikes follow the reference model (BrainPy's ``brainpy.state.HH``): neuron :math:`j`
spikes in the step that takes it from :math:`V < V_{th}` to :math:`V \ge V_{th}`, once
per upward crossing. In Brian2 this is ``threshold='V >= V_th'`` with
``refractory='V >= V_th'``: after a spike the neuron stays refractory (it keeps
integrating; only new spikes are blocked) until a step starts below threshold.
``not_refractory`` starts as :math:`V_0 < V_{th}`, so a neuron that starts above
threshold does not spike in step 0.

With ``refractory=<duration>`` the rule is instead Brian2's absolute refractory period, as
Brian2 scripts such as ``examples/COBAHH.py`` write it: a neuron spikes in a step that
ends with :math:`V \ge V_{th}` if at least that long (rounded to steps) has passed since
its last spike.

With ``spec.V_reset`` set, the spiking step also resets the membrane, right after the
update (Brian2's reset slot of the same time step):

- ``'soft'``: :math:`V \leftarrow V - (V_{th} - V_{reset})`,
- ``'hard'``: :math:`V \leftarrow V_{reset}`.
"""

from __future__ import annotations

import numbers

import numpy as np

from hh_plugin.model.initial import DEFAULT, initial_state
from hh_plugin.model.spec import HHSpec, brian2_unit, to_plain

from .equations import PARAMETER_CURRENT, _scalar_text, equations

#: NeuronGroup arguments that :func:`neuron_group` sets itself.
_RESERVED_KWARGS = ("threshold", "reset", "refractory", "model", "events")


def _check_n(N) -> int:
    if isinstance(N, bool) or not isinstance(N, (numbers.Integral, np.integer)):
        raise TypeError(f"N must be a positive integer, got {N!r}")
    if N < 1:
        raise ValueError(f"N must be a positive integer, got {N}")
    return int(N)


def _check_method(method):
    from brian2 import StateUpdateMethod

    known = sorted(StateUpdateMethod.stateupdaters)
    names = [method] if isinstance(method, str) else method
    if isinstance(names, (list, tuple)) and names and all(isinstance(m, str) for m in names):
        unknown = [m for m in names if m not in StateUpdateMethod.stateupdaters]
        if unknown:
            raise ValueError(f"unknown integration method(s) {unknown}; Brian2 knows {known}")
        return method
    if isinstance(method, StateUpdateMethod):
        return method
    raise TypeError(f"method must be a Brian2 method name, a list of names or a "
                    f"StateUpdateMethod, got {method!r}")


def _value_text(spec: HHSpec, name: str, value) -> str:
    """``name`` if it is a per-neuron parameter of the group, else its value as text."""
    return name if isinstance(value, np.ndarray) else _scalar_text(value, "mV")


def _current_values(current, N: int):
    """A constant current (quantity, number(s) in uA) as plain floats in amp."""
    values = to_plain(current, "uA", "current")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1 and len(values) != N:
        raise ValueError(f"current has {len(values)} values for a population of {N} neurons")
    if not np.all(np.isfinite(values)):
        raise ValueError("current contains NaN or infinite values")
    return values * 1e-6


def _check_current_expression(group, current: str, namespace) -> None:
    """Raise ``TypeError`` early if a current expression is not in amp.

    Skipped when a name cannot be resolved yet: Brian2 resolves names again at ``run``
    (and checks units then), so it may be defined later.
    """
    import brian2
    from brian2.parsing.expressions import parse_expression_dimensions
    from brian2.utils.stringtools import get_identifiers

    identifiers = get_identifiers(current)
    try:
        variables = group.resolve_all(identifiers, namespace)
    except KeyError:
        return
    try:
        dim = parse_expression_dimensions(current, variables)
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot parse current expression {current!r}: {exc}") from None
    except brian2.DimensionMismatchError as exc:
        raise TypeError(f"current expression {current!r} is inconsistent: {exc}") from None
    if not brian2.have_same_dimensions(dim, brian2.amp):
        raise TypeError(f"current expression {current!r} has dimension {dim!r}, "
                        f"expected a current (amp)")


def _add_equations(eqs, extra_equations):
    """The generated equations plus the caller's (text or ``brian2.Equations``); a name
    defined twice is refused, naming it."""
    import brian2

    if isinstance(extra_equations, str):
        extra = brian2.Equations(extra_equations)
    elif isinstance(extra_equations, brian2.Equations):
        extra = extra_equations
    else:
        raise TypeError(f"extra_equations must be a string or brian2.Equations, "
                        f"got {type(extra_equations).__name__}")
    clash = sorted(set(extra.names) & set(eqs.names))
    if clash:
        raise ValueError(f"extra_equations define {clash}, which the model's equations "
                         f"already define; choose other names")
    return eqs + extra


def _refractory_period(value):
    """A refractory period as a Brian2 duration (numbers are ms)."""
    import brian2

    period = to_plain(value, "ms", "refractory")
    if np.ndim(period) != 0 or not period >= 0:
        raise ValueError(f"refractory must be one duration >= 0 ms, got {value!r}")
    return float(period) * brian2.ms


def neuron_group(N, spec: HHSpec = None, current=PARAMETER_CURRENT, V_init=DEFAULT,
                 seed=None, method="exponential_euler", extra_equations=None,
                 refractory=None, **kwargs):
    r"""Build a Brian2 ``NeuronGroup`` of ``N`` neurons of ``spec`` (default ``HHSpec()``).

    Args:
        N: number of neurons.
        spec: the :class:`~hh_plugin.model.HHSpec`; per-neuron arrays must have length ``N``.
        current: ``'parameter'`` (``I : amp``, initially 0; set ``group.I``), a Brian2
            expression string in amp (``'I_stim(t, i)'``), or a constant current: a Brian2
            quantity in amp, or number(s) in uA, scalar or one per neuron (sets ``I``).
        V_init: initial membrane potential: ``'default'`` (the model's default initial
            state: for the reference model V drawn uniformly from -70..-60 mV), ``'uniform'``
            (the model's ``initial_voltage_range``), a number in mV, an array, or a Brian2
            quantity. Draws use ``numpy.random.default_rng(seed)``, identical to the other
            backends for the same seed. Gates start at the model's default constants
            (``'default'`` only) or at their steady state at ``V_init``.
        seed: seed for random initial voltages.
        method: Brian2 integration method; ``'exponential_euler'`` is the reference
            model's scheme.
        extra_equations: more equations for the group (text or ``brian2.Equations``),
            e.g. synaptic variables with their decay, ``'dge/dt = -ge/taue : siemens'``,
            which ``current`` may then use (``current='ge*(Ee - V)'``, constants through
            ``namespace``). The spike rule, reset and initial state stay the plugin's;
            the added variables start at 0.
        refractory: ``None`` (default: one spike per upward crossing of the threshold)
            or an absolute refractory period (a Brian2 duration, or a number in ms) with
            Brian2's rule (see the module docstring).
        **kwargs: passed to ``brian2.NeuronGroup`` (``name``, ``dt``, ``namespace``,
            ``dtype``, ``clock``, ``order``...).

    Returns:
        the ``NeuronGroup`` with state ``V``, the gates, ``I`` and the per-neuron parameters set.
    """
    import brian2

    spec = HHSpec() if spec is None else spec
    if not isinstance(spec, HHSpec):
        raise TypeError(f"spec must be an HHSpec, got {type(spec).__name__}")
    N = _check_n(N)
    spec.check_size(N)
    method = _check_method(method)
    bad = [k for k in _RESERVED_KWARGS if k in kwargs]
    if bad:
        raise TypeError(f"neuron_group sets {bad} itself; change the spec instead")

    constant_current = None
    if isinstance(current, str):
        eqs = equations(spec, current)
    else:
        constant_current = _current_values(current, N)
        eqs = equations(spec, PARAMETER_CURRENT)
    if extra_equations is not None:
        eqs = _add_equations(eqs, extra_equations)

    model = spec.model
    params = spec.parameters
    th_name = model.threshold
    v_th = _value_text(spec, th_name, params[th_name])
    reset = None
    if spec.V_reset is not None:
        v_reset = _value_text(spec, "V_reset", spec.V_reset)
        if spec.spk_reset == "soft":
            reset = f"V -= {v_th} - {v_reset}"
        else:
            reset = f"V = {v_reset}"
    condition = f"V >= {v_th}"
    refractory_rule = condition if refractory is None else _refractory_period(refractory)
    group = brian2.NeuronGroup(N, eqs, threshold=condition, refractory=refractory_rule,
                               reset=reset, method=method, **kwargs)
    if isinstance(current, str) and current.strip() != PARAMETER_CURRENT:
        from brian2.core.namespace import get_local_namespace

        _check_current_expression(group, current.strip(), get_local_namespace(level=1))

    for name, value in params.items():
        if isinstance(value, np.ndarray):
            setattr(group, name, value * brian2_unit(spec.model.units[name]))
    if isinstance(spec.V_reset, np.ndarray):
        group.V_reset = spec.V_reset * brian2.mV

    state = initial_state(model, N, V=V_init, seed=seed, parameters=params)
    group.V = state["V"] * brian2.mV
    for gate in model.gate_names:
        setattr(group, gate, state[gate])
    group.not_refractory = state["V"] < np.broadcast_to(params[th_name], (N,))
    if constant_current is not None:
        group.I = constant_current * brian2.amp
    return group
