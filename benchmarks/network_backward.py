"""Forward+backward of a network on the fused kernel (:mod:`hh_plugin.torch.network.
fused_backward`) beside the step loop's autograd, in one process.

An excitatory-inhibitory network of ``--neurons`` HH neurons (default 1000: 80 %
excitatory, biexponential conductance synapses, 20 % inhibitory, exponential
conductances), random connections with probability ``--p`` (0.02) and delays of 1 to 5
steps, a constant drive and a Poisson source, ``--steps`` steps (default 1000) of 0.025 ms,
float64. Loss: the spikes (through the surrogate) plus the mean membrane potential;
``backward()`` to the weights and a synapse time constant. Each path is timed in CPU
seconds of this process (``time.process_time``: all its threads, not time spent waiting
for a core, so it stays meaningful on a shared machine), best of ``--repeats`` after one
untimed warm-up (the kernel build is not timed). This is a benchmark, not a test.

    python benchmarks/network_backward.py                     # about a minute on 2 cores
    python benchmarks/network_backward.py --neurons 400 --steps 400
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hh_plugin.network import (CurrentInput, FixedProbability, NetworkSpec,  # noqa: E402
                               PoissonSource, Population, Projection, RandomDelay)
from hh_plugin.network.synapses import (biexponential_conductance,  # noqa: E402
                                        exponential_conductance)
from hh_plugin.torch.network import NetworkModule  # noqa: E402
from timing import cpu_model  # noqa: E402  (benchmarks/timing.py)


def network(n: int, p: float) -> NetworkSpec:
    ne, ni = int(0.8 * n), n - int(0.8 * n)
    rng = np.random.default_rng(0)
    exc = biexponential_conductance("e", 0.5, 3.0, 0.0)
    inh = exponential_conductance("i", 8.0, -80.0)
    pops = [Population("E", ne, initial={"V": rng.uniform(-70, -55, ne)}),
            Population("I", ni, initial={"V": rng.uniform(-70, -55, ni)})]
    projections = [
        Projection(src, dst, FixedProbability(p, w, seed=k), syn, delay=RandomDelay(1, 5, k))
        for k, (src, dst, w, syn) in enumerate([("E", "E", 0.004, exc), ("E", "I", 0.004, exc),
                                                ("I", "E", 0.02, inh), ("I", "I", 0.02, inh)])]
    projections.append(Projection("noise", "E", FixedProbability(0.05, 0.01, seed=9), exc,
                                  delay=1))
    return NetworkSpec(pops, projections,
                       [CurrentInput("E", rng.uniform(4, 9, ne)), CurrentInput("I", 5.0),
                        PoissonSource("noise", 100, 50.0, seed=3)], dt=0.025)


def cpu_seconds(module: NetworkModule, steps: int, path: str, repeats: int) -> tuple:
    tau = module.synapse_parameters("E", "e")["tau_decay"].requires_grad_()

    def once():
        module.zero_grad()
        tau.grad = None
        out = module(steps=steps, record=("V",), path=path)
        loss = sum(z.sum() for z in out.spikes.values()) + out.traces["E"]["V"].mean()
        loss.backward()
        return int(sum(z.sum() for z in out.spikes.values()).item())

    spikes = once()
    best = math.inf
    for _ in range(repeats):
        c0 = time.process_time()
        once()
        best = min(best, time.process_time() - c0)
    grads = [w.grad.clone() for w in module.weights.values()] + [tau.grad.clone()]
    return best, spikes, grads


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--neurons", type=int, default=1000)
    parser.add_argument("--p", type=float, default=0.02)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    spec = network(args.neurons, args.p)
    module = NetworkModule(spec, dtype=torch.float64)
    print(f"CPU: {cpu_model()}; torch threads: {torch.get_num_threads()}")
    print(f"{args.neurons} neurons, {sum(c.size for c in spec.connections.values())} synapses, "
          f"{args.steps} steps, float64, forward+backward")
    results = {path: cpu_seconds(module, args.steps, path, args.repeats)
               for path in ("naive", "fused")}
    for path, (seconds, spikes, _) in results.items():
        print(f"  {path:6s} {seconds:8.3f} CPU s   ({spikes} spikes)")
    diff = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))
               for a, b in zip(results["fused"][2], results["naive"][2]))
    print(f"  fused/naive speed-up {results['naive'][0] / results['fused'][0]:.1f}x; largest "
          f"relative gradient difference {diff:.1e}")


if __name__ == "__main__":
    main()
