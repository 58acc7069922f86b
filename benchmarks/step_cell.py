"""Per-step speed of the HH cell against Norse's LIFCell, stepped in a Python loop.

A loop of ``--steps`` steps (default 1,000) of a cell on a ``(32, 256)`` float32 input, as
Norse models step their cells inside ``SequentialState``:

* forward: under ``torch.no_grad()``;
* forward+backward: each step's input is a leaf that requires gradients, the loss is the
  sum of all spikes plus 1e-3 times the final membrane potential, and ``loss.backward()``
  runs through all steps. (Indexing one ``(T, ...)`` leaf with ``x[t]`` instead would add,
  per step of the backward, a zero-filled ``(T, ...)`` gradient of the whole sequence:
  at T = 1,000 that fill, 32 MB per step, costs more than either cell.)

Rows: ``HHCell`` on the plain torch step (the path before the fused step; the cell's
``activation`` set to :func:`hh_plugin.torch.functional.hh.hh_step`), ``HHCell`` as it
runs by default (the fused C++ step, :mod:`hh_plugin.torch.fused.step`), Norse's
``LIFCell`` (default parameters), and for scale the ``HH`` sequence module (the whole
loop in one kernel call). Times are the best of ``--repeats`` runs after a warm-up
(kernel compilation not timed); the ratio column divides by LIFCell's time in the same
run. This is a benchmark, not a test.

    python benchmarks/step_cell.py                 # 2 threads, best of 5
    python benchmarks/step_cell.py --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hh_plugin.torch import HH, HHCell  # noqa: E402
from hh_plugin.torch.functional.hh import hh_step  # noqa: E402

DT = 1e-5  # s (0.01 ms), the HH cell's default


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--shape", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    return ap.parse_args(argv)


def best_of(fn, repeats):
    fn()  # warm-up (and the kernel build on first use)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cell_loop(cell, inputs, backward):
    """Run the cell over ``inputs`` (a list of T tensors) step by step; with ``backward``
    also the backward pass of sum(spikes) + 1e-3 * final V through every step."""
    if not backward:
        with torch.no_grad():
            state = None
            for x in inputs:
                _, state = cell(x, state)
        return
    state, total = None, 0.0
    for x in inputs:
        x.grad = None
        z, state = cell(x, state)
        total = total + z.sum()
    (total + 1e-3 * state[0].sum()).backward()


def sequence_call(module, inputs, backward):
    if not backward:
        with torch.no_grad():
            module(inputs)
        return
    x = inputs.detach().requires_grad_(True)
    z, state = module(x)
    (z.sum() + 1e-3 * state[0].sum()).backward()


def machine():
    model, load = platform.processor(), ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("CPU family"):
                model += f" (family {line.split(':', 1)[1].strip()})"
    except OSError:
        pass
    try:
        load = "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    return f"{model}; {torch.get_num_threads()} torch threads; torch {torch.__version__}; {load}"


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    shape, T = tuple(args.shape), args.steps
    g = torch.Generator().manual_seed(0)
    I_hh = 5.0 + 15.0 * torch.rand((T,) + shape, generator=g, dtype=dtype)  # uA: spikes
    I_lif = 2.0 * torch.rand((T,) + shape, generator=g, dtype=dtype)
    steps_hh = [x.clone().requires_grad_(True) for x in I_hh]  # one leaf per step
    steps_lif = [x.clone().requires_grad_(True) for x in I_lif]

    old = HHCell(dt=DT, V_init=-65.0)
    old.activation = hh_step  # the plain torch step, as HHCell ran before the fused step
    rows = [("HHCell, torch step (before)", lambda b: cell_loop(old, steps_hh, b)),
            ("HHCell, fused step (default)", lambda b: cell_loop(HHCell(dt=DT, V_init=-65.0), steps_hh, b))]
    try:
        from norse.torch import LIFCell
        lif = LIFCell()
        rows.append(("norse LIFCell", lambda b: cell_loop(lif, steps_lif, b)))
    except ImportError as exc:
        print(f"norse is not installed ({exc}); no LIFCell row", file=sys.stderr)
    seq = HH(dt=DT, V_init=-65.0)
    rows.append(("HH sequence module (one kernel call, for scale)",
                 lambda b: sequence_call(seq, I_hh, b)))

    print(f"machine: {machine()}")
    print(f"input {shape} {args.dtype}, {T} steps, best of {args.repeats}", flush=True)
    results = {}
    for name, fn in rows:
        results[name] = tuple(best_of(lambda: fn(b), args.repeats) for b in (False, True))
        print(f"  {name}: fwd {results[name][0]:.3f} s, fwd+bwd {results[name][1]:.3f} s", flush=True)
    lif = results.get("norse LIFCell")
    print()
    print(f"| {T} steps of {shape} {args.dtype} | fwd total (s) | fwd per step (us) | fwd / LIFCell "
          f"| fwd+bwd total (s) | fwd+bwd per step (us) | fwd+bwd / LIFCell |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (f, fb) in results.items():
        rf = f"{f / lif[0]:.2f}x" if lif else "-"
        rfb = f"{fb / lif[1]:.2f}x" if lif else "-"
        print(f"| {name} | {f:.3f} | {f / T * 1e6:.0f} | {rf} | {fb:.3f} | {fb / T * 1e6:.0f} | {rfb} |")
    return results


if __name__ == "__main__":
    main()
