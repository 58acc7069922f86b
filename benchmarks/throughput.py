"""Throughput of the torch backend's paths, with the peers in the same run.

Neuron-steps per second (N neurons x T steps / wall seconds) for the naive step loop,
the torch.compile'd loop and the fused C++ kernel, float32 and float64, forward only and
forward + backward, and the memory autograd keeps for the backward (bytes of the tensors
saved for backward, counted with ``torch.autograd.graph.saved_tensors_hooks``; the
naive and compiled rows include every intermediate of every step). Peers, where
installed: Brian2 C++ standalone of the plugin's own ``neuron_group`` (float64, the same
dt and steps, Brian2's own simulation timer) and ``brainpy.state.HH`` jitted over the
time loop. Timings are the best of ``--repeats`` runs after a warm-up (compilation is not
timed). On a shared machine the load changes between rows, so the fused float32 forward
and the brainpy peer are also timed alternately, round by round (last table: best of
each, and the median and lowest of the per-round ratios). This is a benchmark, not a test.

    python benchmarks/throughput.py            # N = 1e3, 1e4, 1e5, T = 1000
    python benchmarks/throughput.py --quick    # N = 1e3, 1e4, T = 200, fewer repeats
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.torch.functional.parameters import as_parameters, initial_state  # noqa: E402
from hh_plugin.torch.fused import hh_sequence  # noqa: E402

DT_MS = 0.01


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 1e3, 1e4; T = 200; 1 repeat")
    ap.add_argument("--sizes", type=float, nargs="+", default=None, help="neuron counts")
    ap.add_argument("--steps", type=int, default=None, help="time steps T (default 1000)")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--paths", nargs="+", default=["naive", "compiled", "fused_cpp"])
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--max-naive-backward", type=float, default=2e7,
                    help="skip naive/compiled fwd+bwd above this many neuron-steps (memory)")
    ap.add_argument("--checkpoint", default="sqrt", help="fused backward checkpoint interval")
    ap.add_argument("--interleaved-rounds", type=int, default=None,
                    help="rounds of the alternating fused/brainpy forward comparison "
                         "(default: 2x repeats; 0 skips it)")
    return ap.parse_args(argv)


def best_of(fn, repeats):
    fn()  # warm-up (and compilation)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def saved_bytes(fn):
    """Bytes of the distinct tensors autograd saves for backward while ``fn`` runs."""
    seen = {}

    def pack(t):
        try:
            key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            seen[key] = t.untyped_storage().nbytes()
        except Exception:  # noqa: BLE001
            seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def torch_rows(args, N, T, dtype, repeats):
    p = as_parameters(HHSpec()).to(dtype=dtype)
    g = torch.Generator().manual_seed(0)
    I = 5.0 + 15.0 * torch.rand(T, N, generator=g, dtype=dtype)
    s0 = initial_state(p, (N,), V=-65.0, dtype=dtype)
    rows = []
    for path in args.paths:
        kw = {"checkpoint": None if args.checkpoint == "sqrt" else int(args.checkpoint)} \
            if path == "fused_cpp" else {}
        row = {"path": path, "N": N, "T": T, "dtype": str(dtype).replace("torch.", "")}
        try:
            with torch.no_grad():
                t = best_of(lambda: hh_sequence(I, s0, p, DT_MS * 1e-3, path=path, **kw), repeats)
            row["fwd"] = N * T / t
        except Exception as exc:  # noqa: BLE001
            row["fwd"] = None
            row["note"] = f"fwd failed: {exc.__class__.__name__}: {exc}"[:120]
        if path != "fused_cpp" and N * T > args.max_naive_backward:
            row["fwdbwd"] = None
            row["note"] = row.get("note", "") + " fwd+bwd skipped (memory: --max-naive-backward)"
        else:
            Ig = I.clone().requires_grad_(True)

            def train():
                z, st = hh_sequence(Ig, s0, p, DT_MS * 1e-3, path=path, **kw)
                (z.sum() + 1e-3 * st.V.sum()).backward()
                Ig.grad = None

            try:
                t = best_of(train, repeats)
                row["fwdbwd"] = N * T / t
                nbytes, _ = saved_bytes(lambda: hh_sequence(Ig, s0, p, DT_MS * 1e-3, path=path, **kw))
                row["saved_MB"] = nbytes / 2**20
            except Exception as exc:  # noqa: BLE001
                row["fwdbwd"] = None
                row["note"] = f"fwd+bwd failed: {exc.__class__.__name__}: {exc}"[:120]
        rows.append(row)
        print("  ", row, flush=True)
    return rows


def brian2_row(N, T, threads):
    try:
        import brian2
        from brian2 import ms, run, uA, defaultclock

        from hh_plugin.brian2 import neuron_group, use_device
    except Exception as exc:  # noqa: BLE001
        return {"path": "brian2_cpp_standalone", "N": N, "T": T, "dtype": "float64",
                "fwd": None, "note": f"not installed/unavailable ({exc.__class__.__name__}: {exc})"[:120]}
    try:
        with tempfile.TemporaryDirectory() as d:
            with use_device("cpp_standalone", directory=d, threads=threads,
                            build_on_run=False) as session:
                defaultclock.dt = DT_MS * ms
                group = neuron_group(N, HHSpec(), current=10 * uA, seed=0)  # noqa: F841
                run(T * DT_MS * ms)  # (Brian2 finds the group through its frame)
                timings = session.build()
        sim = timings.get("simulation")
        return {"path": "brian2_cpp_standalone", "N": N, "T": T, "dtype": "float64",
                "fwd": N * T / sim if sim else None,
                "note": f"{threads} OpenMP threads; make {timings.get('make') or 0:.1f} s (not timed)"}
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        return {"path": "brian2_cpp_standalone", "N": N, "T": T, "dtype": "float64",
                "fwd": None, "note": f"unavailable ({exc.__class__.__name__}: {exc})"[:120]}


def brainpy_callable(N, T):
    """``(call, None)``: one jitted run of brainpy.state.HH over T steps; or ``(None, why)``."""
    try:
        import brainpy  # noqa: F401
        import brainstate
        import brainunit as u
        import jax
        from brainpy.state import HH as BHH
    except Exception as exc:  # noqa: BLE001
        return None, f"not installed ({exc.__class__.__name__})"
    try:
        brainstate.environ.set(dt=DT_MS * u.ms)
        neu = BHH(N)
        brainstate.nn.init_all_states(neu)
        I = jax.numpy.full((T, N), 10.0, dtype=jax.numpy.float32) * u.uA

        @brainstate.transform.jit
        def sim(I):
            return brainstate.transform.for_loop(lambda x: neu.update(x), I)

        def call():
            jax.block_until_ready(sim(I))

        call()  # compile
        return call, None
    except Exception as exc:  # noqa: BLE001
        return None, f"failed ({exc.__class__.__name__}: {exc})"[:120]


def brainpy_row(N, T, repeats):
    row = {"path": "brainpy.state.HH (jit)", "N": N, "T": T, "dtype": "float32", "fwd": None}
    call, why = brainpy_callable(N, T)
    if call is None:
        row["note"] = why
        return row
    row["fwd"] = N * T / best_of(call, repeats)
    return row


def fused_forward_callable(N, T):
    p = as_parameters(HHSpec()).to(dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    I = 5.0 + 15.0 * torch.rand(T, N, generator=g, dtype=torch.float32)
    s0 = initial_state(p, (N,), V=-65.0, dtype=torch.float32)

    def call():
        with torch.no_grad():
            hh_sequence(I, s0, p, DT_MS * 1e-3, path="fused_cpp")

    return call


def interleaved(N, T, rounds):
    """Fused float32 forward and brainpy, timed alternately (same minutes, same load):
    best of each and the median of the per-round ratios. ``None`` without brainpy."""
    peer, why = brainpy_callable(N, T)
    if peer is None:
        print(f"   interleaved comparison skipped: brainpy {why}", flush=True)
        return None
    fused = fused_forward_callable(N, T)
    fused()
    times = {"fused": [], "brainpy": []}
    for _ in range(rounds):
        for name, fn in (("fused", fused), ("brainpy", peer)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ratios = sorted(b / f for f, b in zip(times["fused"], times["brainpy"]))
    row = {"N": N, "T": T, "fused": N * T / min(times["fused"]),
           "brainpy": N * T / min(times["brainpy"]),
           "median_ratio": ratios[len(ratios) // 2], "min_ratio": ratios[0],
           "load": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    row["best_ratio"] = row["fused"] / row["brainpy"]
    print("  ", row, flush=True)
    return row


def fmt(x):
    return "-" if x is None else f"{x:.2e}"


def machine():
    model = platform.processor()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("CPU family"):
                model += f" (family {line.split(':', 1)[1].strip()})"
    except OSError:
        pass
    return (f"{model}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main(argv=None):
    args = parse_args(argv)
    try:  # one compiled graph per (N, dtype): more than dynamo's default 8 recompiles
        import torch._dynamo
        torch._dynamo.config.recompile_limit = 64
    except (ImportError, AttributeError):
        pass
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in (args.sizes or ([1e3, 1e4] if args.quick else [1e3, 1e4, 1e5]))]
    T = args.steps or (200 if args.quick else 1000)
    repeats = args.repeats or (1 if args.quick else 3)
    print(f"machine: {machine()}; T = {T}, dt = {DT_MS} ms", flush=True)
    rows, pairs = [], []
    for N in sizes:
        for name in args.dtypes:
            print(f"N={N} {name}", flush=True)
            rows += torch_rows(args, N, T, getattr(torch, name), repeats)
        if not args.no_peers:
            rows.append(brian2_row(N, T, torch.get_num_threads()))
            rows.append(brainpy_row(N, T, repeats))
            print("  ", rows[-2], "\n  ", rows[-1], flush=True)
            n_rounds = 2 * repeats if args.interleaved_rounds is None else args.interleaved_rounds
            if n_rounds > 0 and "fused_cpp" in args.paths:
                pair = interleaved(N, T, n_rounds)
                if pair is not None:
                    pairs.append(pair)
    # ratios: fused forward against the peers at the same N (fused float32 row)
    print()
    print("| N | dtype | path | fwd neuron-steps/s | fwd+bwd neuron-steps/s | saved for bwd (MB) "
          "| fused fwd / this | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        fused = next((x for x in rows if x["N"] == r["N"] and x["path"] == "fused_cpp"
                      and x["dtype"] == ("float32" if r["path"].startswith(("brian2", "brainpy"))
                                         else r["dtype"])), None)
        ratio = (fused["fwd"] / r["fwd"]) if fused and fused.get("fwd") and r.get("fwd") else None
        saved = r.get("saved_MB")
        print(f"| {r['N']:.0e} | {r['dtype']} | {r['path']} | {fmt(r.get('fwd'))} | "
              f"{fmt(r.get('fwdbwd'))} | {'-' if saved is None else f'{saved:.1f}'} | "
              f"{'-' if ratio is None else f'{ratio:.1f}x'} | {r.get('note', '')} |")
    if pairs:
        print()
        print("Fused float32 forward against brainpy.state.HH (jit), timed alternately:")
        print("| N | T | fused fwd neuron-steps/s | brainpy fwd neuron-steps/s | best / best "
              "| median of per-round ratios | lowest round | load average during |")
        print("|---|---|---|---|---|---|---|---|")
        for r in pairs:
            print(f"| {r['N']:.0e} | {r['T']} | {r['fused']:.2e} | {r['brainpy']:.2e} | "
                  f"{r['best_ratio']:.2f}x | {r['median_ratio']:.2f}x | {r['min_ratio']:.2f}x | "
                  f"{r['load']} |")
    return rows


if __name__ == "__main__":
    main()
