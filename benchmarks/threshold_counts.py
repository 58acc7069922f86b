"""When does the default 20 mV threshold miss spikes? Spike counts with the models'
thresholds against upward crossings of 0 mV, for constant drives up to strong ones.

    PYTHONPATH=. python benchmarks/threshold_counts.py

Each row is one neuron driven by a constant current for 200 ms (RK4 at dt = 0.025 ms,
float64, torch), started at -65 mV with its gates at steady state. Under strong drive the
membrane settles into small oscillations around a depolarised level (depolarisation
block): their peaks stay below 20 mV, so the spike rule reports few spikes while V still
crosses 0 mV on every cycle. ``HHSpec(V_th=0.0)`` (or ``neuron_group(...,
threshold='V > 0*mV')``) counts those crossings, on every backend.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hh_plugin import HHSpec
from hh_plugin.model import HODGKIN_HUXLEY, TRAUB_MILES, WANG_BUZSAKI
from hh_plugin.torch import HH

DT_MS, DURATION_MS = 0.025, 200.0
DRIVES = {HODGKIN_HUXLEY: (10.0, 20.0, 50.0, 100.0),   # uA on 1 cm2
          WANG_BUZSAKI: (1.0, 5.0, 10.0, 20.0),         # uA on 1 cm2
          TRAUB_MILES: (0.5e-3, 2e-3, 5e-3, 10e-3)}     # uA on 20,000 um2 (0.5-10 nA)


def counts(model, V_th: float) -> np.ndarray:
    currents = np.asarray(DRIVES[model])
    steps = int(round(DURATION_MS / DT_MS))
    layer = HH(HHSpec(model=model, method="rk4", V_th=V_th), dt=DT_MS * 1e-3, V_init=-65.0)
    with torch.no_grad():
        z, _ = layer(torch.tensor(np.tile(currents, (steps, 1)), dtype=torch.float64))
    return z.sum(0).numpy().astype(int)


def main() -> int:
    print(f"spikes in {DURATION_MS:g} ms, RK4 at dt = {DT_MS} ms, from -65 mV")
    print()
    print("| model | drive | spikes, V_th = 20 mV | upward crossings of 0 mV |")
    print("|---|---|---|---|")
    for model, drives in DRIVES.items():
        at_20, at_0 = counts(model, 20.0), counts(model, 0.0)
        for drive, a, b in zip(drives, at_20, at_0):
            label = f"{drive * 1e3:g} nA" if model is TRAUB_MILES else f"{drive:g} uA"
            print(f"| {model.name} | {label} | {a} | {b} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
