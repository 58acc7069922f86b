r"""COBAHH scaled up: 4,000 to 400,000 neurons with a fixed in-degree, torch against
Brian2 C++ standalone in the same run.

Brian2's ``examples/COBAHH.py`` (:func:`hh_plugin.network.cobahh_network`: Traub-Miles
neurons, exponential conductance synapses, ``refractory=3*ms``, dt = 0.1 ms) at
:math:`N` neurons, 80% excitatory, each neuron receiving exactly 80 synapses: 64 from
distinct excitatory and 16 from distinct inhibitory sources drawn uniformly (the
original's :math:`p = 0.02` of 3,200 and 800), so that the activity stays that of the
original as :math:`N` grows. One network per size (seed 0), run for ``--duration`` ms
(1 s) by

* the torch network module's fused path, float32 and float64 (:class:`NetworkModule`,
  ``path='fused'``), and
* Brian2 C++ standalone of the same specification (:func:`hh_plugin.brian2.network.build_network`),

each in its own process, so that its peak resident memory (``wait4``'s ``ru_maxrss``,
children included) is its own. Printed per size and backend: wall time of the simulation
(Brian2: its own simulation timer; torch: the module call, kernel built beforehand), its
CPU time (torch: the process's during the call; Brian2: the binary's second run, start-up
and result files included; on a busy machine the CPU time is the fairer measure, since
time spent waiting for a core is not in it),
real-time factor (wall / simulated time), spikes, synaptic events (each spike times its
source's out-degree), time per synaptic event (the whole wall time divided by the events:
neuron updates included), peak memory and memory per synapse (the slope of peak memory
between the smallest and each larger size, less torch's dense spike raster of one call:
torch runs ``--chunk`` steps per call, passing the state on). A log-log plot of wall time against
:math:`N` goes to ``--plot``. This is a benchmark, not a test.

    python benchmarks/cobahh_scaling.py                          # 4e3, 4e4, 4e5; 1 s
    python benchmarks/cobahh_scaling.py --sizes 4000 40000 --duration 200
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from timing import cpu_model  # noqa: E402

IN_EXC, IN_INH = 64, 16


def fixed_in_degree(n_src: int, n: int, k: int, rng) -> tuple:
    """``(source, target)``: every one of the ``n`` targets gets ``k`` distinct sources
    drawn uniformly from ``n_src`` (a row with a repeated source is drawn again without
    replacement)."""
    if k > n_src:
        raise ValueError(f"in-degree {k} exceeds the {n_src} possible sources")
    sources = rng.integers(0, n_src, size=(n, k))
    ordered = np.sort(sources, axis=1)
    for row in np.nonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))[0]:
        sources[row] = rng.choice(n_src, size=k, replace=False)
    targets = np.repeat(np.arange(n), k)
    return sources.ravel(), targets


def scaled_cobahh(n: int, seed: int = 0):
    """The COBAHH specification at ``n`` neurons with in-degree 64 + 16."""
    from hh_plugin.network import cobahh_network

    n_exc = n * 4 // 5
    n_inh = n - n_exc
    rng = np.random.default_rng(seed)
    exc = fixed_in_degree(n_exc, n, IN_EXC, rng)
    inh = fixed_in_degree(n_inh, n, IN_INH, rng)
    return cobahh_network(exc, inh, n_exc=n_exc, n_inh=n_inh, seed=seed), exc, inh


def out_degrees(n: int, exc, inh) -> np.ndarray:
    n_exc = n * 4 // 5
    degree = np.bincount(exc[0], minlength=n_exc)
    return np.concatenate([degree, np.bincount(inh[0], minlength=n - n_exc)])


def run_one(backend: str, n: int, duration: float, threads: int, directory: str,
            chunk: int = 1000) -> dict:
    """One backend at one size, in this process: its measurements as a dict."""
    spec, exc, inh = scaled_cobahh(n)
    steps = int(round(duration / spec.dt))
    degree = out_degrees(n, exc, inh)
    synapses = len(exc[0]) + len(inh[0])
    if backend.startswith("torch"):
        import torch

        from hh_plugin.torch.network import NetworkModule

        torch.set_num_threads(threads)
        dtype = torch.float32 if backend == "torch_float32" else torch.float64
        module = NetworkModule(spec, dtype=dtype)
        per_neuron = np.zeros(n)
        with torch.no_grad():
            module(steps=10, path="fused")  # builds or loads the kernel
            t0, c0 = time.perf_counter(), time.process_time()
            state = None
            for start in range(0, steps, chunk):  # the raster is dense: (steps, N) per call
                out = module(steps=min(chunk, steps - start), state=state, path="fused")
                state = out.state
                per_neuron += out.spikes["P"].sum(0).to(torch.float64).numpy()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        raster_bytes = n * chunk * out.spikes["P"].element_size()
    elif backend == "brian2_cpp_standalone":
        import brian2
        from brian2 import ms

        from hh_plugin.brian2 import use_device
        from hh_plugin.brian2.network import build_network

        with use_device("cpp_standalone", directory=directory,
                        threads=threads if threads > 1 else 0, build_on_run=False) as session:
            brian2.defaultclock.dt = spec.dt * ms
            net = build_network(spec, steps, record=())
            net.run()
            session.build(with_output=False)  # compiles and runs once
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            timings = session.run(with_output=False)  # the binary again, its CPU time measured
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall = timings["simulation"]
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            indices = np.asarray(net.spike_monitors["P"].i[:])
        per_neuron = np.bincount(indices, minlength=n).astype(float)
        raster_bytes = 0
    else:
        raise ValueError(f"unknown backend {backend!r}")
    spikes_total = int(per_neuron.sum())
    events = float((per_neuron * degree).sum())
    return {"backend": backend, "N": n, "synapses": synapses, "steps": steps,
            "wall_s": wall, "cpu_s": cpu, "raster_MB": raster_bytes / 2**20, "spikes": spikes_total, "events": events,
            "rate_hz": spikes_total / n / (duration * 1e-3)}


def measure(backend: str, n: int, duration: float, threads: int, chunk: int) -> dict:
    """:func:`run_one` in a child process; adds its peak resident memory."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "result.json"
        command = [sys.executable, __file__, "--one", backend, str(n), "--duration",
                   str(duration), "--threads", str(threads), "--chunk", str(chunk),
                   "--result", str(out)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
        proc = subprocess.Popen(command, env=env, cwd=directory)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0 or not out.is_file():
            return {"backend": backend, "N": n, "failed": f"exit code {proc.returncode}"}
        row = json.loads(out.read_text())
    row["peak_MB"] = usage.ru_maxrss / 1024  # kB on Linux
    return row


def table(rows, duration) -> str:
    lines = ["| N | synapses | backend | wall (s) | CPU (s) | real-time factor | spikes "
             "| rate (Hz) | synaptic events | ns per event | peak memory (MB) "
             "| bytes per synapse | torch float32 ahead by (wall; CPU) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    smallest = {}
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['N']} | - | {r['backend']} | failed ({r['failed']}) "
                         "| - | - | - | - | - | - | - | - | - |")
            continue
        base = smallest.setdefault(r["backend"], r)
        grown = (r["peak_MB"] - r["raster_MB"]) - (base["peak_MB"] - base["raster_MB"])
        per_syn = "-" if base is r else f"{grown * 2**20 / (r['synapses'] - base['synapses']):.0f}"
        t32 = next((x for x in rows if x["N"] == r["N"] and x["backend"] == "torch_float32"
                    and "failed" not in x), None)
        ahead = f"{r['wall_s'] / t32['wall_s']:.2f}x; {r['cpu_s'] / t32['cpu_s']:.2f}x" \
            if t32 else "-"
        lines.append(
            f"| {r['N']:,} | {r['synapses']:,} | {r['backend']} | {r['wall_s']:.2f} | "
            f"{r['cpu_s']:.2f} | "
            f"{r['wall_s'] / (duration * 1e-3):.1f} | {r['spikes']:,} | {r['rate_hz']:.1f} | "
            f"{r['events']:.3g} | {r['wall_s'] / max(r['events'], 1) * 1e9:.1f} | "
            f"{r['peak_MB']:.0f} | {per_syn} | {ahead} |")
    return "\n".join(lines)


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for backend in dict.fromkeys(r["backend"] for r in rows):
        done = [r for r in rows if r["backend"] == backend and "failed" not in r]
        ax.loglog([r["N"] for r in done], [r["wall_s"] for r in done], "o-", label=backend)
    ax.set_xlabel("neurons (in-degree 80)")
    ax.set_ylabel("wall time for 1 s of activity (s)")
    ax.set_title("COBAHH scaled, " + cpu_model())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4_000, 40_000, 400_000])
    ap.add_argument("--duration", type=float, default=1000.0, help="ms (default 1000)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--chunk", type=int, default=1000,
                    help="torch: steps per module call (its spike raster is dense)")
    ap.add_argument("--backends", nargs="+",
                    default=["torch_float32", "torch_float64", "brian2_cpp_standalone"])
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "_static" / "cobahh_scaling.png")
    ap.add_argument("--one", nargs=2, metavar=("BACKEND", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        with tempfile.TemporaryDirectory() as directory:
            row = run_one(args.one[0], int(args.one[1]), args.duration, args.threads,
                          directory, args.chunk)
        args.result.write_text(json.dumps(row))
        return 0
    print(f"{cpu_model()}; {args.threads} threads per backend; {args.duration:g} ms; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows = []
    for n in args.sizes:
        for backend in args.backends:
            row = measure(backend, n, args.duration, args.threads, args.chunk)
            print("  ", row, flush=True)
            rows.append(row)
    print()
    print(table(rows, args.duration))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
