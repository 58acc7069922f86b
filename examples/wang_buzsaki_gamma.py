r"""The Wang-Buzsaki (1996) gamma network from the specification alone, on both backends.

100 Wang-Buzsaki interneurons, all-to-all gated GABA_A synapses
(:func:`hh_plugin.network.gated_conductance`: :math:`\dot s = \alpha F(V_{pre})(1 - s) -
\beta s`, :math:`F(V) = 1/(1 + e^{-(V - \theta)/2})`, :math:`\alpha = 12`/ms,
:math:`\beta = 0.1`/ms, :math:`\theta = 0` mV, :math:`E_{syn} = -75` mV, each synapse
:math:`g_{syn}/N` with :math:`g_{syn} = 0.1` mS/cm\ :sup:`2`), a heterogeneous drive
:math:`I_i \sim \mathcal{U}(\bar I - \Delta, \bar I + \Delta)` and random initial
potentials. The same :class:`~hh_plugin.network.NetworkSpec` runs in PyTorch (the
``NetworkModule`` step loop, float64) and Brian2 (``build_network``), and the example
reports:

- whether the spike steps are identical, and the largest |dV| between the backends;
- the population frequency: the peak of the power spectrum of the population's mean
  potential after a transient;
- the synchrony index of Golomb and Rinzel (1993), used by Wang and Buzsaki,

  .. math:: \chi^2 = \frac{\operatorname{var}_t\big(\bar V(t)\big)}
                         {\frac{1}{N}\sum_i \operatorname{var}_t\big(V_i(t)\big)},
            \qquad \bar V = \frac{1}{N}\sum_i V_i ,

  1 for full synchrony, about :math:`1/\sqrt N` for asynchrony;

and draws the rasters of both backends and the power spectrum (``--output``).

Run: ``python examples/wang_buzsaki_gamma.py`` (``--quick``: 30 neurons, 100 ms).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hh_plugin import HHSpec
from hh_plugin.model import WANG_BUZSAKI
from hh_plugin.network import (CurrentInput, Dense, NetworkSpec, Population, Projection,
                               gated_conductance)
from hh_plugin.torch.network import NetworkModule


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=100)
    parser.add_argument("--duration", type=float, default=500.0, help="ms")
    parser.add_argument("--transient", type=float, default=250.0, help="ms left out")
    parser.add_argument("--dt", type=float, default=0.01, help="ms")
    parser.add_argument("--current", type=float, default=1.0, help="mean drive (uA)")
    parser.add_argument("--spread", type=float, default=0.03, help="half-width of the drive")
    parser.add_argument("--g-syn", type=float, default=0.1, help="total conductance (mS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", default="numpy", help="Brian2 code generation target")
    parser.add_argument("--output", default=None, help="figure (png) to write")
    parser.add_argument("--quick", action="store_true", help="30 neurons, 100 ms")
    args = parser.parse_args(argv)
    if args.quick:
        args.neurons, args.duration, args.transient = 30, 100.0, 40.0
    return args


def network(n: int, current: float, spread: float, g_syn: float, dt: float,
            seed: int) -> NetworkSpec:
    """The Wang-Buzsaki interneuron network (see the module docstring)."""
    rng = np.random.default_rng(seed)
    population = Population("I", n, HHSpec(model=WANG_BUZSAKI),
                            initial={"V": rng.uniform(-70.0, -50.0, n)})
    gaba = Projection("I", "I", Dense(np.full((n, n), g_syn / n)), gated_conductance("gaba"),
                      delay=1)
    drive = CurrentInput("I", rng.uniform(current - spread, current + spread, n))
    return NetworkSpec([population], [gaba], [drive], dt=dt)


def rhythm(V: np.ndarray, dt: float):
    """``(frequency Hz, synchrony index chi, frequencies, power)`` of potentials ``(T, N)``."""
    mean = V.mean(axis=1)
    chi = float(np.sqrt(mean.var() / V.var(axis=0).mean()))
    signal = mean - mean.mean()
    power = np.abs(np.fft.rfft(signal * np.hanning(len(signal)))) ** 2
    freqs = np.fft.rfftfreq(len(signal), d=dt * 1e-3)
    band = freqs > 5.0
    return float(freqs[band][np.argmax(power[band])]), chi, freqs, power


def main(argv=None):
    args = parse_args(argv)
    spec = network(args.neurons, args.current, args.spread, args.g_syn, args.dt, args.seed)
    steps = int(round(args.duration / args.dt))
    skip = int(round(args.transient / args.dt))

    start = time.perf_counter()
    with torch.no_grad():
        out = NetworkModule(spec, dtype=torch.float64)(steps=steps, record=("V",))
    torch_seconds = time.perf_counter() - start
    torch_spikes = out.spikes["I"].numpy()
    torch_V = out.traces["I"]["V"].numpy()

    import brian2

    from hh_plugin.brian2.network import build_network

    brian2.start_scope()
    brian2.prefs.codegen.target = args.target
    start = time.perf_counter()
    net = build_network(spec, steps=steps, record=("V",))
    net.run(steps)
    brian_seconds = time.perf_counter() - start
    brian_spikes = net.spike_raster("I", steps)
    brian_V = net.trace("I", "V")

    frequency, chi, freqs, power = rhythm(torch_V[skip:], args.dt)
    result = {
        "neurons": args.neurons, "duration_ms": args.duration,
        "spikes_torch": int(torch_spikes.sum()), "spikes_brian2": int(brian_spikes.sum()),
        "identical_spikes": bool(np.array_equal(torch_spikes, brian_spikes)),
        "max_dV_mV": float(np.abs(torch_V - brian_V).max()),
        "frequency_Hz": frequency, "synchrony_chi": chi,
        "rate_Hz": float(torch_spikes[skip:].sum() / args.neurons
                         / ((steps - skip) * args.dt * 1e-3)),
        "seconds_torch": torch_seconds, "seconds_brian2": brian_seconds}
    for key, value in result.items():
        print(f"{key:>18}: {value}")

    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t = np.arange(steps) * args.dt
        fig, axes = plt.subplots(3, 1, figsize=(8, 8))
        for ax, spikes, name in ((axes[0], torch_spikes, "PyTorch"),
                                 (axes[1], brian_spikes, "Brian2")):
            k, i = np.nonzero(spikes)
            ax.plot(t[k], i, "|", markersize=3)
            ax.set(ylabel="neuron", title=f"{name}: {int(spikes.sum())} spikes")
        axes[1].set_xlabel("t (ms)")
        keep = (freqs > 5) & (freqs < 200)
        axes[2].semilogy(freqs[keep], power[keep])
        axes[2].set(xlabel="frequency (Hz)", ylabel="power of mean V",
                    title=f"population rhythm {frequency:.1f} Hz, chi = {chi:.2f}")
        fig.tight_layout()
        fig.savefig(args.output, dpi=100)
        plt.close(fig)
    return result


if __name__ == "__main__":
    main()
