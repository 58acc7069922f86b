"""Throughput of the torch backend's paths, with the peers in the same run, and the
fused kernel's roofline.

Neuron-steps per second (N neurons x T steps / wall seconds) for the naive step loop,
the torch.compile'd loop and the fused C++ kernel, float32 and float64, forward only and
forward + backward, and the memory autograd keeps for the backward (bytes of the tensors
saved for backward, counted with ``torch.autograd.graph.saved_tensors_hooks``; the
naive and compiled rows include every intermediate of every step). Peers, where
installed: Brian2 C++ standalone of the plugin's own ``neuron_group`` (float64, the same
dt and steps, Brian2's own simulation timer) and ``brainpy.state.HH`` jitted over the
time loop, forward and ``jax.grad`` of it (:mod:`jax_peer`, in its own process: this
Python, or ``--peer-python``/``$HH_PLUGIN_PEER_PYTHON`` for an environment with brainpy).
Timings are the best of ``--repeats`` runs after a warm-up (compilation is not timed). On a
shared machine the load changes between rows, so the fused float32 kernel and the brainpy
peer are also timed alternately, round by round, forward and forward+backward (last table:
best of each, and the median and lowest of the per-round ratios).

The roofline table (:mod:`hh_plugin.torch.fused.roofline`): per model and dtype, the
operations of one step counted in the generated code, their costs measured on this CPU,
the resulting limit per core, and the fused forward on one thread against it (cycles per
neuron-step at the measured clock, fraction of the limit). This is a benchmark, not a test.

    python benchmarks/throughput.py            # N = 1e3, 1e4, 1e5, T = 1000
    python benchmarks/throughput.py --quick    # N = 1e3, 1e4, T = 200, fewer repeats
"""

from __future__ import annotations

import argparse
import os
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
from timing import TimingServer, best_of, cpu_model  # noqa: E402  (benchmarks/timing.py)

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
    ap.add_argument("--no-roofline", action="store_true",
                    help="skip the roofline table (operation counts and costs per model)")
    ap.add_argument("--max-naive-backward", type=float, default=2e7,
                    help="skip naive/compiled fwd+bwd above this many neuron-steps (memory)")
    ap.add_argument("--checkpoint", default="sqrt", help="fused backward checkpoint interval")
    ap.add_argument("--peer-python", default=None,
                    help="Python with brainpy for the reference-model peer (default: "
                         "$HH_PLUGIN_PEER_PYTHON, else this Python)")
    ap.add_argument("--interleaved-rounds", type=int, default=None,
                    help="rounds of the alternating fused/brainpy forward comparison "
                         "(default: 2x repeats; 0 skips it)")
    return ap.parse_args(argv)


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


class PeerUnavailable(RuntimeError):
    """The JAX peer could not start (brainpy not installed in its Python, or it failed)."""


class JaxPeer:
    """``brainpy.state.HH`` jitted, in its own process (``benchmarks/jax_peer.py``, run by
    ``python``): :meth:`time_once` times one call there (wall seconds), so that its rounds
    can alternate with the plugin's in this process."""

    def __init__(self, python: str, N: int, T: int, mode: str):
        script = Path(__file__).resolve().with_name("jax_peer.py")
        try:
            self._server = TimingServer([python, str(script), str(N), str(T), mode])
        except (OSError, RuntimeError) as exc:
            raise PeerUnavailable(f"{python}: {exc}"[:160]) from exc
        self.versions = self._server.info

    def time_once(self) -> float:
        return self._server.time_once()[0]

    def close(self) -> None:
        self._server.close()


def peer_python(args) -> str:
    return args.peer_python or os.environ.get("HH_PLUGIN_PEER_PYTHON") or sys.executable


def brainpy_row(args, N, T, repeats):
    """The reference model's forward and forward+backward, best of ``repeats``."""
    row = {"path": "brainpy.state.HH (jit)", "N": N, "T": T, "dtype": "float32", "fwd": None}
    for mode, key in (("fwd", "fwd"), ("fwdbwd", "fwdbwd")):
        try:
            peer = JaxPeer(peer_python(args), N, T, mode)
        except PeerUnavailable as exc:
            row["note"] = f"not available: {exc}"
            return row
        try:
            row[key] = N * T / min(peer.time_once() for _ in range(repeats))
            row["note"] = "jax " + peer.versions["jax"] + ", brainpy " + peer.versions["brainpy"]
        finally:
            peer.close()
    return row


def fused_callable(N, T, backward=False):
    """One fused float32 run (forward, or forward and backward of the same loss as the
    peer's: all spikes plus 1e-3 times the final V)."""
    p = as_parameters(HHSpec()).to(dtype=torch.float32)
    I = torch.full((T, N), 10.0, dtype=torch.float32, requires_grad=backward)
    s0 = initial_state(p, (N,), V=-65.0, dtype=torch.float32)

    def forward():
        with torch.no_grad():
            hh_sequence(I, s0, p, DT_MS * 1e-3, path="fused_cpp")

    def forward_backward():
        z, state = hh_sequence(I, s0, p, DT_MS * 1e-3, path="fused_cpp")
        (z.sum() + 1e-3 * state.V.sum()).backward()
        I.grad = None

    return forward_backward if backward else forward


