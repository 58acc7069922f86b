"""COBAHH (Brian2's ``examples/COBAHH.py``, 4,000 Traub-Miles neurons) for 1 s of biological
time at dt = 0.1 ms, in one run:

- the torch network (:class:`hh_plugin.torch.network.NetworkModule`, the fused C++ path on
  the CPU, float32 and float64), timed as ``module(steps=10000)`` under ``torch.no_grad()``
  (the whole call: preparing the synapse lists, the kernel, the spike raster as output);
- the plugin's Brian2 network (:func:`hh_plugin.brian2.network.build_network`, with a
  ``SpikeMonitor``) in C++ standalone;
- Brian2's own example in C++ standalone (``tests/cobahh_example.py``, written as the
  example writes it, with its ``StateMonitor`` of three neurons);

- NEURON (:mod:`hh_plugin.neuron`, its default fixed step at dt = 0.1 ms, one process, one
  thread; another integrator, so another spike count);

each with 1 and 2 threads (torch: ``torch.set_num_threads``, OpenMP inside the kernel;
Brian2: no OpenMP as the example runs by default, and ``openmp_threads = 2``). All rows
simulate the same network: the example's connectivity and initial values, drawn once by
the example in Brian2's numpy runtime target, are given to every row, so every row
produces the same ~150,000 spikes (checked and printed). Brian2's time is the
simulation loop as timed inside the binary (``device._last_run_time``, start-up and
result files excluded); "binary" also shows the whole binary's run. Best of
``--repeats`` runs after a warm-up (compilation excluded, reported separately).

Real-time factor: simulated time / wall time (above 1: faster than real time).

    python benchmarks/cobahh.py                  # 1 s, best of 3: about 3 min on 2 cores
    python benchmarks/cobahh.py --quick          # 100 ms, best of 1
    python benchmarks/cobahh.py --markdown table.md
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the hand-written example

from timing import best_of, cpu_model  # noqa: E402  (benchmarks/timing.py)

N = 4000
DT = 0.1


def example_draws(seed: int):
    """The example's connectivity and initial values (numpy runtime target, nothing run)."""
    import brian2
    from brian2 import Network, ms, mV, nS

    from cobahh_example import cobahh_example

    old = brian2.prefs.codegen.target
    brian2.prefs.codegen.target = "numpy"
    try:
        brian2.start_scope()
        brian2.seed(seed)
        brian2.defaultclock.dt = DT * ms
        P, Ce, Ci = cobahh_example()
        connectivity = ((Ce.i[:].copy(), Ce.j[:].copy()), (Ci.i[:].copy(), Ci.j[:].copy()))
        initial = {"v": P.v[:] / mV, "ge": P.ge[:] / nS, "gi": P.gi[:] / nS}
        Network(P, Ce, Ci)  # used (no warning about unused objects)
        brian2.start_scope()
    finally:
        brian2.prefs.codegen.target = old
    return connectivity, initial


def bench_torch(spec, steps, dtype, threads, repeats):
    from hh_plugin.torch.network import NetworkModule

    torch.set_num_threads(threads)
    module = NetworkModule(spec, dtype=dtype)
    result = {}

    def call():
        with torch.no_grad():
            result["spikes"] = module(steps=steps, path="fused").spikes["P"]

    t0 = time.perf_counter()
    call()  # builds (or loads) the kernel
    first = time.perf_counter() - t0
    best = best_of(call, repeats)
    return {"run_s": best, "first_call_s": first, "spikes": int(result["spikes"].sum())}


def bench_brian2(kind, spec, connectivity, initial, steps, threads, directory, repeats):
    import brian2
    from brian2 import Network, SpikeMonitor, StateMonitor, ms

    from hh_plugin.brian2 import use_device
    from hh_plugin.brian2.network import build_network

    brian2.start_scope()
    with use_device("cpp_standalone", directory=str(directory),
                    threads=threads if threads > 1 else 0, build_on_run=False) as session:
        brian2.defaultclock.dt = DT * ms
        if kind == "example":
            from cobahh_example import cobahh_example

            P, Ce, Ci = cobahh_example(connectivity, initial)
            trace = StateMonitor(P, "v", record=[1, 10, 100])  # as the example
            spikes = SpikeMonitor(P, record=False)  # a counter only, for the check
            Network(P, Ce, Ci, trace, spikes).run(steps * DT * ms)
            count = lambda: int(spikes.num_spikes)  # noqa: E731
        else:
            net = build_network(spec, steps, record=())
            net.run()
            count = lambda: len(net.spike_monitors["P"].i)  # noqa: E731
        timings = session.build(with_output=False)
        best, binary = timings["simulation"], timings["run_binary"]
        for _ in range(repeats):  # the first run warms the file cache
            t = session.run(with_output=False)
            best, binary = min(best, t["simulation"]), min(binary, t["run_binary"])
        spikes = count()
    brian2.start_scope()
    return {"run_s": best, "binary_s": binary, "compile_s": timings["make"], "spikes": spikes}


