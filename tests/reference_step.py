r"""An independent numpy implementation of one step of the reference model (test helper).

Written from the reference model's documented semantics (``brainpy.state.HH``; see
``tests/data/REFERENCE_PROVENANCE.md``), without using :mod:`hh_plugin`'s code, so that
backends can be checked against it. One step of size :math:`\Delta t` (ms), every update
from the old state (a Jacobi exponential Euler step):

.. math::
    \begin{align*}
    G &= \sum_c g_c, \qquad f = \frac{-\sum_c g_c (V - E_c) + I}{C}, \\
    V' &= V + \Delta t\,\operatorname{exprel}(-G \Delta t / C)\, f, \\
    x' &= x + \Delta t\,\operatorname{exprel}(-(\alpha_x + \beta_x)\Delta t)\,
          (\alpha_x (1 - x) - \beta_x x), \\
    z &= H(V' - V_{th})\,(1 - H(V - V_{th})), \quad H(u) = [u \ge 0].
    \end{align*}

Units: V in mV, g in mS, C in uF, I in uA, dt in ms, rates in 1/ms. With ``V_reset``
set, a spiking neuron is reset in the same step: soft
:math:`V' \leftarrow V' - (V_{th} - V_{reset})`, hard :math:`V' \leftarrow V_{reset}`.
"""

from __future__ import annotations

import numpy as np

#: The reference model's defaults (mV, mS, uF).
HH_DEFAULTS = dict(ENa=50.0, gNa=120.0, EK=-77.0, gK=36.0, EL=-54.387, gL=0.03,
                   V_th=20.0, C=1.0)


def exprel(x):
    """(e^x - 1)/x, 1 at x = 0."""
    x = np.asarray(x, dtype=np.float64)
    zero = x == 0
    safe = np.where(zero, 1.0, x)
    return np.where(zero, 1.0, np.expm1(safe) / safe)


#: Rate functions {gate: (alpha(V), beta(V))}, V in mV, rates in 1/ms.
HH_RATES = {
    "m": (lambda V: 1.0 / exprel(-(V + 40.0) / 10.0),
          lambda V: 4.0 * np.exp(-(V + 65.0) / 18.0)),
    "h": (lambda V: 0.07 * np.exp(-(V + 65.0) / 20.0),
          lambda V: 1.0 / (1.0 + np.exp(-(V + 35.0) / 10.0))),
    "n": (lambda V: 0.1 / exprel(-(V + 55.0) / 10.0),
          lambda V: 0.125 * np.exp(-(V + 65.0) / 80.0)),
}


def hh_conductances(gates, p):
    """[(g, E), ...] of the reference model's channels (mS, mV)."""
    return [(p["gNa"] * gates["m"] ** 3 * gates["h"], p["ENa"]),
            (p["gK"] * gates["n"] ** 4, p["EK"]),
            (p["gL"] * np.ones_like(gates["m"]), p["EL"])]


def steady_state(V, rates=HH_RATES):
    """Gates at steady state alpha/(alpha+beta) at V (mV)."""
    V = np.asarray(V, dtype=np.float64)
    return {g: a(V) / (a(V) + b(V)) for g, (a, b) in rates.items()}


def reference_step(V, gates, I, params, dt, *, V_reset=None, spk_reset="soft",
                   rates=HH_RATES, conductances=hh_conductances):
    """One step: returns ``(V_new, gates_new, spike)`` (spike as float 0/1 array).

    ``params`` holds ``V_th``, ``C`` and whatever ``conductances(gates, params)`` reads
    (scalars or per-neuron arrays); ``rates`` and ``conductances`` default to the
    reference model's.
    """
    V = np.asarray(V, dtype=np.float64)
    p = {**HH_DEFAULTS, **params}
    channels = conductances(gates, p)
    G = sum(g for g, _ in channels)
    f = (-sum(g * (V - E) for g, E in channels) + I) / p["C"]
    V_new = V + dt * exprel(-G * dt / p["C"]) * f
    new_gates = {}
    for name, (alpha, beta) in rates.items():
        a, b, x = alpha(V), beta(V), gates[name]
        new_gates[name] = x + dt * exprel(-(a + b) * dt) * (a * (1 - x) - b * x)
    V_th = p["V_th"]
    spike = ((V_new >= V_th) & ~(V >= V_th)).astype(np.float64)
    if V_reset is not None:
        if spk_reset == "soft":
            V_new = V_new - spike * (V_th - V_reset)
        elif spk_reset == "hard":
            V_new = np.where(spike > 0, V_reset, V_new)
        else:
            raise ValueError(f"unknown reset mode {spk_reset!r}")
    return V_new, new_gates, spike


def simulate(V0, I, params, dt, steps, gates0=None, **kwargs):
    """Run ``steps`` steps; ``I`` is constant (scalar/array) or a (steps, N) array.

    Returns ``{'V': (steps, N), gate: (steps, N), 'spike': (steps, N)}``: row k is the
    state after step k, as in the reference data files.
    """
    V = np.array(V0, dtype=np.float64)
    rates = kwargs.get("rates", HH_RATES)
    gates = dict(gates0) if gates0 is not None else steady_state(V, rates)
    I = np.asarray(I, dtype=np.float64)
    out = {k: [] for k in ["V", "spike", *gates]}
    for k in range(steps):
        I_k = I[k] if I.ndim == 2 else I
        V, gates, spike = reference_step(V, gates, I_k, params, dt, **kwargs)
        out["V"].append(V)
        out["spike"].append(spike)
        for g, x in gates.items():
            out[g].append(x)
    return {k: np.array(v) for k, v in out.items()}
