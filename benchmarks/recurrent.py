"""Speed of the recurrent HH layer beside Norse's LIFRecurrent, per step and per sequence.

A recurrent layer of ``--hidden`` neurons (default 256) with ``--inputs`` inputs (64) on a
batch of ``--batch`` (32), ``--steps`` time steps (default 500), float32, 2 torch threads:

* per step: ``HHRecurrentCell`` and Norse's ``LIFRecurrentCell`` stepped in a Python loop
  (as inside ``SequentialState``), one leaf input per step;
* whole sequence: ``HHRecurrent`` on its default path (the fused recurrent kernel,
  :mod:`hh_plugin.torch.fused.recurrent`), ``HHRecurrent(path='naive')`` (the step loop
  it replaced) and Norse's ``LIFRecurrent``, one ``(T, batch, inputs)`` input.

Forward under ``torch.no_grad()``; forward+backward: loss = all spikes + 1e-3 x the final
membrane potential (``state.v``), ``backward()`` through every step, gradients to the
input and both weight matrices. Times are the best of ``--repeats`` runs after one
untimed warm-up (kernel builds not timed). Throughput: neuron-steps per second
(batch x hidden x steps / time). The ratio divides by the LIF counterpart of the same
run (cells by ``LIFRecurrentCell``, sequences by ``LIFRecurrent``). HH inputs are scaled
so that neurons fire (input weights uniform in [0, 40/inputs] uA on inputs in [0, 1]);
LIF takes Norse's defaults. This is a benchmark, not a test.

    python benchmarks/recurrent.py                       # about a minute on 2 cores
    python benchmarks/recurrent.py --steps 200 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hh_plugin.torch import HHRecurrent, HHRecurrentCell  # noqa: E402
from timing import best_of, cpu_model  # noqa: E402  (benchmarks/timing.py)

DT = 1e-5  # s (0.01 ms), the HH modules' default


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--inputs", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    return ap.parse_args(argv)


def cell_loop(cell, inputs, backward):
    """The cell over ``inputs`` (T leaf tensors) step by step."""
    if not backward:
        with torch.no_grad():
            state = None
            for x in inputs:
                _, state = cell(x, state)
        return
    cell.zero_grad(set_to_none=True)
    state, total = None, 0.0
    for x in inputs:
        x.grad = None
        z, state = cell(x, state)
        total = total + z.sum()
    (total + 1e-3 * state.v.sum()).backward()


def sequence_call(module, inputs, backward):
    if not backward:
        with torch.no_grad():
            module(inputs)
        return
    module.zero_grad(set_to_none=True)
    x = inputs.detach().requires_grad_(True)
    z, state = module(x)
    (z.sum() + 1e-3 * state.v.sum()).backward()


def machine():
    load = ""
    try:
        load = "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    return f"{cpu_model()}; {torch.get_num_threads()} torch threads; torch {torch.__version__}; {load}"


def _hh(module, n_in):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        module.input_weights.copy_(torch.rand(module.input_weights.shape, generator=g)
                                   * (40.0 / n_in))
    return module


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from norse.torch import LIFRecurrent, LIFRecurrentCell

    T, B, n_in, H = args.steps, args.batch, args.inputs, args.hidden
    g = torch.Generator().manual_seed(0)
    x_hh = torch.rand((T, B, n_in), generator=g)
    x_lif = 2.0 * torch.rand((T, B, n_in), generator=g)
    steps_hh = [x.clone().requires_grad_(True) for x in x_hh]
    steps_lif = [x.clone().requires_grad_(True) for x in x_lif]

    hh_cell = _hh(HHRecurrentCell(n_in, H, dt=DT), n_in)
    hh_fused = _hh(HHRecurrent(n_in, H, dt=DT), n_in)
    hh_loop = _hh(HHRecurrent(n_in, H, dt=DT, path="naive"), n_in)
    lif_cell, lif_seq = LIFRecurrentCell(n_in, H), LIFRecurrent(n_in, H)
    rows = [
        ("per step", "HHRecurrentCell (Python loop)", lambda b: cell_loop(hh_cell, steps_hh, b)),
        ("per step", "norse LIFRecurrentCell (Python loop)",
         lambda b: cell_loop(lif_cell, steps_lif, b)),
        ("sequence", "HHRecurrent, fused kernel (default)", lambda b: sequence_call(hh_fused, x_hh, b)),
        ("sequence", "HHRecurrent, step loop (path='naive')",
         lambda b: sequence_call(hh_loop, x_hh, b)),
        ("sequence", "norse LIFRecurrent", lambda b: sequence_call(lif_seq, x_lif, b)),
    ]
    with torch.no_grad():
        spikes = hh_fused(x_hh)[0].mean().item()
    print(f"machine: {machine()}")
    print(f"batch {B}, {n_in} inputs, {H} hidden, {T} steps, float32, best of {args.repeats}; "
          f"HH spike probability per neuron-step {spikes:.4f}", flush=True)
    results = {}
    for kind, name, fn in rows:
        results[name] = (kind,) + tuple(best_of(lambda: fn(b), args.repeats)
                                        for b in (False, True))
        print(f"  {name}: fwd {results[name][1]:.3f} s, fwd+bwd {results[name][2]:.3f} s",
              flush=True)
    reference = {"per step": results["norse LIFRecurrentCell (Python loop)"],
                 "sequence": results["norse LIFRecurrent"]}
    neuron_steps = B * H * T
    print()
    print(f"| {T} steps, batch {B}, {n_in} -> {H}, float32 | fwd per step (us) | fwd neuron-steps/s "
          f"| fwd / LIF | fwd+bwd per step (us) | fwd+bwd neuron-steps/s | fwd+bwd / LIF |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (kind, f, fb) in results.items():
        ref = reference[kind]
        print(f"| {name} | {f / T * 1e6:.0f} | {neuron_steps / f:.3g} | {f / ref[1]:.2f}x "
              f"| {fb / T * 1e6:.0f} | {neuron_steps / fb:.3g} | {fb / ref[2]:.2f}x |")
    fused, loop = results["HHRecurrent, fused kernel (default)"], \
        results["HHRecurrent, step loop (path='naive')"]
    print(f"\nfused kernel against the step loop: fwd {loop[1] / fused[1]:.2f}x faster, "
          f"fwd+bwd {loop[2] / fused[2]:.2f}x faster")
    print(f"machine after the run: {machine()}")
    return results


if __name__ == "__main__":
    main()