def interleaved(args, N, T, rounds, mode="fwd"):
    """Fused float32 and brainpy (``mode`` fwd or fwdbwd), timed alternately (same
    minutes, same load): best of each and the median of the per-round ratios. ``None``
    without the peer."""
    try:
        peer = JaxPeer(peer_python(args), N, T, mode)
    except PeerUnavailable as exc:
        print(f"   interleaved comparison skipped: {exc}", flush=True)
        return None
    fused = fused_callable(N, T, backward=mode == "fwdbwd")
    fused()
    times = {"fused": [], "brainpy": []}
    try:
        for _ in range(rounds):
            t0 = time.perf_counter()
            fused()
            times["fused"].append(time.perf_counter() - t0)
            times["brainpy"].append(peer.time_once())
    finally:
        peer.close()
    ratios = sorted(b / f for f, b in zip(times["fused"], times["brainpy"]))
    row = {"N": N, "T": T, "mode": mode, "fused": N * T / min(times["fused"]),
           "brainpy": N * T / min(times["brainpy"]),
           "median_ratio": ratios[len(ratios) // 2], "min_ratio": ratios[0],
           "load": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    row["best_ratio"] = row["fused"] / row["brainpy"]
    print("  ", row, flush=True)
    return row


def roofline_rows(args, N, T, repeats):
    """Per model and dtype: the operations of a step, the limit per core from the measured
    operation costs (:mod:`hh_plugin.torch.fused.roofline`), and the fused forward on one
    thread against it (cycles per neuron-step at the measured clock)."""
    from family_throughput import MODELS

    from hh_plugin.torch.fused import roofline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        hz = roofline.clock_hz(iterations=2_000_000, rounds=10)
        # every cost measured before any kernel runs (the float64 exprel loop once timed
        # twice as slow after the float32 kernels had run, in this process only)
        costs = {dtype: roofline.measure_throughputs(dtype) for dtype in args.dtypes}
        for dtype in args.dtypes:
            seconds = costs[dtype]
            for model, (low, high) in MODELS:
                counts = roofline.operation_counts(model, dtype=dtype)
                limit = roofline.limit(counts, seconds)
                p = as_parameters(HHSpec(model=model)).to(dtype=getattr(torch, dtype))
                I = torch.full((T, N), (low + high) / 2, dtype=getattr(torch, dtype))
                s0 = initial_state(p, (N,), V=-65.0, dtype=getattr(torch, dtype))
                with torch.no_grad():
                    t = best_of(lambda: hh_sequence(I, s0, p, DT_MS * 1e-3,
                                                    path="fused_cpp"), repeats)
                achieved = N * T / t
                row = {"model": model.name, "dtype": dtype, "counts": counts,
                       "limit": limit, "achieved": achieved, "fraction": achieved / limit,
                       "cycles": hz / achieved if hz else None,
                       "cycles_limit": hz / limit if hz else None,
                       "op_cycles": {k: v * hz for k, v in seconds.items()} if hz else None}
                rows.append(row)
                print("  ", row, flush=True)
    finally:
        torch.set_num_threads(threads)
    return rows, hz


def print_roofline(rows, hz):
    print()
    print(f"Roofline of the fused forward step, one core (clock measured: "
          f"{'-' if not hz else f'{hz / 1e9:.2f} GHz'}; operation costs measured in "
          f"vectorised loops with the kernel's flags and math):")
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        ops = next(r["op_cycles"] for r in rows if r["dtype"] == dtype)
        if ops:
            print(f"  {dtype}: cycles per element: " +
                  ", ".join(f"{k} {v:.3f}" for k, v in ops.items()))
    print("| model | dtype | exp | expm1 | exprel | exprel (polynomial) | div | fma "
          "| limit neuron-steps/s/core | achieved (1 thread) | cycles/neuron-step achieved "
          "| at the limit | fraction of the limit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["counts"]
        print(f"| {r['model']} | {r['dtype']} | {c['exp']} | {c['expm1']} | {c['exprel']} | "
              f"{c['exprel_small']} | {c['div']} | {c['fma']} | {r['limit']:.2e} | "
              f"{r['achieved']:.2e} | "
              f"{fmt(r['cycles'], '.1f')} | {fmt(r['cycles_limit'], '.1f')} | "
              f"{r['fraction']:.0%} |")


def fmt(x, spec=".2e"):
    return "-" if x is None else format(x, spec)


def machine():
    model = cpu_model()
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
    roof = None
    if not args.no_roofline:
        print("roofline (one thread)", flush=True)
        roof = roofline_rows(args, 10_000 if not args.quick else 2_000, T, repeats)
    for N in sizes:
        for name in args.dtypes:
            print(f"N={N} {name}", flush=True)
            rows += torch_rows(args, N, T, getattr(torch, name), repeats)
        if not args.no_peers:
            rows.append(brian2_row(N, T, torch.get_num_threads()))
            rows.append(brainpy_row(args, N, T, repeats))
            print("  ", rows[-2], "\n  ", rows[-1], flush=True)
            n_rounds = 2 * repeats if args.interleaved_rounds is None else args.interleaved_rounds
            if n_rounds > 0 and "fused_cpp" in args.paths:
                for mode in ("fwd", "fwdbwd"):
                    pair = interleaved(args, N, T, n_rounds, mode)
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
    if roof is not None:
        print_roofline(*roof)
    if pairs:
        print()
        print("Fused float32 against brainpy.state.HH (jit), timed alternately "
              "(fwd+bwd: jax.grad of the jitted loop):")
        print("| N | T | pass | fused neuron-steps/s | brainpy neuron-steps/s | best / best "
              "| median of per-round ratios | lowest round | load average during |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in pairs:
            print(f"| {r['N']:.0e} | {r['T']} | {r['mode']} | {r['fused']:.2e} | "
                  f"{r['brainpy']:.2e} | "
                  f"{r['best_ratio']:.2f}x | {r['median_ratio']:.2f}x | {r['min_ratio']:.2f}x | "
                  f"{r['load']} |")
    return rows


if __name__ == "__main__":
    main()
