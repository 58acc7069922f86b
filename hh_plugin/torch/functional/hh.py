r"""Pure step functions of the HH model (Norse's functional layer).

One step of size :math:`\Delta t` updates every variable from the *old* state
(exponential Euler, a Jacobi update), exactly as the reference model:

.. math::
    \begin{align*}
    G &= \sum_c g_c(x, y), \qquad
    f = \frac{1}{C}\Big(I - \sum_c g_c (V - E_c)\Big), \\
    V' &= V + \Delta t \,\operatorname{exprel}\!\Big(-\frac{G \Delta t}{C}\Big) f, \\
    x' &= x + \Delta t\,\operatorname{exprel}(-\lambda_x \Delta t)\,\dot x
          \quad \text{for each dynamic gate } x,
    \end{align*}

with :math:`\dot x = \phi(\alpha_x(1-x) - \beta_x x)`, :math:`\lambda_x = \phi(\alpha_x+\beta_x)`
(kinetic gates) or :math:`\dot x = \phi(x_\infty - x)/\tau_x`, :math:`\lambda_x = \phi/\tau_x`
(relaxing gates), and instantaneous gates :math:`y = y_\infty(V)` held at their value at
the old :math:`V` (so :math:`G` is the conductance with every gate frozen, as in the
reference models: BrainPy linearises :math:`\dot V` with the gates fixed).
with rates evaluated at the old :math:`V`. This is the exact solution of each
equation with the other variables frozen. Synaptic conductances :math:`g_s` with
reversal potentials :math:`E_s` (``conductance``, ``conductance_current`` of
:func:`hh_step`) join the channels: :math:`G \mathrel{+}= \sum_s g_s` and the membrane
current gains :math:`\sum_s g_s (V - E_s)`. The spike output is the rising edge
:math:`z = H(x')(1 - H(x))`, :math:`x = (V - V_{th})/V_{scale}` with the surrogate's
scale :math:`V_{scale}` (mV; by default :math:`|V_{th}|`, 1 mV at :math:`V_{th} = 0`;
:mod:`.surrogate`). With ``V_reset`` set, the same step then resets the membrane:

.. math::
    V' \leftarrow V' - z (V_{th} - V_{reset}) \ \text{(soft)}, \qquad
    V' \leftarrow (1 - \bar z) V' + \bar z V_{reset} \ \text{(hard, } \bar z
    \text{ detached)}.

**Fourth order.** With ``p.method == 'rk4'`` (``HHSpec(method='rk4')``) the step is
classical RK4 on :math:`(V, x_1, \dots)` (:func:`hh_plugin.model.integrators.explicit_step`),
each stage evaluating the whole right-hand side (:func:`_vector_field`: rates,
instantaneous gates, conductances) at the stage's state, with the input current and
synaptic conductance held over the step; spike and reset rules are the same.

Units: V in mV, I in uA, g in mS, C in uF; ``dt`` in **seconds** as everywhere in
Norse (the rates are in 1/ms, so the step uses :math:`\Delta t = 10^3 dt` ms).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch

from ...model.vector_field import evaluate as evaluate_vector_field
from ...model.vector_field import gate_derivative_and_decay  # noqa: F401  (re-exported)
from ...model.expressions import exprel_torch
from ...model.integrators import DEFAULT_METHOD, check_method, explicit_step
from ...model.limits import MAX_PLAUSIBLE_RATE, check_step, warn_if_implausible
from .parameters import (HHRecurrentState, _ParametersMixin,  # noqa: F401 (re-exported)
                         recurrent_state_type, state_type)
from .surrogate import rising_edge, surrogate_scale


def check_dt(dt, model=None, method: str = DEFAULT_METHOD) -> float:
    """``dt`` (seconds) as a float; a positive finite number within the model's longest
    step for ``method`` (``model.max_step(method)``, when a model is given;
    :mod:`hh_plugin.model.limits`), or a clear error."""
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise TypeError(f"dt must be a number of seconds, got {dt!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"dt must be a positive, finite number of seconds, got {dt!r}")
    if value > 1e-2:
        raise ValueError(f"dt = {value} s is longer than 10 ms; dt is in seconds "
                         f"(0.01 ms is dt=1e-5)")
    if model is not None:
        check_step(value * 1e3, model,
                   f"dt is in seconds: use dt <= {model.max_step(method) * 1e-3:g}", method)
    return value


def _tracing() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool((compiler is not None and getattr(compiler, "is_compiling", bool)())
                or torch.jit.is_tracing() or torch.jit.is_scripting())


def finite_peak(current: torch.Tensor, name: str = "input current") -> float:
    r""":math:`\max_i |I_i|` of ``current`` (one pass, ``aminmax``); ``ValueError`` naming
    the first NaN or infinite element, which would silently make the state NaN."""
    values = current.detach()
    low, high = torch.aminmax(values)  # one pass; NaN if any element is NaN
    peak = max(-float(low), float(high))
    if not math.isfinite(peak):
        index = tuple(int(i) for i in (~torch.isfinite(values)).nonzero()[0])
        raise ValueError(f"{name} contains NaN or infinite values (first at index {index}); "
                         f"they would make the state NaN")
    return peak


def check_input_current(current: torch.Tensor, p, name: str = "input current") -> None:
    """Refuse NaN/inf currents (``ValueError``; they would silently make the state NaN) and
    warn about implausible ones (:class:`~hh_plugin.model.limits.ImplausibleInputWarning`).

    One pass over ``current`` (``aminmax``) and one host synchronisation, about 3 us for
    8,192 elements on a CPU; skipped while tracing or compiling (``torch.compile``,
    ``torch.export``, ``torch.jit``) and for empty tensors.
    """
    if current.numel() == 0 or current.ndim == 0 or current.device.type == "meta" \
            or _tracing():
        return
    peak = finite_peak(current, name)
    model = type(p).model
    capacitance = getattr(p, model.capacitance)
    if isinstance(capacitance, torch.Tensor):
        if peak <= MAX_PLAUSIBLE_RATE * float(capacitance.detach().min()):
            return
        capacitance = capacitance.detach().cpu().double().numpy()
    elif peak <= MAX_PLAUSIBLE_RATE * float(capacitance):
        return
    values = current.detach()
    per_neuron = values.abs().reshape(-1, values.shape[-1]).amax(0).cpu().double().numpy()
    warn_if_implausible(per_neuron, capacitance, model, stacklevel=4)


def _cast(p: _ParametersMixin, like: torch.Tensor) -> dict:
    """Parameters as tensors of ``like``'s dtype and device (no copy when they match), with
    ``V_scale`` resolved to the surrogate's scale (:func:`.surrogate.surrogate_scale`)."""
    out = {}
    for key, value in p._asdict().items():
        if isinstance(value, torch.Tensor):
            if value.dtype != like.dtype or value.device != like.device:
                value = value.to(dtype=like.dtype, device=like.device)
        elif value is not None and key not in ("spk_reset", "method"):
            value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
        out[key] = value
    out["V_scale"] = surrogate_scale(out[type(p).model.threshold], out["V_scale"])
    return out


