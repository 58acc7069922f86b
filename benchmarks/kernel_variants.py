"""Which build of the fused kernel is fastest on this CPU: preferred vector width, the exp
implementation and the thread count, timed alternately against each other and against
the reference model (``brainpy.state.HH`` jitted, :mod:`jax_peer`) in the same minutes.

Each variant runs in its own process (its own build: ``$HH_PLUGIN_VECTOR_WIDTH``,
``$HH_PLUGIN_INLINE_EXP`` and ``$HH_PLUGIN_EXACT_EXPREL`` are read when the kernel is
compiled, and a process loads one build per model), serving timings with the protocol of
:func:`timing.serve_timings`; the driver runs one round of every variant and of the peer in
turn, so that a change of load hits all of them alike. Float32 (``--dtype``), N neurons, T
steps of 0.01 ms, a constant 10 uA input, forward (``fwd``) or forward and backward
(``fwdbwd``). This is a benchmark, not a test: it justifies
:func:`hh_plugin.torch.fused.cpp.compile_flags`' choice (docs/performance.md).
``--exprel small exact``: with and without the polynomial exprel of the exponential-Euler
factors (:func:`hh_plugin.torch.fused.cpp_source.small_exprel_code`).

    python benchmarks/kernel_variants.py --peer-python /path/to/python-with-brainpy
    python benchmarks/kernel_variants.py --widths 256 512 --exp libmvec --threads 1 2
    python benchmarks/kernel_variants.py --widths 512 --exp libmvec --exprel small exact
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from timing import TimingServer, cpu_model, serve_timings  # noqa: E402

DT_S = 1e-5


def serve(N: int, T: int, mode: str, threads: int, dtype: str = "float32") -> None:
    """One variant's process: build (the environment chose the flags), warm up, serve."""
    import torch

    from hh_plugin import HHSpec
    from hh_plugin.torch.functional.parameters import as_parameters, initial_state
    from hh_plugin.torch.fused import hh_sequence
    from hh_plugin.torch.fused.cpp import compile_flags

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype)
    p = as_parameters(HHSpec()).to(dtype=dtype)
    current = torch.full((T, N), 10.0, dtype=dtype, requires_grad=mode == "fwdbwd")
    s0 = initial_state(p, (N,), V=-65.0, dtype=dtype)

    def forward():
        with torch.no_grad():
            hh_sequence(current, s0, p, DT_S, path="fused_cpp")

    def forward_backward():
        z, state = hh_sequence(current, s0, p, DT_S, path="fused_cpp")
        (z.sum() + 1e-3 * state.V.sum()).backward()
        current.grad = None

    call = forward_backward if mode == "fwdbwd" else forward
    call()
    serve_timings(call, {"flags": " ".join(compile_flags()), "threads": threads})


def _versus(own, peer) -> str:
    """``best / peer's best | median of the per-round ratios`` (times: lower is faster)."""
    ratios = sorted(b / f for f, b in zip(own, peer))
    return f"{min(peer) / min(own):.2f}x | {ratios[len(ratios) // 2]:.2f}x"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--N", type=float, default=1e4)
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--mode", choices=("fwd", "fwdbwd"), default="fwd")
    ap.add_argument("--widths", nargs="+", default=["256", "512"],
                    help="preferred vector widths in bits (x86-64)")
    ap.add_argument("--exp", nargs="+", choices=("libmvec", "inline"),
                    default=["libmvec", "inline"])
    ap.add_argument("--exprel", nargs="+", choices=("small", "exact"), default=["small"],
                    help="exponential-Euler factors: the block-wise polynomial (the default "
                         "build) or hh_exprel everywhere ($HH_PLUGIN_EXACT_EXPREL=1)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                    help="the kernels' dtype (the peer runs float32)")
    ap.add_argument("--peer-python", default=None,
                    help="Python with brainpy (default $HH_PLUGIN_PEER_PYTHON; none: no peer)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    N = int(args.N)
    if args.serve:
        serve(N, args.T, args.mode, args.threads[0], args.dtype)
        return 0

    servers = {}
    for width, exp, exprel, threads in itertools.product(args.widths, args.exp, args.exprel,
                                                         args.threads):
        env = dict(os.environ, HH_PLUGIN_VECTOR_WIDTH=width)
        env.pop("HH_PLUGIN_INLINE_EXP", None)
        if exp == "inline":
            env["HH_PLUGIN_INLINE_EXP"] = "1"
        env["HH_PLUGIN_EXACT_EXPREL"] = "1" if exprel == "exact" else "0"
        name = (f"width {width}, {exp} exp, {exprel} exprel, "
                f"{threads} thread{'s' if threads > 1 else ''}")
        print(f"starting {name} (builds the kernel on first use)", flush=True)
        servers[name] = TimingServer([sys.executable, __file__, "--serve", "--N", str(N), "--T",
                                str(args.T), "--mode", args.mode, "--threads", str(threads),
                                "--dtype", args.dtype],
                               env)
    peer_python = args.peer_python or os.environ.get("HH_PLUGIN_PEER_PYTHON")
    peer = "brainpy.state.HH (jit, all cores)"
    if peer_python:
        try:
            servers[peer] = TimingServer([peer_python, str(HERE / "jax_peer.py"), str(N),
                                    str(args.T), args.mode])
        except RuntimeError as exc:
            print(f"no peer: {exc}", flush=True)
    times = {name: [] for name in servers}
    try:
        for _ in range(args.rounds):
            for name, server in servers.items():
                times[name].append(server.time_once())
    finally:
        for server in servers.values():
            server.close()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n{cpu_model()}; N = {N}, T = {args.T}, {args.mode}, {args.dtype}; "
          f"{args.rounds} alternating rounds; load average after: {load}")
    print("Wall: neuron-steps per wall second. CPU: per CPU second of the process (all its "
          "threads), which time spent waiting for a core does not inflate.\n")
    print("| variant | best wall neuron-steps/s | median wall | best / peer's best (wall) "
          "| median of per-round ratios (wall) | best per CPU second | per CPU s / peer's "
          "| median of per-round ratios (CPU) |")
    print("|---|---|---|---|---|---|---|---|")
    work = N * args.T
    for name, ts in times.items():
        walls, cpus = [t[0] for t in ts], [t[1] for t in ts]
        best, median = work / min(walls), work / sorted(walls)[len(walls) // 2]
        per_cpu = work / min(cpus)
        if peer in times and name != peer:
            vs = _versus(walls, [t[0] for t in times[peer]])
            vs_cpu = _versus(cpus, [t[1] for t in times[peer]])
        else:
            vs, vs_cpu = "- | -", "- | -"
        print(f"| {name} | {best:.3e} | {median:.3e} | {vs} | {per_cpu:.3e} | {vs_cpu} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
