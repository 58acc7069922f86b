"""Agreement of every shipped synapse model across backends at full size (issue 24).

For each shipped synapse model a 200-neuron population of the plugin's neurons (HH;
Wang-Buzsaki for the gated synapse) with recurrent synapses of that model (delays 1-5
steps) and Poisson input through the same receptor, float64, dt = 0.01 ms, 200 ms
(20,000 steps); Tsodyks-Markram on a biexponential conductance and STDP (Brian2's example's
rule) on an exponential conductance. The populations are independent (no projection
between them), so the one specification is one network per model, and one Brian2 C++
standalone build serves them all. Measured: torch (the fused C++ path, which the tests
hold equal to the step loop) against Brian2's numpy runtime and its C++ standalone device:
identical spike steps, max |dV| (mV) and, for STDP, max |dw| (mS) of the final weights.

    nice python3 benchmarks/synapse_agreement.py [--ms 200] [--no-standalone]

Prints one table row per model and backend, and the CPU model. The issue's bounds:
identical spikes, |dV| <= 1e-6 mV, |dw| <= 1e-9.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.model import WANG_BUZSAKI  # noqa: E402
from hh_plugin.network import (CurrentInput, Dense, FixedProbability, NetworkSpec,  # noqa: E402
                               PoissonSource, Population, Projection, RandomDelay, Synapse)
from hh_plugin.network.synapses import (CURRENT_PULSE, STDP, TsodyksMarkram,  # noqa: E402
                                        alpha_conductance, biexponential_conductance,
                                        biexponential_current, exponential_conductance,
                                        exponential_current, gated_conductance,
                                        nmda_conductance)
from hh_plugin.torch.network import NetworkModule  # noqa: E402
from timing import cpu_model  # noqa: E402  (benchmarks/timing.py)

N = 200
DT = 0.01

#: model -> (receptor, recurrent weight, Poisson weight, projection options)
MODELS = {
    "current_pulse": (lambda: Synapse(CURRENT_PULSE, "p"), 20.0, 60.0, {}),
    "exponential_current": (lambda: exponential_current("c", 2.0), 0.3, 1.0, {}),
    "exponential_conductance": (lambda: exponential_conductance("e", 5.0, 0.0), 0.004, 0.012, {}),
    "biexponential_current": (lambda: biexponential_current("c", 0.5, 3.0), 0.4, 1.2, {}),
    "biexponential_conductance": (lambda: biexponential_conductance("a", 0.5, 3.0, 0.0), 0.005,
                                  0.015, {}),
    "alpha_conductance": (lambda: alpha_conductance("a", 1.0, 0.0), 0.005, 0.015, {}),
    "nmda_conductance": (lambda: nmda_conductance("n", tau_decay=30.0), 0.006, 0.02, {}),
    "tsodyks_markram (biexp. cond.)": (lambda: biexponential_conductance("a", 0.5, 3.0, 0.0),
                                       0.02, 0.06,
                                       dict(short_term=TsodyksMarkram(0.1, 50.0, 200.0))),
    "stdp (exp. cond.)": (lambda: exponential_conductance("e", 5.0, 0.0), 0.006, 0.012,
                          dict(stdp=STDP.brian2_example(0.02))),
}


def network() -> NetworkSpec:
    rng = np.random.default_rng(0)
    pops, projections, inputs = [], [], []
    for k, (name, (make, w_rec, w_in, extra)) in enumerate(MODELS.items()):
        pop = f"P{k}"
        pops.append(Population(pop, N, HHSpec(), seed=k))
        syn = make()
        plastic = bool(extra)
        projections += [
            Projection(pop, pop, FixedProbability(0.05, w_rec, seed=100 + k), syn,
                       delay=2 if plastic else RandomDelay(1, 5, k), **extra),
            Projection(f"in{k}", pop, FixedProbability(0.1, w_in, seed=200 + k), syn, delay=1,
                       **extra)]
        inputs += [CurrentInput(pop, rng.uniform(1.0, 3.0, N)),
                   PoissonSource(f"in{k}", 100, 50.0, seed=300 + k)]
    k = len(MODELS)
    pops.append(Population(f"P{k}", N, HHSpec(model=WANG_BUZSAKI),
                           initial={"V": rng.uniform(-70, -50, N)}))
    projections.append(Projection(f"P{k}", f"P{k}", Dense(np.full((N, N), 0.1 / N)),
                                  gated_conductance(), delay=1))
    inputs.append(CurrentInput(f"P{k}", rng.uniform(0.8, 1.6, N)))
    return NetworkSpec(pops, projections, inputs, dt=DT)


def model_names():
    return list(MODELS) + ["gated_conductance (Wang-Buzsaki)"]


def run_torch(spec, steps):
    module = NetworkModule(spec, dtype=torch.float64)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = module(steps=steps, record=("V",), path="fused")
    seconds = time.perf_counter() - t0
    spikes = {p: out.spikes[p].numpy() for p in spec.populations}
    V = {p: out.traces[p]["V"].numpy() for p in spec.populations}
    weights = {}
    for proj in spec.projections:
        if proj.stdp is not None:
            w = out.state.plasticity[proj.name]["w"].numpy()
            weights[proj.name] = w
    return spikes, V, weights, seconds


def run_brian2(spec, steps, device, directory=None):
    import brian2
    from hh_plugin.brian2 import use_device
    from hh_plugin.brian2.network import build_network

    brian2.start_scope()
    t0 = time.perf_counter()
    if device == "numpy":
        brian2.prefs.codegen.target = "numpy"
        net = build_network(spec, steps=steps, record=("V",))
        net.run(steps)
    else:
        with use_device("cpp_standalone", directory=directory, build_on_run=False) as session:
            net = build_network(spec, steps, record=("V",))
            net.run()
            session.build(with_output=False)
    seconds = time.perf_counter() - t0
    spikes = {p: net.spike_raster(p, steps) for p in spec.populations}
    V = {p: net.trace(p, "V") for p in spec.populations}
    weights = {}
    for proj in spec.projections:
        if proj.stdp is not None:
            S = net.synapses[proj.name][0]
            weights[proj.name] = (np.asarray(S.i), np.asarray(S.j), np.asarray(S.w_) * 1e3)
    brian2.start_scope()
    return spikes, V, weights, seconds


def compare(spec, torch_run, brian_run):
    rows = []
    for k, name in enumerate(model_names()):
        pop = f"P{k}"
        same = bool(np.array_equal(torch_run[0][pop], brian_run[0][pop]))
        dV = float(np.abs(torch_run[1][pop] - brian_run[1][pop]).max())
        dw = None
        for proj in spec.projections:
            if proj.target == pop and proj.stdp is not None:
                conn = spec.connections[proj.name]
                i, j, theirs = brian_run[2][proj.name]
                ours = torch_run[2][proj.name]
                ours = ours[j, i] if conn.dense else ours
                dw = max(dw or 0.0, float(np.abs(ours - theirs).max()))
        rows.append((name, int(torch_run[0][pop].sum()), same, dV, dw))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ms", type=float, default=200.0)
    parser.add_argument("--no-standalone", action="store_true")
    args = parser.parse_args()
    steps = int(round(args.ms / DT))
    spec = network()
    print(f"CPU: {cpu_model()}; load average {os.getloadavg()[0]:.2f}; {len(spec.populations)} "
          f"populations of {N} neurons, {steps} steps of {DT} ms, float64")
    torch_run = run_torch(spec, steps)
    print(f"torch (fused): {torch_run[3]:.1f} s")
    backends = [("numpy", None)]
    if not args.no_standalone:
        backends.append(("cpp_standalone", tempfile.mkdtemp(prefix="synapse_agreement_")))
    ok = True
    for device, directory in backends:
        brian_run = run_brian2(spec, steps, device, directory)
        print(f"\nBrian2 {device}: {brian_run[3]:.1f} s (with code generation"
              f"{' and compilation' if device != 'numpy' else ''})")
        print("| model | spikes | identical spike steps | max abs dV (mV) | max abs dw (mS) |")
        print("|---|---|---|---|---|")
        for name, count, same, dV, dw in compare(spec, torch_run, brian_run):
            ok &= same and dV <= 1e-6 and (dw is None or dw <= 1e-9) and count > 0
            print(f"| {name} | {count} | {'yes' if same else 'NO'} | {dV:.1e} | "
                  f"{'' if dw is None else f'{dw:.1e}'} |")
    print("\nall within the issue's bounds" if ok else "\nSOME CASE IS OUTSIDE THE BOUNDS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