def _vector_field(model, values, point, input_current, conductance=None,
                  conductance_current=None):
    """:func:`hh_plugin.model.vector_field.evaluate` with the model's torch callables."""
    return evaluate_vector_field(model, "torch", values, point, input_current, conductance,
                                 conductance_current)


def hh_step(input_current: torch.Tensor, state, p: _ParametersMixin,
            dt: float = 1e-5, conductance=None,
            conductance_current=None) -> Tuple[torch.Tensor, object]:
    r"""Advance an HH population by one step.

    Arguments:
        input_current: external current in uA, broadcastable to the state's shape.
        state: an ``HHState`` (``V`` mV, gates), any shape.
        p: ``HHParameters`` (or the parameters type of another model definition).
        dt: step in seconds (default :math:`10^{-5}` s = 0.01 ms), at most the model's
            ``max_dt`` (:class:`~hh_plugin.model.limits.StepTooLong` otherwise).
        conductance: optional extra (synaptic) conductance :math:`G_s = \sum_s g_s`
            in mS, broadcastable to the state's shape.
        conductance_current: with ``conductance``: :math:`\sum_s g_s E_s` in uA
            (mS times mV), the reversal potentials weighted by their conductances.

    With ``conductance`` the membrane current gains :math:`G_s V - \sum_s g_s E_s =
    \sum_s g_s (V - E_s)` and :math:`G_s` joins the channel total :math:`G` of the
    exponential Euler factor, as Brian2's ``exponential_euler`` treats a term
    :math:`g_s (E_s - V)` in :math:`dV/dt` (linear in :math:`V`).

    Returns:
        ``(z, new_state)``: spikes (0/1 in the input's dtype, with surrogate gradient)
        and the state after the step.
    """
    model = type(p).model
    method = getattr(p, "method", DEFAULT_METHOD)
    values = _cast(p, state.V)
    dt_ms = dt * 1e3
    if isinstance(dt_ms, float) and dt_ms > model.max_step(method):
        check_step(dt_ms, model, "dt is in seconds", method)
    if conductance is not None and conductance_current is None:
        raise ValueError("conductance needs conductance_current (sum of g_s*E_s, uA)")
    if conductance is None and conductance_current is not None:
        raise ValueError("conductance_current is given without conductance")
    V = state.V
    gates = [getattr(state, name) for name in model.gate_names]
    if method == "rk4":
        def derivative(point):
            return _vector_field(model, values, point, input_current, conductance,
                                 conductance_current)[0]

        V_new, *new_gates = explicit_step(derivative, [V, *gates], dt_ms)
    else:
        check_method(method)
        (drive, *gate_derivatives), (conductance_total, *decays) = _vector_field(
            model, values, [V, *gates], input_current, conductance, conductance_current)
        C = values[model.capacitance]
        V_new = V + dt_ms * exprel_torch(-conductance_total * (dt_ms / C)) * drive
        new_gates = [x + dt_ms * exprel_torch(-decay * dt_ms) * derivative
                     for x, derivative, decay in zip(gates, gate_derivatives, decays)]

    V_th = values[model.threshold]
    z = rising_edge(V_new, V, V_th, values["alpha"], values["width"], values["V_scale"])
    V_reset = values["V_reset"]
    if V_reset is not None:
        if p.spk_reset == "soft":
            V_new = V_new - z * (V_th - V_reset)
        else:
            z_detached = z.detach()
            V_new = (1.0 - z_detached) * V_new + z_detached * V_reset
    return z, state_type(model)(V_new, *new_gates)


