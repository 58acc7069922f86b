"""Fused-kernel throughput of each shipped model beside the reference HH (same run).

Neuron-steps per second (N neurons x T steps / wall seconds, best of ``--repeats`` after
a warm-up that includes the kernel build) of ``hh_sequence(path='fused_cpp')`` for
every shipped model, float32 and float64, forward only and forward + backward (loss:
spike count + 1e-3 x sum of V), and the ratio to the reference HH model in the same
run. Each model is driven by a constant current in its own firing range, dt = 0.01 ms.
This is a benchmark, not a test.

    python benchmarks/family_throughput.py              # N = 1e4, T = 1000
    python benchmarks/family_throughput.py --quick      # N = 2e3, T = 200
"""

from __future__ import annotations

import argparse
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.model import (HODGKIN_HUXLEY, MORRIS_LECAR, TRAUB_MILES,  # noqa: E402
                             WANG_BUZSAKI)
from hh_plugin.torch.functional.parameters import as_parameters, initial_state  # noqa: E402
from hh_plugin.torch.fused import hh_sequence  # noqa: E402

#: (model, range of the constant drive in uA): each model fires over this range.
MODELS = ((HODGKIN_HUXLEY, (5.0, 20.0)), (WANG_BUZSAKI, (0.5, 3.0)),
          (MORRIS_LECAR, (80.0, 150.0)), (TRAUB_MILES, (2e-4, 1e-3)))
DT_MS = 0.01


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def best_of(fn, repeats: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(model, drive, N, T, dtype, repeats):
    p = as_parameters(HHSpec(model=model)).to(dtype=dtype)
    g = torch.Generator().manual_seed(0)
    low, high = drive
    I = low + (high - low) * torch.rand(T, N, generator=g, dtype=dtype)
    s0 = initial_state(p, (N,), V=-65.0, dtype=dtype)
    dt = DT_MS * 1e-3
    with torch.no_grad():
        fwd = best_of(lambda: hh_sequence(I, s0, p, dt, path="fused_cpp"), repeats)
        spikes = hh_sequence(I, s0, p, dt, path="fused_cpp")[0].sum().item()
    Ig = I.clone().requires_grad_(True)

    def train():
        z, st = hh_sequence(Ig, s0, p, dt, path="fused_cpp")
        (z.sum() + 1e-3 * st.V.sum()).backward()
        Ig.grad = None

    bwd = best_of(train, repeats)
    return N * T / fwd, N * T / bwd, spikes / N


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--neurons", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    N = args.neurons or (2000 if args.quick else 10000)
    T = args.steps or (200 if args.quick else 1000)
    repeats = args.repeats or (1 if args.quick else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()}, torch threads: {torch.get_num_threads()}, "
          f"N = {N}, T = {T}, dt = {DT_MS} ms, best of {repeats}")
    rows = []
    for dtype in (torch.float32, torch.float64):
        base = None
        for model, drive in MODELS:
            fwd, bwd, rate = measure(model, drive, N, T, dtype, repeats)
            if base is None:
                base = (fwd, bwd)
            rows.append((model.name, str(dtype).replace("torch.", ""), fwd, bwd,
                         fwd / base[0], bwd / base[1], rate))
    print()
    print("| model | dtype | fwd neuron-steps/s | fwd+bwd neuron-steps/s | fwd vs HH | "
          "fwd+bwd vs HH | spikes/neuron |")
    print("|---|---|---|---|---|---|---|")
    for name, dt, fwd, bwd, rf, rb, rate in rows:
        print(f"| {name} | {dt} | {fwd:.3g} | {bwd:.3g} | {rf:.2f} | {rb:.2f} | {rate:.2f} |")
    return rows


if __name__ == "__main__":
    main()
