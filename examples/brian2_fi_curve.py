r"""f-I curve of a heterogeneous Hodgkin-Huxley population in Brian2.

The reference model (BrainPy's ``brainpy.state.HH``; :math:`g_L = 0.03` mS by default)
is simulated with :func:`hh_plugin.brian2.neuron_group` for 200 uncoupled neurons: four
leak conductances :math:`g_L \in \{0.03, 0.1, 0.3, 0.6\}` mS (a per-neuron parameter
array), each with 50 constant currents :math:`I` from 0 to 30 uA. Each neuron obeys

.. math::
    C \frac{dV}{dt} = -g_{Na} m^3 h (V - E_{Na}) - g_K n^4 (V - E_K) - g_L (V - E_L) + I,

integrated with exponential Euler (the reference model's scheme) at ``--dt`` ms. The
firing rate is the number of spikes (upward crossings of :math:`V_{th} = 20` mV) after a
``--transient`` divided by the remaining time, in Hz. HH has a type-II onset: the rate
jumps from 0 to about 50 Hz at the rheobase, and a larger :math:`g_L` moves the rheobase
to larger currents. Two features are the model's, not artefacts: near the rheobase HH
is bistable (rest and spiking coexist), so a neuron may stay silent from its random
initial state; and at large currents with a large :math:`g_L` the oscillation's peaks
stay below the reference model's high threshold :math:`V_{th} = 20` mV, so no spikes
are counted (the rate drops to 0).

Usage::

    python examples/brian2_fi_curve.py                    # cython target, 600 ms
    python examples/brian2_fi_curve.py --target numpy --duration 300
    python examples/brian2_fi_curve.py --output fi.png

Writes a PNG (default ``examples/output/fi_curve.png``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def simulate(target: str, duration_ms: float, transient_ms: float, dt_ms: float,
             n_currents: int, gL_values, seed: int):
    """Firing rate (Hz) per neuron; returns ``(I_uA, gL_mS, rate_Hz)`` arrays."""
    import brian2
    from brian2 import SpikeMonitor, defaultclock, ms, uA

    from hh_plugin import HHSpec
    from hh_plugin.brian2 import neuron_group

    brian2.prefs.codegen.target = target
    brian2.start_scope()
    defaultclock.dt = dt_ms * ms
    # (local names differ from the group's variables: brian2.run reads this namespace)
    levels = np.linspace(0.0, 30.0, n_currents)
    input_uA = np.tile(levels, len(gL_values))
    leak_mS = np.repeat(np.asarray(gL_values, dtype=float), n_currents)
    group = neuron_group(len(input_uA), HHSpec(gL=leak_mS), current=input_uA * uA, seed=seed)
    spikes = SpikeMonitor(group)
    brian2.run(duration_ms * ms)
    late = np.asarray(spikes.t / ms) >= transient_ms
    counts = np.bincount(np.asarray(spikes.i)[late], minlength=len(input_uA))
    rate = counts / ((duration_ms - transient_ms) * 1e-3)
    return input_uA, leak_mS, rate


def plot(I, gL, rate, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for value in np.unique(gL):
        sel = gL == value
        ax.plot(I[sel], rate[sel], "o-", ms=3, label=f"$g_L$ = {value:g} mS")
    ax.set_xlabel("input current $I$ (uA)")
    ax.set_ylabel("firing rate (Hz)")
    ax.set_title("Hodgkin-Huxley f-I curve (Brian2, hh_plugin)")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)


def main(argv=None):
    """Run the example; returns ``(I, gL, rate)`` (uA, mS, Hz), one entry per neuron."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="cython", choices=["cython", "numpy"],
                        help="Brian2 code generation target (default: cython)")
    parser.add_argument("--duration", type=float, default=600.0, help="simulated time (ms)")
    parser.add_argument("--transient", type=float, default=100.0,
                        help="initial time not counted (ms)")
    parser.add_argument("--dt", type=float, default=0.01, help="time step (ms)")
    parser.add_argument("--currents", type=int, default=50,
                        help="currents per g_L value (4 g_L values)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial potentials")
    parser.add_argument("--output", type=Path, default=Path("examples/output/fi_curve.png"))
    args = parser.parse_args(argv)
    if not 0 <= args.transient < args.duration:
        parser.error("need 0 <= --transient < --duration")

    start = time.perf_counter()
    I, gL, rate = simulate(args.target, args.duration, args.transient, args.dt,
                           args.currents, (0.03, 0.1, 0.3, 0.6), args.seed)
    elapsed = time.perf_counter() - start
    plot(I, gL, rate, args.output)
    for value in np.unique(gL):
        sel = (gL == value) & (rate > 0)
        rheobase = I[sel].min() if sel.any() else float("nan")
        print(f"gL = {value:5g} mS: rheobase <= {rheobase:5.2f} uA, "
              f"max rate {rate[gL == value].max():6.1f} Hz")
    print(f"{len(I)} neurons, {args.duration:g} ms on {args.target}: {elapsed:.1f} s "
          f"(including code generation); wrote {args.output}")
    return I, gL, rate


if __name__ == "__main__":
    main()
