"""One million Hodgkin-Huxley neurons on a GPU with Brian2CUDA (``cuda_standalone``).

Each neuron gets its own constant input current (a ramp from 2 to 20 uA/cm2 over the
population, so some neurons stay silent and the others fire at different rates) and its
own initial membrane potential. The script prints the throughput (neuron-steps per
second of the simulation loop, measured inside the generated binary) and the spike count.

    python examples/gpu_large_run.py                       # 1e6 neurons, 100 ms, float64
    python examples/gpu_large_run.py -N 10000000 --float32
    python examples/gpu_large_run.py --generate-only       # no GPU: generate and compile
    python examples/gpu_large_run.py --generate-only --no-compile   # no nvcc either
    python examples/gpu_large_run.py --device cpp_standalone -N 100000 --threads 2

Brian2CUDA pins its Brian2 version (brian2cuda 1.0a7: brian2==2.8.0, numpy<2.4), see
``pip install 'hh_plugin[cuda]'`` in the README. Without a GPU the compute capability must
be given (default here: 9.0, H100/H200).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-N", type=float, default=1e6, help="number of neurons (default 1e6)")
    p.add_argument("--duration", type=float, default=100.0, help="simulated time in ms")
    p.add_argument("--dt", type=float, default=0.01, help="time step in ms")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--float32", action="store_true", help="single precision")
    precision.add_argument("--float64", action="store_true", help="double precision (default)")
    p.add_argument("--device", default="cuda_standalone",
                   choices=["cuda_standalone", "cpp_standalone"])
    p.add_argument("--directory", default=None,
                   help="project directory (default: gpu_large_run_<device> here)")
    p.add_argument("--compute-capability", type=float, default=None,
                   help="GPU architecture, e.g. 9.0 (H100/H200); default: the GPU's, "
                        "or 9.0 with --generate-only")
    p.add_argument("--threads", type=int, default=None, help="OpenMP threads (cpp_standalone)")
    p.add_argument("--generate-only", action="store_true",
                   help="generate (and compile) the project but do not run it (no GPU needed)")
    p.add_argument("--no-compile", action="store_true",
                   help="with --generate-only: do not compile either (no nvcc needed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.no_compile and not args.generate_only:
        p.error("--no-compile needs --generate-only")
    if args.N < 1 or args.N != int(args.N):
        p.error("N must be a positive integer")
    args.N = int(args.N)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    import numpy as np
    from brian2 import SpikeMonitor, defaultclock, ms, prefs, run

    from hh_plugin import HHSpec
    from hh_plugin.brian2 import neuron_group, use_device

    options = {}
    if args.device == "cuda_standalone":
        cc = args.compute_capability
        if cc is None and args.generate_only:
            cc = 9.0
        options.update(compute_capability=cc)
        if args.no_compile:
            from hh_plugin.brian2.device import find_nvcc

            if find_nvcc() is None:
                options["cuda_runtime_version"] = 13.0
    elif args.threads is not None:
        options["threads"] = args.threads
    directory = args.directory or f"gpu_large_run_{args.device}"
    dtype = np.float32 if args.float32 else np.float64
    old_dtype = prefs.core.default_float_dtype
    prefs.core.default_float_dtype = dtype
    try:
        with use_device(args.device, directory=directory, build_on_run=False,
                        compile=not args.no_compile, **options) as session:
            defaultclock.dt = args.dt * ms
            N = args.N
            group = neuron_group(N, HHSpec(), V_init="uniform", seed=args.seed)
            # heterogeneous input: a ramp of constant currents, 2..20 uA/cm2
            group.I = f"(2.0 + 18.0*i/{float(max(N - 1, 1))!r})*uA"
            spikes = SpikeMonitor(group, record=False)
            run(args.duration * ms)
            start = time.perf_counter()
            timings = session.build(run=not args.generate_only, with_output=False)
            total = time.perf_counter() - start
            steps = int(round(args.duration / args.dt))
            result = {"device": args.device, "N": N, "dtype": np.dtype(dtype).name,
                      "dt_ms": args.dt, "duration_ms": args.duration, "steps": steps,
                      "directory": str(Path(session.directory).resolve()),
                      "generate_s": timings.get("generate"), "compile_s": timings.get("make"),
                      "build_total_s": total}
            if not args.generate_only:
                sim = timings["simulation"]
                result.update(simulation_s=sim, run_binary_s=timings["run_binary"],
                              neuron_steps_per_s=N * steps / sim,
                              spikes=int(spikes.num_spikes),
                              spikes_per_neuron=float(spikes.num_spikes) / N)
    finally:
        prefs.core.default_float_dtype = old_dtype
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        print(f"{key:>20}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
