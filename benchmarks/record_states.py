"""Memory and time of recording chosen state variables: ``HH(record_states=('V',))``
against ``record_states=True`` (V, m, h, n) and ``False`` (the final state only).

Float64, N neurons x T steps (default 1e4 x 1000), forward only (``torch.no_grad()``),
constant input of 10 uA. For each setting:

* ``recorded MB``: bytes of the returned trajectories (exact: T N 8 bytes per variable);
* ``peak RSS MB``: the growth of the process's peak resident memory over the run, in a
  fresh child process per setting (so the input, the spikes and the allocator count too);
* ``best s``: the shortest wall time of ``--repeats`` runs; the settings are timed in
  alternation, round by round, because the machine may be shared (the ratios of one
  round are more reliable than times taken minutes apart).

This is a benchmark, not a test. The CPU is named (``lscpu``) in the output.

    python benchmarks/record_states.py                 # fused C++ path (the default)
    python benchmarks/record_states.py --path naive    # the step loop
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = {"all (True)": True, "V only": ("V",), "none (False)": False}


def _case(n: int, steps: int):
    import torch

    return torch.full((steps, n), 10.0, dtype=torch.float64)


def _run(record, n, steps, path):
    import torch

    from hh_plugin import HHSpec
    from hh_plugin.torch import HH

    module = HH(p=HHSpec(), dt=1e-5, V_init=-65.0, path=path, record_states=record)
    with torch.no_grad():
        return module(_case(n, steps))


def _peak_rss_child(record, n, steps, path, queue):
    import torch  # noqa: F401  (imported before the baseline is taken)

    _run(record, 16, 4, path)  # load the kernel before the baseline
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    z, states = _run(record, n, steps, path)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    recorded = sum(t.numel() * t.element_size() for t in states if t is not None) \
        if record else 0
    queue.put(((after - before) / 1024, recorded / 2**20))  # ru_maxrss is in KiB on Linux


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--neurons", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--path", default="fused_cpp", choices=("fused_cpp", "naive"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    from timing import cpu_model  # benchmarks/timing.py

    import torch

    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"float64, N = {args.neurons}, T = {args.steps}, path {args.path}")
    context = multiprocessing.get_context("spawn")
    memory = {}
    for label, record in SETTINGS.items():
        queue = context.Queue()
        child = context.Process(target=_peak_rss_child,
                                args=(record, args.neurons, args.steps, args.path, queue))
        child.start()
        memory[label] = queue.get()
        child.join()
    for record in SETTINGS.values():  # warm-up (kernel build)
        _run(record, args.neurons, 10, args.path)
    times = {label: [] for label in SETTINGS}
    for _ in range(args.repeats):
        for label, record in SETTINGS.items():
            t0 = time.perf_counter()
            _run(record, args.neurons, args.steps, args.path)
            times[label].append(time.perf_counter() - t0)
    base = times["all (True)"]
    print(f"{'record_states':<14} {'recorded MB':>12} {'peak RSS MB':>12} {'best s':>8} "
          f"{'median time / all (per round)':>30}")
    for label in SETTINGS:
        ratio = statistics.median(t / b for t, b in zip(times[label], base))
        rss, recorded = memory[label]
        print(f"{label:<14} {recorded:>12.1f} {rss:>12.1f} {min(times[label]):>8.3f} "
              f"{ratio:>30.2f}")


if __name__ == "__main__":
    main()
