"""How long a Brian2CUDA build of a 1,000-neuron network takes to compile, without a GPU.

The network: 800 Hodgkin-Huxley and 200 Wang-Buzsaki neurons, sparse excitatory and
inhibitory exponential-conductance projections (p = 0.02), a Poisson drive of 100 trains
onto the excitatory population, 100 ms at dt = 0.025 ms, generated for ``sm_90``
(H100/H200) with :func:`hh_plugin.brian2.use_device` and compiled with ``nvcc`` (the
compile-only build that a machine without a GPU can do). It prints the phases (code
generation, ``make``), the number of code objects, the progress lines of
:mod:`hh_plugin.brian2.make_watch`, the CPU model and the load average before and after.

Run it with the Python of the Brian2CUDA environment (``HH_PLUGIN_TEST_ENVS=all bash
install.sh`` makes it; ``python3 tests/environments.py`` prints where)::

    ~/.cache/hh_plugin/cuda-env-py311-brian2cuda-1.0a7/bin/python benchmarks/cuda_build_time.py
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build_spec(n_exc: int, n_inh: int):
    from hh_plugin import HHSpec
    from hh_plugin.model import WANG_BUZSAKI
    from hh_plugin.network import (CurrentInput, FixedProbability, NetworkSpec,
                                   PoissonSource, Population, Projection,
                                   exponential_conductance)

    exc = exponential_conductance("e", tau=2.0, E_rev=0.0)
    inh = exponential_conductance("i", tau=5.0, E_rev=-80.0)
    return NetworkSpec(
        [Population("E", n_exc, HHSpec(), seed=1),
         Population("I", n_inh, HHSpec(model=WANG_BUZSAKI), seed=2)],
        [Projection("E", "E", FixedProbability(0.02, 0.05, seed=3), exc, delay=2),
         Projection("E", "I", FixedProbability(0.02, 0.02, seed=4), exc, delay=2),
         Projection("I", "E", FixedProbability(0.02, 0.2, seed=5), inh, delay=2),
         Projection("P", "E", FixedProbability(0.1, 0.1, seed=6), exc, delay=1)],
        [CurrentInput("E", 5.0), CurrentInput("I", 0.5),
         PoissonSource("P", 100, 20.0, seed=7)], dt=0.025)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=1000)
    parser.add_argument("--directory", default=None, help="project directory (kept)")
    parser.add_argument("--stall-timeout", type=float, default=1200.0)
    args = parser.parse_args(argv)

    import brian2

    from hh_plugin.brian2 import use_device
    from hh_plugin.brian2.network import build_network

    n_inh = args.neurons // 5
    spec = build_spec(args.neurons - n_inh, n_inh)
    directory = args.directory or tempfile.mkdtemp(prefix="hh_cuda_build_")
    load_before = os.getloadavg()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; load average "
          f"{load_before[0]:.2f}; Brian2 {brian2.__version__}", flush=True)
    start = time.perf_counter()
    with use_device("cuda_standalone", directory=directory, build_on_run=False,
                    compute_capability=9.0, stall_timeout=args.stall_timeout) as session:
        net = build_network(spec, steps=4000)
        net.run()
        timings = session.build(run=False, with_output=False)
    total = time.perf_counter() - start
    objects = len(list(Path(directory, "code_objects").glob("*.cu")))
    load_after = os.getloadavg()
    result = {"neurons": args.neurons, "code_objects": objects, "generate_s": timings["generate"],
              "make_s": timings["make"], "total_s": total, "load_before": load_before[0],
              "load_after_1min": load_after[0], "cpu": cpu_model()}
    print(f"\n| neurons | code objects (.cu) | generate (s) | make (s) | total (s) | "
          f"load 1 min before / after |\n|---|---|---|---|---|---|\n"
          f"| {args.neurons} | {objects} | {timings['generate']:.1f} | {timings['make']:.1f} "
          f"| {total:.1f} | {load_before[0]:.2f} / {load_after[0]:.2f} |")
    print(f"project: {directory}")
    return result


if __name__ == "__main__":
    main()
