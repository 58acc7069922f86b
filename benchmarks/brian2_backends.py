"""Neuron-steps per second of the plugin's Brian2 group on Brian2's CPU back-ends.

For N = 1e3, 1e4, 1e5 Hodgkin-Huxley neurons (100 ms at dt = 0.01 ms, heterogeneous
constant input currents, exponential Euler), this runs

- the cython runtime target (compile time: a first one-step run; run time: the 100 ms run),
- C++ standalone with 1 and 2 OpenMP threads (compile time: ``make`` of a fresh project;
  run time: the simulation loop as timed inside the binary, Brian2's
  ``device._last_run_time``, best of two runs of the binary where it is short),

for the plugin's group (:func:`hh_plugin.brian2.neuron_group`) and, in the same process
and with the same parameters, inputs and initial states, for a Hodgkin-Huxley group
written by hand the way Brian2's examples write it (rates with ``exprel``, ``v`` in volt,
parameters in the namespace). It prints a table with the ratio plugin/baseline.

    python benchmarks/brian2_backends.py            # full: about 10-15 min on 2 cores
    python benchmarks/brian2_backends.py --quick    # N = 1e3, 1e4, 10 ms
    python benchmarks/brian2_backends.py --markdown table.md --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASELINE_EQUATIONS = """
