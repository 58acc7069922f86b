"""Spike-time error of NEURON's fixed-step methods beside the plugin's, against one converged
reference, for the classic HH cell.

    PYTHONPATH=. python benchmarks/neuron_accuracy.py

NEURON 9's ``hh`` mechanism (rate tables off, 6.3 degC, where its rates are the plugin's)
with the plugin's parameters (``gl = 0.03 mS/cm2``, ``el = -54.387 mV``: the reference
model's) on a patch whose densities are the plugin's absolute values on 1 cm2. Each run
starts at -65 mV with its gates at steady state and is driven by a constant current for
100 ms. Spike times come from the recorded potential with the one formula every backend
uses (:func:`hh_plugin.model.spike_times.crossing_times`), so the comparison is of the
integrators alone. The reference is scipy's DOP853 at rtol = atol = 1e-12
(:func:`hh_plugin.model.reference.converged_spike_times`).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hh_plugin import HHSpec
from hh_plugin.model import HODGKIN_HUXLEY
from hh_plugin.model.reference import converged_spike_times
from hh_plugin.model.spike_times import crossing_times
from hh_plugin.torch import HH

DURATION_MS, V0 = 100.0, -65.0
CURRENTS = (10.0, 20.0)  # uA on 1 cm2 (uA/cm2 in NEURON)
STEPS_MS = (0.025, 0.01)
V_TH = 20.0


def _times(V: np.ndarray, dt: float) -> np.ndarray:
    """Upward crossings of V_TH in a trace whose sample k is V at (k + 1) dt."""
    before = np.concatenate([[V0], V[:-1]])
    k = np.flatnonzero((before < V_TH) & (V >= V_TH))
    return crossing_times(k, before[k], V[k], V_TH, dt)


def neuron_trace(current: float, dt: float, secondorder: int) -> np.ndarray:
    from neuron import h

    h.load_file("stdrun.hoc")
    soma = h.Section(name="soma")
    soma.L = soma.diam = 10.0
    soma.nseg, soma.cm = 1, 1.0
    soma.insert("hh")
    for seg in soma:
        seg.hh.gl = HODGKIN_HUXLEY.defaults["gL"] * 1e-3  # mS on 1 cm2 -> S/cm2
        seg.hh.el = HODGKIN_HUXLEY.defaults["EL"]
        seg.hh.gnabar = HODGKIN_HUXLEY.defaults["gNa"] * 1e-3
        seg.hh.gkbar = HODGKIN_HUXLEY.defaults["gK"] * 1e-3
    soma.ena, soma.ek = HODGKIN_HUXLEY.defaults["ENa"], HODGKIN_HUXLEY.defaults["EK"]
    h.usetable_hh = 0
    h.celsius = 6.3
    h.secondorder = secondorder
    h.cvode.active(0)
    h.dt = dt
    h.steps_per_ms = 1.0 / dt
    clamp = h.IClamp(soma(0.5))
    clamp.delay, clamp.dur = 0.0, 1e9
    clamp.amp = current * (h.area(0.5, sec=soma) * 1e-8) * 1e3  # uA/cm2 -> nA
    v = h.Vector()
    v.record(soma(0.5)._ref_v)
    h.finitialize(V0)
    h.continuerun(DURATION_MS)
    steps = int(round(DURATION_MS / dt))
    return np.array(v)[1:steps + 1]


def plugin_trace(current: float, dt: float, method: str) -> np.ndarray:
    steps = int(round(DURATION_MS / dt))
    layer = HH(HHSpec(method=method), dt=dt * 1e-3, V_init=V0, path="naive",
               record_states=("V",))
    with torch.no_grad():
        _, states = layer(torch.full((steps, 1), current, dtype=torch.float64))
    return states.V[:, 0].numpy()


def error(times: np.ndarray, reference: np.ndarray) -> str:
    if len(times) != len(reference):
        return f"{len(times)} spikes for {len(reference)}"
    return f"{np.abs(times - reference).max():.2g} ms"


def main() -> int:
    print(f"classic HH, {DURATION_MS:g} ms from {V0:g} mV; largest spike-time error against "
          f"DOP853 (rtol 1e-12)")
    print()
    rows = [("NEURON backward Euler (default)", lambda I, dt: neuron_trace(I, dt, 0)),
            ("NEURON Crank-Nicolson (secondorder=2)", lambda I, dt: neuron_trace(I, dt, 2)),
            ("hh_plugin exponential Euler (default)",
             lambda I, dt: plugin_trace(I, dt, "exponential_euler")),
            ("hh_plugin RK4", lambda I, dt: plugin_trace(I, dt, "rk4"))]
    header = " | ".join(f"{I:g} uA, dt {dt:g} ms" for dt in STEPS_MS for I in CURRENTS)
    print(f"| method | {header} |")
    print("|---|" + "---|" * (len(STEPS_MS) * len(CURRENTS)))
    references = {I: converged_spike_times(HODGKIN_HUXLEY, I, DURATION_MS, V0=V0)
                  for I in CURRENTS}
    for label, trace in rows:
        cells = [error(_times(trace(I, dt), dt), references[I])
                 for dt in STEPS_MS for I in CURRENTS]
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
