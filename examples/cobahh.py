r"""COBAHH on both backends from one specification, with the two rasters side by side.

Brian2's ``examples/COBAHH.py`` (Brette et al. 2007, benchmark 3: 4,000 Traub-Miles
neurons, 3,200 excitatory and 800 inhibitory, connected with probability 0.02 through
exponential conductances, :math:`w_e` = 6 nS, :math:`w_i` = 67 nS) is
:func:`hh_plugin.network.cobahh_network`. The same specification is run

- in Brian2 (:func:`hh_plugin.brian2.network.build_network`; C++ standalone by default,
  the numpy runtime target with ``--target numpy``), and
- in PyTorch (:class:`hh_plugin.torch.network.NetworkModule`, float64 by default, the
  fused C++ path on the CPU),

from the same connectivity and initial values (drawn with ``--seed``). The script prints
the spike counts and the time of the first step whose spikes differ between the two, and
saves a figure with the two rasters (``--output``, default
``examples/output/cobahh.png``).

Usage::

    python examples/cobahh.py                    # 1 s, C++ standalone and torch float64
    python examples/cobahh.py --quick            # 100 ms, numpy target (no Brian2 compile)
    python examples/cobahh.py --dtype float32    # float32 leaves float64 after tens of ms
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "output" / "cobahh.png"


def run_brian2(spec, steps: int, target: str):
    """``(steps, N)`` boolean spikes of the plugin's Brian2 network and the wall time (s)."""
    import brian2

    from hh_plugin.brian2 import use_device
    from hh_plugin.brian2.network import build_network

    brian2.start_scope()
    t0 = time.perf_counter()
    if target == "cpp_standalone":
        with tempfile.TemporaryDirectory() as directory, \
                use_device("cpp_standalone", directory=directory, build_on_run=False) as session:
            net = build_network(spec, steps, record=())
            net.run()
            session.build(with_output=False)
            spikes = net.spike_raster("P", steps).astype(bool)
    else:
        old = brian2.prefs.codegen.target
        brian2.prefs.codegen.target = target
        try:
            net = build_network(spec, steps, record=())
            net.run()
            spikes = net.spike_raster("P", steps).astype(bool)
        finally:
            brian2.prefs.codegen.target = old
    return spikes, time.perf_counter() - t0


def run_torch(spec, steps: int, dtype: str):
    """``(steps, N)`` boolean spikes of the torch network and the wall time (s)."""
    import torch

    from hh_plugin.torch.network import NetworkModule

    t0 = time.perf_counter()
    module = NetworkModule(spec, dtype=getattr(torch, dtype))
    with torch.no_grad():
        spikes = module(steps=steps).spikes["P"].numpy().astype(bool)
    return spikes, time.perf_counter() - t0


def first_divergence(a, b, dt: float):
    """Time (ms) of the first step whose spikes differ, or ``None``."""
    steps = np.nonzero((a != b).any(axis=1))[0]
    return None if len(steps) == 0 else float(steps[0] * dt)


def plot(brian2_spikes, torch_spikes, dt: float, titles, output: Path, every: int = 10) -> None:
    """The two rasters side by side (every ``every``-th neuron, so single spikes show)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharex=True, sharey=True)
    for ax, spikes, title in zip(axes, (brian2_spikes, torch_spikes), titles):
        k, i = np.nonzero(spikes[:, ::every])
        i = i * every
        colors = np.where(i < 3200, "tab:blue", "tab:red")
        ax.scatter(k * dt, i, s=4, c=colors, marker=".", linewidths=0, rasterized=True)
        ax.set_title(title)
        ax.set_xlabel("t (ms)")
    axes[0].set_ylabel(f"neuron (every {every}th; blue: excitatory, red: inhibitory)")
    axes[0].set_ylim(-10, brian2_spikes.shape[1] + 10)
    fig.suptitle("COBAHH (Brian2 examples/COBAHH.py) from one hh_plugin specification")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1000.0, help="ms (default 1000)")
    parser.add_argument("--target", choices=("cpp_standalone", "cython", "numpy"),
                        default="cpp_standalone", help="Brian2 target")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the connectivity and the initial values")
    parser.add_argument("--quick", action="store_true",
                        help="100 ms with the numpy target (for CI)")
    parser.add_argument("--output", type=Path, default=None,
                        help="PNG to write (default examples/output/cobahh.png, "
                             "examples/output/quick/cobahh.png with --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.target = 100.0, "numpy"
    if args.output is None:  # a quick run never overwrites a full run's figure
        args.output = (DEFAULT_OUTPUT.parent / "quick" / DEFAULT_OUTPUT.name if args.quick
                       else DEFAULT_OUTPUT)

    from hh_plugin.network import cobahh_network

    spec = cobahh_network(seed=args.seed)
    steps = int(round(args.duration / spec.dt))
    n_syn = sum(c.size for c in spec.connections.values())
    print(f"COBAHH: {spec.populations['P'].size} neurons, {n_syn} synapses, {steps} steps "
          f"of {spec.dt} ms")
    b2_spikes, b2_time = run_brian2(spec, steps, args.target)
    torch_spikes, torch_time = run_torch(spec, steps, args.dtype)
    first = first_divergence(b2_spikes, torch_spikes, spec.dt)
    print(f"Brian2 ({args.target}): {int(b2_spikes.sum())} spikes "
          f"({b2_time:.1f} s wall, compilation included)")
    print(f"torch ({args.dtype}):       {int(torch_spikes.sum())} spikes "
          f"({torch_time:.1f} s wall, compilation included)")
    print("identical spikes through all %g ms" % args.duration if first is None
          else f"first diverging spike at {first:g} ms")
    plot(b2_spikes, torch_spikes, spec.dt,
         (f"Brian2 ({args.target}): {int(b2_spikes.sum())} spikes",
          f"PyTorch ({args.dtype}): {int(torch_spikes.sum())} spikes"), args.output)
    print(f"wrote {args.output}")
    return b2_spikes, torch_spikes, first


if __name__ == "__main__":
    main()