dv/dt = (gl*(El - v) - g_na*(m*m*m)*h*(v - ENa) - g_kd*(n*n*n*n)*(v - EK) + I)/Cm : volt
dm/dt = alpha_m*(1 - m) - beta_m*m : 1
dh/dt = alpha_h*(1 - h) - beta_h*h : 1
dn/dt = alpha_n*(1 - n) - beta_n*n : 1
alpha_m = 0.1*(mV**-1)*10*mV/exprel(-(v + 40*mV)/(10*mV))/ms : Hz
beta_m = 4*exp(-(v + 65*mV)/(18*mV))/ms : Hz
alpha_h = 0.07*exp(-(v + 65*mV)/(20*mV))/ms : Hz
beta_h = 1/(1 + exp(-(v + 35*mV)/(10*mV)))/ms : Hz
alpha_n = 0.01*(mV**-1)*10*mV/exprel(-(v + 55*mV)/(10*mV))/ms : Hz
beta_n = 0.125*exp(-(v + 65*mV)/(80*mV))/ms : Hz
I : amp
"""


def baseline_group(N, V0, gates, current):
    """Classic HH as in Brian2's examples, with the reference model's parameters."""
    from brian2 import NeuronGroup, mV, msiemens, ufarad, uA

    namespace = {"Cm": 1 * ufarad, "gl": 0.03 * msiemens, "El": -54.387 * mV,
                 "g_na": 120 * msiemens, "ENa": 50 * mV, "g_kd": 36 * msiemens,
                 "EK": -77 * mV}
    group = NeuronGroup(N, BASELINE_EQUATIONS, threshold="v >= 20*mV",
                        refractory="v >= 20*mV", method="exponential_euler",
                        namespace=namespace)
    group.v = V0 * mV
    group.m, group.h, group.n = gates["m"], gates["h"], gates["n"]
    group.not_refractory = V0 < 20.0
    group.I = current * uA
    return group


def plugin_group(N, V0, gates, current):
    from brian2 import uA

    from hh_plugin import HHSpec
    from hh_plugin.brian2 import neuron_group

    group = neuron_group(N, HHSpec(), current=current * uA, V_init=V0)
    group.m, group.h, group.n = gates["m"], gates["h"], gates["n"]
    return group


MODELS = {"plugin": plugin_group, "baseline": baseline_group}


def inputs(N, seed=0):
    from hh_plugin import HODGKIN_HUXLEY, initial_state

    state = initial_state(HODGKIN_HUXLEY, N, seed=seed)
    current = np.random.default_rng(seed + 1).uniform(0.0, 20.0, N)
    return state["V"], state, current


def bench_runtime(model, N, duration_ms, dt_ms):
    from brian2 import Network, SpikeMonitor, defaultclock, ms, prefs, start_scope

    start_scope()
    prefs.codegen.target = "cython"
    defaultclock.dt = dt_ms * ms
    V0, gates, current = inputs(N)
    group = MODELS[model](N, V0, gates, current)
    spikes = SpikeMonitor(group, record=False)
    net = Network(group, spikes)
    start = time.perf_counter()
    net.run(dt_ms * ms)  # compiles (or loads from Brian2's cache) all code objects
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    net.run(duration_ms * ms)
    run_s = time.perf_counter() - start
    return {"compile_s": compile_s, "run_s": run_s, "spikes": int(spikes.num_spikes)}


def bench_standalone(model, N, duration_ms, dt_ms, threads, directory, repeats):
    from brian2 import SpikeMonitor, defaultclock, ms, run

    from hh_plugin.brian2 import use_device

    defaultclock.dt = dt_ms * ms
    with use_device("cpp_standalone", directory=str(directory), threads=threads,
                    build_on_run=False) as session:
        V0, gates, current = inputs(N)
        group = MODELS[model](N, V0, gates, current)
        spikes = SpikeMonitor(group, record=False)
        run(duration_ms * ms)
        timings = session.build(with_output=False)
        best = timings["simulation"]
        for _ in range(repeats - 1):
            best = min(best, session.run(with_output=False)["simulation"])
        count = int(spikes.num_spikes)
    return {"compile_s": timings["make"], "run_s": best, "spikes": count}


def machine_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        load = "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = ""
    return f"{model}, {os.cpu_count()} cores, {platform.python_version()}, {load}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="N = 1e3, 1e4 and 10 ms")
    p.add_argument("-N", type=float, nargs="+", default=None)
    p.add_argument("--duration", type=float, default=None, help="ms (default 100)")
    p.add_argument("--dt", type=float, default=0.01, help="ms")
    p.add_argument("--backends", nargs="+", default=["cython", "cpp1", "cpp2"],
                   choices=["cython", "cpp1", "cpp2"])
    p.add_argument("--directory", default=None, help="where standalone projects go "
                   "(default: a temporary directory, removed afterwards)")
    p.add_argument("--markdown", default=None, help="write the table to this file")
    p.add_argument("--json", default=None, help="write all figures to this file")
    args = p.parse_args(argv)
    Ns = [int(n) for n in (args.N or ([1e3, 1e4] if args.quick else [1e3, 1e4, 1e5]))]
    duration = args.duration or (10.0 if args.quick else 100.0)
    steps = int(round(duration / args.dt))

    import brian2
    from brian2 import prefs

    brian2.BrianLogger.log_level_error()
    import hh_plugin.brian2  # noqa: F401  (imported before timing)

    workdir = Path(args.directory or tempfile.mkdtemp(prefix="hh_brian2_bench_"))
    machine = machine_description()
    print(f"# {machine}; Brian2 {brian2.__version__}; {duration} ms at dt = {args.dt} ms "
          f"({steps} steps)", flush=True)
    rows = []
    old_target = prefs.codegen.target
    try:
        for N in Ns:
            for backend in args.backends:
                row = {"N": N, "backend": backend}
                for model in MODELS:
                    if backend == "cython":
                        r = bench_runtime(model, N, duration, args.dt)
                    else:
                        threads = int(backend[-1])
                        repeats = 2 if N * steps <= 2e8 else 1
                        r = bench_standalone(model, N, duration, args.dt, threads,
                                             workdir / f"{model}_{backend}_{N}", repeats)
                    r["rate"] = N * steps / r["run_s"]
                    row[model] = r
                row["ratio"] = row["plugin"]["rate"] / row["baseline"]["rate"]
                rows.append(row)
                print(format_row(row), flush=True)
    finally:
        prefs.codegen.target = old_target
        if args.directory is None:
            shutil.rmtree(workdir, ignore_errors=True)
    table = format_table(rows, machine, duration, args.dt, brian2.__version__)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "duration_ms": duration,
                                               "dt_ms": args.dt, "rows": rows}, indent=2))
    return rows


BACKEND_NAMES = {"cython": "cython runtime", "cpp1": "C++ standalone, 1 thread",
                 "cpp2": "C++ standalone, 2 threads"}


def format_row(row):
    p, b = row["plugin"], row["baseline"]
    return (f"N={row['N']:>7} {BACKEND_NAMES[row['backend']]:<26} plugin {p['rate']:.3g}/s "
            f"(compile {p['compile_s']:.1f} s, run {p['run_s']:.2f} s, {p['spikes']} spikes)  "
            f"baseline {b['rate']:.3g}/s (compile {b['compile_s']:.1f} s, run "
            f"{b['run_s']:.2f} s, {b['spikes']} spikes)  ratio {row['ratio']:.2f}")


def format_table(rows, machine, duration, dt, version):
    lines = [f"Neuron-steps per second, {duration:g} ms at dt = {dt:g} ms, float64, Brian2 "
             f"{version}; {machine}.", "",
             "| N | back-end | plugin (neuron-steps/s) | hand-written Brian2 (neuron-steps/s) "
             "| plugin / hand-written | compile s (plugin / hand-written) "
             "| run s (plugin / hand-written) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        p, b = row["plugin"], row["baseline"]
        lines.append(f"| {row['N']:.0e} | {BACKEND_NAMES[row['backend']]} | {p['rate']:.3g} "
                     f"| {b['rate']:.3g} | {row['ratio']:.2f} | {p['compile_s']:.1f} / "
                     f"{b['compile_s']:.1f} | {p['run_s']:.2f} / {b['run_s']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
    sys.exit(0)
