r"""Brian2's STDP example (Song, Miller and Abbott 2000) with the plugin's STDP synapse
on a plugin neuron.

Brian2's ``examples/synapses/STDP.py``: 1000 Poisson inputs at 15 Hz onto one neuron
through exponential conductances (:math:`\tau_e = 5` ms, :math:`E_e = 0` mV), every
synapse with pair-based additive STDP (:class:`hh_plugin.network.STDP`,
``STDP.brian2_example``: :math:`\tau_{pre} = \tau_{post} = 20` ms,
:math:`\Delta_{pre} = 0.01\,w_{max}`, :math:`\Delta_{post} = -1.05\,\Delta_{pre}`),
initial weights uniform in :math:`[0, w_{max}]`, dt = 0.1 ms, 100 s. Here the neuron is
the plugin's Hodgkin-Huxley neuron (``HHSpec()``, BrainPy's ``HH``) instead of Brian2's
leaky integrate-and-fire one, and :math:`w_{max} = 0.01` mS: with 1000 inputs at 15 Hz the
mean synaptic conductance at the initial weights is :math:`1000 \cdot 15\,\mathrm{Hz}
\cdot 5\,\mathrm{ms} \cdot w_{max}/2 \approx 0.375` mS. Because depression slightly
outweighs potentiation (:math:`\Delta_{post}\tau_{post} < -\Delta_{pre}\tau_{pre}`), the
inputs compete: the weights end bimodal, most near 0 or near :math:`w_{max}`, as in the
example's histogram, and the output rate drops to a few Hz.

It runs on torch's fused path (the whole time loop in C++, STDP updated in the forward
pass) in pieces of ``--piece`` seconds (the Poisson raster of one piece at a time), and
reports the fraction of weights below :math:`0.1\,w_{max}` and above
:math:`0.9\,w_{max}`, the output rate per piece, and a histogram (``--output``).
``tests/test_synapse_definitions.py`` runs this network for a short time on torch and
Brian2 and checks identical spikes and final weights within 1e-9.

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
from hh_plugin.network import (CurrentInput, Dense, NetworkSpec, PoissonSource, Population,  # noqa: E402
                               Projection)
from hh_plugin.network.synapses import STDP, exponential_conductance  # noqa: E402
from hh_plugin.torch.network import NetworkModule  # noqa: E402

DT = 0.1  # ms, Brian2's default, as in the example
W_MAX = 0.01  # mS
BIAS = 0.0  # uA


def network(n_inputs: int = 1000, rate: float = 15.0, w_max: float = W_MAX, seed: int = 0,
            dt: float = DT, bias: float = BIAS, model=None) -> NetworkSpec:
    """The example's network: ``n_inputs`` Poisson inputs at ``rate`` Hz onto one HH
    neuron, all-to-all through an exponential conductance with Brian2's STDP rule, and a
    constant ``bias`` current (uA) into the neuron."""
    rng = np.random.default_rng(seed)
    inputs = [CurrentInput("out", bias)] if bias else []
    return NetworkSpec(
        [Population("out", 1, HHSpec() if model is None else HHSpec(model=model), seed=seed)],
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=100.0)
    parser.add_argument("--piece", type=float, default=2.0)
    parser.add_argument("--output", default=None, help="PNG of the weight histogram")
    args = parser.parse_args()
    spec = network()
    w, rates, wall = run(spec, args.seconds, args.piece)
    low, high = bimodality(w)
    print(f"\n{args.seconds:g} s of simulated time in {wall:.0f} s (torch, fused C++ path)")
    print(f"weights below 0.1 w_max: {low:.3f}, above 0.9 w_max: {high:.3f}, in between: "
          f"{1 - low - high:.3f}")
    counts, edges = np.histogram(w / W_MAX, bins=10, range=(0.0, 1.0))
    print("histogram of w/w_max (10 bins):", counts.tolist())
    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
        a.hist(w / W_MAX, bins=20, range=(0, 1))
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