def hh_feed_forward_step(input_current: torch.Tensor, state, p, dt: float = 1e-5):
    """Norse's feed-forward activation signature: ``(input, state, p, dt) -> (z, state)``.

    :func:`hh_step` computed by the fused C++ step where it applies (CPU float32/float64,
    see :mod:`hh_plugin.torch.fused.step`; the same rounding as the fused sequence
    kernel), else by :func:`hh_step` itself."""
    from ..fused.step import hh_step_auto

    return hh_step_auto(input_current, state, p, dt)


def hh_recurrent_step(input_tensor: torch.Tensor, state,
                      input_weights: torch.Tensor, recurrent_weights: torch.Tensor, p,
                      dt: float = 1e-5):
    r"""Recurrent step (Norse's recurrent activation signature).

    The current (uA) is :math:`I_t = W_{in} x_t + W_{rec} z_{t-1}`, with :math:`z_{t-1}`
    the state's ``z``; then :func:`hh_feed_forward_step` on the state's ``V`` and gates.

    Arguments:
        input_tensor: :math:`x_t`, shape ``(..., input_size)``.
        state: the flat recurrent state of ``p``'s model (``HHRecurrentState(V, m, h, n,
            z)`` for the reference model; :func:`~.parameters.recurrent_state_type`).
        input_weights: :math:`W_{in}`, ``(hidden_size, input_size)`` (uA per unit input).
        recurrent_weights: :math:`W_{rec}`, ``(hidden_size, hidden_size)`` (uA per spike).
        p: parameters NamedTuple; dt: step in seconds.

    Returns ``(z_t, new_state)``.
    """
    model = type(p).model
    current = (torch.nn.functional.linear(input_tensor, input_weights)
               + torch.nn.functional.linear(state.z, recurrent_weights))
    neuron = state_type(model)(*state[:-1])
    z, neuron = hh_feed_forward_step(current, neuron, p, dt)
    return z, recurrent_state_type(model)(*neuron, z)
