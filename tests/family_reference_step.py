r"""Independent numpy steps of BrainPy's ``WangBuzsakiHH`` and ``MorrisLecar`` (test helper).

Written from the equations in ``tests/data/family/README.md`` without :mod:`hh_plugin`'s
code. The step is the reference models' (exponential Euler, every update from the old
state, instantaneous gates evaluated at the old V and frozen; the voltage's linear
coefficient is the total conductance with every gate frozen):

.. math::
    V' = V + \Delta t\,\operatorname{exprel}(-G \Delta t / C)\, f, \qquad
    x' = x + \Delta t\,\operatorname{exprel}(-\lambda_x \Delta t)\,\dot x .

It reproduces the brainpy files to about 1e-11 mV (checked in ``test_family.py``), so it
serves as the reference at other step sizes (dt = 0.1 ms), where no brainpy file exists.
"""

from __future__ import annotations

import numpy as np

from reference_step import exprel

WANG_BUZSAKI_DEFAULTS = dict(ENa=55.0, gNa=35.0, EK=-90.0, gK=9.0, EL=-65.0, gL=0.1,
                             V_th=20.0, phi=5.0, C=1.0)
MORRIS_LECAR_DEFAULTS = dict(V_Ca=130.0, g_Ca=4.4, V_K=-84.0, g_K=8.0, V_leak=-60.0,
                             g_leak=2.0, C=20.0, V1=-1.2, V2=18.0, V3=2.0, V4=30.0, phi=0.04,
                             V_th=10.0)


def wang_buzsaki_step(V, state, I, p, dt):
    """One step; ``state`` = {'h', 'n'}; returns (V', state', spike)."""
    h, n = state["h"], state["n"]
    am = 1.0 / exprel(-0.1 * (V + 35.0))
    bm = 4.0 * np.exp(-(V + 60.0) / 18.0)
    m = am / (am + bm)
    ah = 0.07 * np.exp(-(V + 58.0) / 20.0)
    bh = 1.0 / (np.exp(-0.1 * (V + 28.0)) + 1.0)
    an = 0.1 / exprel(-0.1 * (V + 34.0))
    bn = 0.125 * np.exp(-(V + 44.0) / 80.0)
    gna, gk = p["gNa"] * m ** 3 * h, p["gK"] * n ** 4
    G = gna + gk + p["gL"]
    f = (-gna * (V - p["ENa"]) - gk * (V - p["EK"]) - p["gL"] * (V - p["EL"]) + I) / p["C"]
    V_new = V + dt * exprel(-G * dt / p["C"]) * f
    phi = p["phi"]
    h_new = h + dt * exprel(-phi * (ah + bh) * dt) * phi * (ah * (1 - h) - bh * h)
    n_new = n + dt * exprel(-phi * (an + bn) * dt) * phi * (an * (1 - n) - bn * n)
    spike = ((V_new >= p["V_th"]) & ~(V >= p["V_th"])).astype(float)
    return V_new, {"h": h_new, "n": n_new}, spike


def morris_lecar_step(V, state, I, p, dt):
    """One step; ``state`` = {'W'}; returns (V', state', spike)."""
    W = state["W"]
    M = 0.5 * (1.0 + np.tanh((V - p["V1"]) / p["V2"]))
    W_inf = 0.5 * (1.0 + np.tanh((V - p["V3"]) / p["V4"]))
    tau_W = 1.0 / (p["phi"] * np.cosh((V - p["V3"]) / (2.0 * p["V4"])))
    gca, gk = p["g_Ca"] * M, p["g_K"] * W
    G = gca + gk + p["g_leak"]
    f = (-gca * (V - p["V_Ca"]) - gk * (V - p["V_K"]) - p["g_leak"] * (V - p["V_leak"])
         + I) / p["C"]
    V_new = V + dt * exprel(-G * dt / p["C"]) * f
    W_new = W + dt * exprel(-dt / tau_W) * (W_inf - W) / tau_W
    spike = ((V_new >= p["V_th"]) & ~(V >= p["V_th"])).astype(float)
    return V_new, {"W": W_new}, spike


STEPS = {"wang_buzsaki": (wang_buzsaki_step, WANG_BUZSAKI_DEFAULTS),
         "morris_lecar": (morris_lecar_step, MORRIS_LECAR_DEFAULTS)}


def simulate_family(name, V0, state0, I, dt):
    """Run the model ``name`` on input ``I`` (steps, N); rows as in the reference files."""
    step, p = STEPS[name]
    V, state = np.array(V0, dtype=float), {k: np.array(v, dtype=float) for k, v in state0.items()}
    out = {k: [] for k in ["V", "spike", *state]}
    for I_k in np.asarray(I, dtype=float):
        V, state, spike = step(V, state, I_k, p, dt)
        out["V"].append(V)
        out["spike"].append(spike)
        for k, x in state.items():
            out[k].append(x)
    return {k: np.array(v) for k, v in out.items()}
