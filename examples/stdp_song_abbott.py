r"""Brian2's STDP example (Song, Miller and Abbott 2000) with the plugin's STDP synapse
on a plugin neuron.

Brian2's ``examples/synapses/STDP.py``: 1000 Poisson inputs at 15 Hz onto one neuron
through exponential conductances (:math:`\tau_e = 5` ms, :math:`E_e = 0` mV), every
synapse with pair-based additive STDP (:class:`hh_plugin.network.STDP`,
``STDP.brian2_example``: :math:`\tau_{pre} = \tau_{post} = 20` ms,
:math:`\Delta_{pre} = 0.01\,w_{max}`, :math:`\Delta_{post} = -1.05\,\Delta_{pre}`),
initial weights uniform in :math:`[0, w_{max}]`, dt = 0.1 ms, 100 s. Because depression
slightly outweighs potentiation (:math:`\Delta_{post}\tau_{post} < -\Delta_{pre}
\tau_{pre}`), the inputs compete and the weights move to the ends of :math:`[0, w_{max}]`.

The neuron: Brian2's example uses a leaky integrate-and-fire neuron whose mean input at
the initial weights sits at its threshold, so it fires from fluctuations and each input's
timing matters. Here it is the plugin's Wang-Buzsaki neuron (``HHSpec(model=WANG_BUZSAKI)``,
type I: it can fire at low rates), with :math:`w_{max} = 0.004` mS and a constant current
of -8.5 uA that brings the mean input back near threshold (the mean synaptic conductance at
the initial weights is :math:`1000 \cdot 15\,\mathrm{Hz} \cdot 5\,\mathrm{ms} \cdot
w_{max}/2 = 0.15` mS). The classic HH neuron (``HHSpec()``, type II, no tonic firing
below about 50 Hz) fires at 25 to 70 Hz here for the :math:`w_{max}` values tried that
let it fire, and STDP then depresses most weights (``--model hh``, :math:`w_{max} = 0.01`
mS: 67 % below :math:`0.1\,w_{max}` and 0.2 % above :math:`0.9\,w_{max}` after 100 s).

It runs on torch's fused path (the whole time loop in C++, STDP updated in the forward
pass) in pieces of ``--piece`` seconds (the Poisson raster of one piece at a time), and
reports the fraction of weights below :math:`0.1\,w_{max}` and above
:math:`0.9\,w_{max}`, the output rate per piece, and a histogram (``--output``).
``--compare`` also runs Brian2's own example (its integrate-and-fire neuron, as Brian2
writes it, in C++ standalone) for the same time and prints its histogram beside ours.
``tests/test_synapse_definitions.py`` runs this network for a short time on torch and
Brian2 and checks identical spikes and final weights within 1e-9, and for 100 s on torch
and checks the histogram's U shape.

Run: ``python examples/stdp_song_abbott.py`` (``--seconds 10`` for a shorter run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.model import HODGKIN_HUXLEY, WANG_BUZSAKI  # noqa: E402
from hh_plugin.network import (CurrentInput, Dense, NetworkSpec, PoissonSource, Population,  # noqa: E402
                               Projection)
from hh_plugin.network.synapses import STDP, exponential_conductance  # noqa: E402
from hh_plugin.torch.network import NetworkModule  # noqa: E402

DT = 0.1  # ms, Brian2's default, as in the example
W_MAX = 0.004  # mS
BIAS = -8.5  # uA


def network(n_inputs: int = 1000, rate: float = 15.0, w_max: float = W_MAX, seed: int = 0,
            dt: float = DT, bias: float = BIAS, model=WANG_BUZSAKI) -> NetworkSpec:
    """The example's network: ``n_inputs`` Poisson inputs at ``rate`` Hz onto one neuron of
    ``model`` (a :class:`~hh_plugin.model.ModelDefinition`), all-to-all through an
    exponential conductance with Brian2's STDP rule, and a constant ``bias`` current (uA)
    into the neuron."""
    rng = np.random.default_rng(seed)
    inputs = [CurrentInput("out", bias)] if bias else []
    return NetworkSpec(
        [Population("out", 1, HHSpec(model=model), seed=seed)],
        [Projection("inputs", "out", Dense(rng.uniform(0.0, w_max, (1, n_inputs))),
                    exponential_conductance("e", 5.0, 0.0), delay=1,
                    stdp=STDP.brian2_example(w_max), name="stdp")],
        [PoissonSource("inputs", n_inputs, rate, seed=seed + 1)] + inputs, dt=dt)


def bimodality(w: np.ndarray, w_max: float = W_MAX):
    """Fractions of the weights below ``0.1 w_max`` and above ``0.9 w_max``."""
    w = np.asarray(w).ravel()
    return float(np.mean(w < 0.1 * w_max)), float(np.mean(w > 0.9 * w_max))


def run(spec: NetworkSpec, seconds: float, piece: float = 2.0, verbose: bool = True):
    """Run on torch's fused path in pieces; returns ``(final weights, output rates per
    piece in Hz, wall seconds)``."""
    module = NetworkModule(spec, dtype=torch.float64)
    steps_per_piece = int(round(piece * 1e3 / spec.dt))
    total = int(round(seconds * 1e3 / spec.dt))
    state, rates, done = None, [], 0
    t0 = time.perf_counter()
    with torch.no_grad():
        while done < total:
            steps = min(steps_per_piece, total - done)
            out = module(steps=steps, state=state, path="fused", spike_dtype=torch.uint8)
            state = out.state
            rates.append(float(out.spikes["out"].sum()) / (steps * spec.dt * 1e-3))
            done += steps
            if verbose:
                low, high = bimodality(state.plasticity["stdp"]["w"].numpy(),
                                       spec.projections[0].stdp.w_max)
                print(f"t = {done * spec.dt * 1e-3:7.1f} s: output {rates[-1]:6.1f} Hz, "
                      f"weights < 0.1 w_max: {low:.2f}, > 0.9 w_max: {high:.2f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return state.plasticity["stdp"]["w"].numpy().ravel(), rates, time.perf_counter() - t0


def brian2_example(seconds: float, seed: int = 0, directory=None):
    """Brian2's ``examples/synapses/STDP.py`` as Brian2 writes it (its integrate-and-fire
    neuron, :math:`g_{max} = 0.01` relative to the leak), in C++ standalone for ``seconds``
    of simulated time; returns ``(w / g_max, output rate in Hz)``."""
    import tempfile

    import brian2 as b2
    from brian2 import Hz, ms, mV, second

    directory = directory or tempfile.mkdtemp(prefix="brian2_stdp_")
    b2.set_device("cpp_standalone", directory=directory)
    b2.seed(seed)
    taum, taupre, taupost, taue = 10 * ms, 20 * ms, 20 * ms, 5 * ms
    Ee, vt, vr, El = 0 * mV, -54 * mV, -60 * mV, -74 * mV  # noqa: F841 (Brian2 namespace)
    gmax = 0.01
    dApre = 0.01 * gmax
    dApost = -dApre * taupre / taupost * 1.05  # noqa: F841
    neurons = b2.NeuronGroup(1, """dv/dt = (ge * (Ee-v) + El - v) / taum : volt
                                   dge/dt = -ge / taue : 1""",
                             threshold="v>vt", reset="v = vr", method="euler")
    poisson = b2.PoissonGroup(1000, rates=15 * Hz)
    S = b2.Synapses(poisson, neurons,
                    """w : 1
                       dApre/dt = -Apre / taupre : 1 (event-driven)
                       dApost/dt = -Apost / taupost : 1 (event-driven)""",
                    on_pre="""ge += w
                              Apre += dApre
                              w = clip(w + Apost, 0, gmax)""",
                    on_post="""Apost += dApost
                               w = clip(w + Apre, 0, gmax)""")
    S.connect()
    S.w = "rand() * gmax"
    monitor = b2.SpikeMonitor(neurons)
    b2.run(seconds * second)
    w = np.asarray(S.w[:]) / gmax
    rate = monitor.num_spikes / seconds
    b2.device.reinit()
    b2.device.activate()
    b2.set_device("runtime")
    return w, rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=100.0)
    parser.add_argument("--piece", type=float, default=2.0)
    parser.add_argument("--output", default=None, help="PNG of the weight histogram")
    parser.add_argument("--model", choices=("wang_buzsaki", "hh"), default="wang_buzsaki",
                        help="the neuron ('hh': the classic HH neuron with w_max = 0.01 mS "
                             "and no bias current)")
    parser.add_argument("--compare", action="store_true",
                        help="also run Brian2's own example (C++ standalone) and print its "
                             "histogram")
    args = parser.parse_args()
    if args.model == "hh":
        spec, w_max = network(model=HODGKIN_HUXLEY, w_max=0.01, bias=0.0), 0.01
    else:
        spec, w_max = network(), W_MAX
    w, rates, wall = run(spec, args.seconds, args.piece)
    low, high = bimodality(w, w_max)
    print(f"\n{args.seconds:g} s of simulated time in {wall:.0f} s (torch, fused C++ path)")
    print(f"weights below 0.1 w_max: {low:.3f}, above 0.9 w_max: {high:.3f}, in between: "
          f"{1 - low - high:.3f}")
    counts, edges = np.histogram(w / w_max, bins=10, range=(0.0, 1.0))
    print("histogram of w/w_max (10 bins):", counts.tolist())
    if args.compare:
        w_b2, rate_b2 = brian2_example(args.seconds)
        low_b2, high_b2 = bimodality(w_b2, 1.0)
        print(f"Brian2's example (integrate-and-fire, C++ standalone): output "
              f"{rate_b2:.1f} Hz; weights below 0.1 w_max: {low_b2:.3f}, above 0.9 w_max: "
              f"{high_b2:.3f}")
        print("its histogram of w/w_max (10 bins):",
              np.histogram(w_b2, bins=10, range=(0.0, 1.0))[0].tolist())
    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
        a.hist(w / w_max, bins=20, range=(0, 1))
        a.set_xlabel("w / w_max")
        a.set_ylabel("synapses")
        b.plot(np.arange(1, len(rates) + 1) * args.piece, rates)
        b.set_xlabel("time (s)")
        b.set_ylabel("output rate (Hz)")
        fig.tight_layout()
        fig.savefig(args.output, dpi=100)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
