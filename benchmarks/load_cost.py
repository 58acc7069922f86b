"""What the safe default of the reader costs: ``load`` of a file in the sandboxed child
(the default) against ``load(path, trusted=True)`` in this process, same run.

    PYTHONPATH=. python benchmarks/load_cost.py [--repeats 7]

Files: a small case (6 neurons, 8 steps), a large run (1,000 neurons, 2,500 steps, four
traces: about 80 MB) and a network file (COBAHH's 4,000 neurons and their synapses).
Each load is timed in alternating rounds (default, then trusted) and the median is
printed with the ratio; the table names the CPU and the load average, since the child's
start (a Python process importing numpy and h5py) depends on both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _files(directory: Path):
    import numpy as np

    from hh_plugin import HHSpec
    from hh_plugin.export import save, save_network
    from hh_plugin.export.case import make_case
    from hh_plugin.network import cobahh_network

    small = directory / "small.h5"
    make_case(6, duration=0.2, dt=0.025, seed=1).save(small)
    large = directory / "large.h5"
    steps, n = 2500, 1000
    rng = np.random.default_rng(0)
    traces = {"time": 0.025 * np.arange(1, steps + 1),
              "V": rng.normal(-65, 5, (steps, n)).astype(np.float64),
              "m": rng.uniform(0, 1, (steps, n)), "h": rng.uniform(0, 1, (steps, n)),
              "n": rng.uniform(0, 1, (steps, n))}
    save(large, HHSpec(), dt=0.025, traces=traces)
    network = directory / "network.h5"
    save_network(network, cobahh_network())
    return [("small case (6 neurons, 8 steps)", small, "load"),
            ("large run (1,000 neurons, 2,500 steps, 4 traces)", large, "load"),
            ("COBAHH network (4,000 neurons)", network, "load_network")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    from timing import cpu_model  # benchmarks/timing.py

    import hh_plugin.export as export

    with tempfile.TemporaryDirectory() as tmp:
        files = _files(Path(tmp))
        print(f"CPU: {cpu_model()}, load average {os.getloadavg()[0]:.1f} at the start; "
              f"median of {args.repeats} alternating rounds")
        print()
        print("| file | size | `trusted=True` (in process) | default (sandboxed child) | "
              "ratio |")
        print("|---|---|---|---|---|")
        for label, path, reader in files:
            load = getattr(export, reader)
            load(path)  # warm the page cache and this process's imports
            load(path, trusted=True)
            times = {"default": [], "trusted": []}
            for _ in range(args.repeats):
                for mode in ("default", "trusted"):
                    start = time.perf_counter()
                    load(path, trusted=(mode == "trusted"))
                    times[mode].append(time.perf_counter() - start)
            default = statistics.median(times["default"])
            trusted = statistics.median(times["trusted"])
            size = path.stat().st_size
            size_text = f"{size / 2**20:.0f} MB" if size > 2**20 else f"{size / 1024:.0f} KB"
            print(f"| {label} | {size_text} | {1e3 * trusted:.0f} ms | "
                  f"{1e3 * default:.0f} ms | {default / trusted:.1f} |")
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
