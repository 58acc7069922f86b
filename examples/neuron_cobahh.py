r"""COBAHH in NEURON, in one process or over MPI, with its raster beside Brian2's.

The specification of Brian2's ``examples/COBAHH.py``
(:func:`hh_plugin.network.cobahh_network`: Traub-Miles neurons, exponential conductance
synapses, ``refractory=3*ms``) runs in NEURON (:func:`hh_plugin.neuron.run_network`,
cells spread over the MPI processes by gid) and, on rank 0, in Brian2 from the same
connectivity and initial values; the script prints both populations' rates, the time of
the first spike that differs by more than 0.1 ms between the two (COBAHH is chaotic: the
runs agree spike for spike only for the first milliseconds, then statistically), the wall
times, and saves the two rasters side by side.

Usage::

    python examples/neuron_cobahh.py --quick                     # 400 neurons, 100 ms
    mpiexec -n 2 python examples/neuron_cobahh.py --quick        # the same on 2 processes
    mpiexec -n 2 python examples/neuron_cobahh.py                # 4,000 neurons, 1 s

The NEURON run uses its fixed step at the network's dt (second order) in one process and
CVODE under ``mpiexec`` (``--integration`` chooses): COBAHH's synapses act one step after
a spike, and NEURON's fixed step needs more than one step of delay to exchange spikes
between processes. CVODE is much slower on this network (it stops at every one of its
many synaptic events).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "output" / "neuron_cobahh.png"


def _cobahh_example():
    spec = importlib.util.spec_from_file_location("cobahh_example", HERE / "cobahh.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spike_lists(raster: np.ndarray, dt: float):
    """``(times, indices)`` of a ``(steps, N)`` raster, times at the middle of the step."""
    k, i = np.nonzero(raster)
    return (k + 0.5) * dt, i


def first_difference(a, b, size: int, tolerance: float = 0.1) -> float:
    """Time (ms) of the first spike that has no partner within ``tolerance`` ms in the
    other run (neuron by neuron, k-th spike with k-th spike); ``inf`` if none."""
    first = np.inf
    for j in range(size):
        ta, tb = a[0][a[1] == j], b[0][b[1] == j]
        m = min(len(ta), len(tb))
        bad = np.nonzero(np.abs(ta[:m] - tb[:m]) > tolerance)[0]
        if len(bad):
            first = min(first, ta[bad[0]], tb[bad[0]])
        if len(ta) != len(tb):
            first = min(first, (ta if len(ta) > m else tb)[m])
    return float(first)


def rates(spikes, n_exc: int, n: int, duration: float):
    """Mean rates (Hz) of the excitatory and inhibitory neurons."""
    index = spikes[1]
    return ((index < n_exc).sum() / n_exc / duration * 1e3,
            (index >= n_exc).sum() / (n - n_exc) / duration * 1e3)


def plot(runs, titles, n_exc: int, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 5), sharex=True,
                             sharey=True)
    for ax, (times, index), title in zip(axes, runs, titles):
        colors = np.where(index < n_exc, "tab:blue", "tab:red")
        ax.scatter(times, index, s=3, c=colors, marker=".", linewidths=0, rasterized=True)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("t (ms)")
    axes[0].set_ylabel("neuron (blue: excitatory, red: inhibitory)")
    fig.suptitle("COBAHH from one hh_plugin specification: NEURON and Brian2")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1000.0, help="ms (default 1000)")
    parser.add_argument("--n-exc", type=int, default=3200)
    parser.add_argument("--n-inh", type=int, default=800)
    parser.add_argument("--p", type=float, default=0.02, help="connection probability")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--integration", choices=("auto", "fixed", "cvode"), default="auto",
                        help="auto: fixed step in one process, CVODE under mpiexec")
    parser.add_argument("--target", choices=("cpp_standalone", "cython", "numpy"),
                        default="cpp_standalone", help="Brian2 target")
    parser.add_argument("--quick", action="store_true",
                        help="400 neurons with p = 0.2, 100 ms, Brian2's numpy target")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_exc, args.n_inh, args.p, args.duration = 320, 80, 0.2, 100.0
        args.target = "numpy"
    if args.output is None:
        args.output = (DEFAULT_OUTPUT.parent / "quick" / DEFAULT_OUTPUT.name if args.quick
                       else DEFAULT_OUTPUT)

    from hh_plugin.network import cobahh_network
    from hh_plugin.neuron import Integration, run_network

    spec = cobahh_network(n_exc=args.n_exc, n_inh=args.n_inh, p=args.p, seed=args.seed)
    n = args.n_exc + args.n_inh
    steps = int(round(args.duration / spec.dt))
    from hh_plugin.neuron.mpi import launched_by_mpi

    method = args.integration
    if method == "auto":
        method = "cvode" if launched_by_mpi() else "fixed"
    integration = Integration.fixed() if method == "fixed" else Integration.cvode()
    start = time.perf_counter()
    result = run_network(spec, steps, integration=integration)
    neuron_wall = time.perf_counter() - start
    if not result.is_root:
        return None
    neuron_spikes = result.spikes["P"]
    print(f"COBAHH: {n} neurons, {sum(c.size for c in spec.connections.values())} synapses, "
          f"{args.duration:g} ms")
    print(f"NEURON ({integration.describe()}, {result.nhost} processes): "
          f"{len(neuron_spikes[0])} spikes, rates exc/inh "
          f"{'%.1f / %.1f' % rates(neuron_spikes, args.n_exc, n, args.duration)} Hz, "
          f"{neuron_wall:.1f} s wall")
    b2_raster, b2_wall = _cobahh_example().run_brian2(spec, steps, args.target)
    b2_spikes = spike_lists(b2_raster, spec.dt)
    print(f"Brian2 ({args.target}): {len(b2_spikes[0])} spikes, rates exc/inh "
          f"{'%.1f / %.1f' % rates(b2_spikes, args.n_exc, n, args.duration)} Hz, "
          f"{b2_wall:.1f} s wall (compilation included)")
    first = first_difference(neuron_spikes, b2_spikes, n)
    print(f"first spike differing by more than 0.1 ms: {first:.2f} ms" if np.isfinite(first)
          else "every spike within 0.1 ms")
    plot([neuron_spikes, b2_spikes],
         [f"NEURON, {result.nhost} process(es): {len(neuron_spikes[0])} spikes",
          f"Brian2 ({args.target}): {len(b2_spikes[0])} spikes"], args.n_exc, args.output)
    print(f"wrote {args.output}")
    return neuron_spikes, b2_spikes, first


if __name__ == "__main__":
    main()