def bench_neuron(spec, steps, repeats):
    """NEURON (:mod:`hh_plugin.neuron`), one process and one thread, NEURON's default fixed
    step (backward Euler) at the network's dt: the whole ``run_network`` call (cells,
    connections and inputs built, then the run), best of ``repeats`` after a first call
    that also compiles (or loads) the mechanisms. Several threads are refused for COBAHH's
    one-step delay with the fixed step (docs/neuron.md), so only one thread is timed. A
    different integrator: its spike count differs from the other rows (the network is
    chaotic; docs/neuron.md says what agreement means here)."""
    from hh_plugin.neuron.integration import Integration
    from hh_plugin.neuron.network import run_network

    integration = Integration.fixed(order=0)
    best = None
    for _ in range(1 + repeats):  # the first call also compiles (or loads) the mechanisms
        run = run_network(spec, steps, integration=integration, threads=1)
        if best is None or run.seconds["simulate"] < best["simulate"]:
            best = dict(run.seconds)
        spikes = sum(len(t) for t, _ in run.spikes.values())
    return {"run_s": best["simulate"], "build_s": best["build"], "spikes": spikes}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 ms, best of 1")
    p.add_argument("--duration", type=float, default=None, help="ms (default 1000)")
    p.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --quick)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seed", type=int, default=2007, help="Brian2 seed of the example's draws")
    p.add_argument("--directory", default=None, help="where standalone projects go "
                   "(default: a temporary directory, removed afterwards)")
    p.add_argument("--markdown", default=None, help="write the table to this file")
    p.add_argument("--no-neuron", action="store_true", help="leave out the NEURON row")
    args = p.parse_args(argv)
    duration = args.duration or (100.0 if args.quick else 1000.0)
    repeats = args.repeats or (1 if args.quick else 3)
    steps = int(round(duration / DT))

    import brian2

    brian2.BrianLogger.log_level_error()
    from hh_plugin.network.cobahh import cobahh_network

    connectivity, initial = example_draws(args.seed)
    spec = cobahh_network(*connectivity, V=initial["v"], g_e=initial["ge"] * 1e-6,
                          g_i=initial["gi"] * 1e-6)
    n_syn = sum(c.size for c in spec.connections.values())
    try:
        load = "load average %.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        load = ""
    machine = (f"{cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, "
               f"Brian2 {brian2.__version__}; {load} at start")
    print(f"# COBAHH: {N} neurons, {n_syn} synapses, {duration:g} ms at dt = {DT} ms "
          f"({steps} steps); {machine}", flush=True)
    workdir = Path(args.directory or tempfile.mkdtemp(prefix="hh_cobahh_bench_"))
    rows = []
    try:
        for threads in args.threads:
            for name, kind in (("Brian2 example, C++ standalone", "example"),
                               ("plugin Brian2 network, C++ standalone", "plugin")):
                r = bench_brian2(kind, spec, connectivity, initial, steps, threads,
                                 workdir / f"{kind}_{threads}", repeats)
                rows.append({"name": name, "threads": threads, **r})
                print(format_row(rows[-1], steps, duration), flush=True)
            for dtype in (torch.float32, torch.float64):
                r = bench_torch(spec, steps, dtype, threads, repeats)
                rows.append({"name": f"torch fused, {str(dtype).split('.')[-1]}",
                             "threads": threads, **r})
                print(format_row(rows[-1], steps, duration), flush=True)
        if not args.no_neuron and 1 in args.threads:
            if importlib.util.find_spec("neuron") is None:
                print("NEURON is not installed: no NEURON row (pip install 'hh_plugin[neuron]')")
            else:
                r = bench_neuron(spec, steps, repeats)
                rows.append({"name": "NEURON, fixed step (backward Euler)", "threads": 1, **r})
                print(format_row(rows[-1], steps, duration), flush=True)
    finally:
        if args.directory is None:
            shutil.rmtree(workdir, ignore_errors=True)
    reference = {r["threads"]: r["run_s"] for r in rows if r["name"].startswith("Brian2 ex")}
    for r in rows:
        r["ratio"] = reference[r["threads"]] / r["run_s"]
    counts = {r["name"] + f" ({r['threads']})": r["spikes"] for r in rows}
    try:
        load = "%.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        load = "?"
    table = format_table(rows, steps, duration, machine, load)
    print()
    print(table)
    float64 = {r["spikes"] for r in rows if not r["name"].endswith("float32")
               and not r["name"].startswith("NEURON")}
    print("\nspike counts:", counts)
    print("float64 rows and Brian2 rows give the same spike count" if len(float64) == 1 else
          "WARNING: the float64 and Brian2 spike counts differ")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return rows


def format_row(r, steps, duration):
    if "binary_s" in r:
        extra = f", binary {r['binary_s']:.2f} s, compile {r['compile_s']:.1f} s"
    elif "build_s" in r:
        extra = f", building the cells and connections {r['build_s']:.2f} s"
    else:
        extra = f", first call {r['first_call_s']:.2f} s"
    return (f"{r['name']:<40} {r['threads']} thread(s): {r['run_s']:.3f} s "
            f"({N * steps / r['run_s']:.3g} neuron-steps/s, {duration / 1e3 / r['run_s']:.2f}x "
            f"real time{extra}), {r['spikes']} spikes")


def format_table(rows, steps, duration, machine, load_end):
    lines = [f"COBAHH, {N} neurons, {duration:g} ms at dt = {DT} ms ({steps} steps); "
             f"{machine}, {load_end} at the end.", "",
             "| implementation | threads | run (s) | neuron-steps/s | real-time factor "
             "| vs Brian2 example (same threads) | spikes |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['threads']} | {r['run_s']:.3f} "
                     f"| {N * steps / r['run_s']:.3g} | {duration / 1e3 / r['run_s']:.2f} "
                     f"| {r['ratio']:.2f}x | {r['spikes']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
