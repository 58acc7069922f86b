r"""Build a recurrent HH network in Brian2, fit its weights in PyTorch, run the fit in Brian2.

The user story of "from Brian2 to PyTorch":

1. **Brian2.** A network of 20 HH neurons ``H`` driven by 30 Poisson trains ``P`` is
   built from a specification with :func:`hh_plugin.brian2.network.build_network`: a dense
   input projection (exponentially decaying current, :math:`\tau` = 2 ms, delay 1) and
   sparse recurrent excitation (exponentially decaying conductance, :math:`\tau` = 5 ms,
   :math:`E` = 0 mV, p = 0.3, delay 2). The weights are then set the Brian2 way, with
   expressions on the ``Synapses`` (``S.w = '3*uA*rand()'``).
2. **PyTorch.** :func:`hh_plugin.brian2.transfer.network_spec_from_brian2` reads the
   network back, weights included, and :class:`~hh_plugin.torch.network.NetworkModule`
   makes it a module whose weights are ``nn.Parameter``\ s. Before fitting, both backends
   run it and must give the same spikes.
3. **Fit.** The target is a spike pattern: the spikes of a "teacher", the same network
   with the input weights of the first half of the neurons scaled by 1.8 and of the
   other half by 0.5. The loss is the van Rossum distance (both rasters filtered with
   the causal kernel :math:`e^{-t/\tau}`, :math:`\tau` = ``--tau-ms``),
   :math:`L = \frac{1}{N}\sum_j \sum_k \big((K * z_j)_k - (K * \hat z_j)_k\big)^2 / \tau`,
   minimised with Adam over both projections' weights through the HH dynamics and the
   synapses (surrogate gradient of the spikes); the recurrent conductances are kept
   :math:`\ge 0` and the best weights seen are kept.
4. **Back to Brian2.** The Brian2 network is restored to its initial state, the fitted
   weights are written into its ``Synapses``
   (:func:`~hh_plugin.brian2.transfer.set_weights`), and it runs again: its spikes are the
   torch module's, step for step (float64), and the largest :math:`|\Delta V|` is printed.

Run from the repository root::

    python examples/fit_network_brian2.py            # about 3 minutes on one core
    python examples/fit_network_brian2.py --quick    # about 30 s of CPU time (CI)

It writes ``fit_network_brian2.png`` (the loss; Brian2's raster against the target before
and after the fit; the fitted network's rasters of both backends on top of each other)
and ``fit_network_brian2.json`` to ``--output-dir`` (default ``examples/output``; ``examples/output/quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import brian2

from hh_plugin import HHSpec
from hh_plugin.brian2.network import build_network
from hh_plugin.brian2.transfer import network_spec_from_brian2, set_weights
from hh_plugin.network import (Dense, FixedProbability, NetworkSpec, PoissonSource, Population,
                               Projection, exponential_conductance, exponential_current)
from hh_plugin.torch.network import NetworkModule

OUTPUT = Path(__file__).resolve().parent / "output"
IN, REC = "P_to_H_in", "H_to_H_rec"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short fit (CI)")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--duration-ms", type=float, default=20.0)
    parser.add_argument("--dt-ms", type=float, default=0.025)
    parser.add_argument("--neurons", type=int, default=20)
    parser.add_argument("--inputs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.1, help="Adam, input weights (uA)")
    parser.add_argument("--lr-rec", type=float, default=0.001,
                        help="Adam, recurrent conductances (mS)")
    parser.add_argument("--tau-ms", type=float, default=5.0, help="van Rossum kernel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", default="numpy", choices=("numpy", "cython"),
                        help="Brian2 runtime code generation target")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="folder for the PNG and the JSON summary (default "
                             "examples/output, examples/output/quick with --quick)")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    if args.output_dir is None:  # a quick run never overwrites a full run's figures
        args.output_dir = OUTPUT / "quick" if args.quick else OUTPUT
    return args


def specification(args) -> NetworkSpec:
    """The network as declared before it is built in Brian2 (placeholder weights that the
    Brian2 script then sets)."""
    return NetworkSpec(
        [Population("H", args.neurons, HHSpec(), initial={"V": -65.0})],
        [Projection("P", "H", Dense(np.ones((args.neurons, args.inputs))),
                    exponential_current("in", tau=2.0), delay=1),
         Projection("H", "H", FixedProbability(0.3, 0.01, seed=args.seed + 1, autapses=False),
                    exponential_conductance("rec", tau=5.0, E_rev=0.0), delay=2)],
        [PoissonSource("P", args.inputs, 80.0, seed=args.seed + 2)], dt=args.dt_ms)


def teacher_weights(weights, n: int):
    """The target network: the script's weights with the input weights of the first half
    of the neurons scaled by 1.8 and of the other half by 0.5."""
    scale = torch.where(torch.arange(n) < n // 2, 1.8, 0.5).to(weights[IN].dtype)
    return {IN: weights[IN].detach() * scale[:, None], REC: weights[REC].detach().clone()}


def van_rossum(spikes: torch.Tensor, tau_steps: float) -> torch.Tensor:
    """Spikes ``(T, N)`` filtered with the causal kernel :math:`e^{-t/\\tau}`."""
    decay = math.exp(-1.0 / tau_steps)
    length = min(int(6 * tau_steps), spikes.shape[0])
    kernel = decay ** torch.arange(length - 1, -1, -1, dtype=spikes.dtype)
    x = torch.nn.functional.pad(spikes.T.unsqueeze(1), (length - 1, 0))
    return torch.nn.functional.conv1d(x, kernel.view(1, 1, -1)).squeeze(1).T


def run_brian2(net, steps):
    net.run(steps)
    return net.spike_raster("H", steps), net.trace("H", "V")


def compare(module, net, steps):
    """Run both backends; ``(torch raster, Brian2 raster, identical, max |dV| mV)``."""
    with torch.no_grad():
        out = module(steps=steps, record=("V",), path="naive")
    z_torch = out.spikes["H"].numpy()
    z_brian, v_brian = run_brian2(net, steps)
    dv = float(np.abs(out.traces["H"]["V"].numpy() - v_brian).max())
    return z_torch, z_brian, bool(np.array_equal(z_torch, z_brian)), dv


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.iterations is None:
        args.iterations = 6 if args.quick else 80
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    steps = int(round(args.duration_ms / args.dt_ms))
    tau_steps = args.tau_ms / args.dt_ms

    # 1. the Brian2 side: build, then set the weights as a Brian2 script does
    brian2.prefs.codegen.target = args.target
    brian2.start_scope()
    brian2.seed(args.seed)
    net = build_network(specification(args), steps=steps, record=("V",))
    net.synapses[IN][0].w = "3*uA*rand()"
    net.synapses[REC][0].w = "0.02*msiemens*rand()"
    net.network.store("edited")  # after the edits: restore() brings all of them back

    # 2. the same network as a trainable torch module
    module = NetworkModule(network_spec_from_brian2(net), dtype=torch.float64)
    z_torch0, z_brian0, same_before, dv_before = compare(module, net, steps)
    print(f"before fitting: Brian2 {int(z_brian0.sum())} spikes, torch "
          f"{int(z_torch0.sum())}, identical: {same_before}, max |dV| = {dv_before:.2e} mV")

    # the target spike pattern: the teacher's spikes
    initial = {k: w.detach().clone() for k, w in module.weights.items()}
    with torch.no_grad():
        for name, weight in teacher_weights(initial, args.neurons).items():
            module.weights[name].copy_(weight)
        target = module(steps=steps, path="naive").spikes["H"]
        for name, weight in initial.items():
            module.weights[name].copy_(weight)
    target_trace = van_rossum(target, tau_steps)

    def distance(spikes):
        return ((van_rossum(spikes, tau_steps) - target_trace) ** 2).sum(0).mean() / tau_steps

    # 3. fit the weights
    optimizer = torch.optim.Adam([{"params": [module.weights[IN]], "lr": args.lr},
                                  {"params": [module.weights[REC]], "lr": args.lr_rec}])
    losses, best = [], (math.inf, None)
    for it in range(args.iterations):
        out = module(steps=steps, path="naive")
        loss = distance(out.spikes["H"])
        losses.append(float(loss.detach()))
        if losses[-1] < best[0]:
            best = (losses[-1], {k: w.detach().clone() for k, w in module.weights.items()})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            module.weights[REC].clamp_(min=0.0)
        if it % 10 == 0 or it == args.iterations - 1:
            print(f"iteration {it:4d}  loss {losses[-1]:.4f}  spikes "
                  f"{int(out.spikes['H'].detach().sum())} (target {int(target.sum())})",
                  flush=True)
    with torch.no_grad():
        for name, weight in best[1].items():
            module.weights[name].copy_(weight)

    # 4. the fitted weights back in Brian2
    net.network.restore("edited")
    set_weights(net, module)
    z_torch, z_brian, identical, dv = compare(module, net, steps)
    loss_brian = float(distance(torch.as_tensor(z_brian)))
    first_diff = None
    if not identical:
        first_diff = int(np.nonzero(np.any(z_torch != z_brian, axis=1))[0][0])
    elapsed = time.perf_counter() - start
    print(f"fitted: loss {losses[0]:.4f} -> {best[0]:.4f} (torch), {loss_brian:.4f} "
          f"(Brian2); Brian2 {int(z_brian.sum())} spikes, torch {int(z_torch.sum())}, "
          f"target {int(target.sum())}; identical: {identical}, max |dV| = {dv:.2e} mV; "
          f"{elapsed:.1f} s")
    result = {"loss_start": losses[0], "loss_end": best[0], "loss_brian2": loss_brian,
              "loss_history": losses, "identical_before": same_before,
              "max_dV_before_mV": dv_before, "identical": identical, "max_dV_mV": dv,
              "first_different_step": first_diff, "spikes_torch": int(z_torch.sum()),
              "spikes_brian2": int(z_brian.sum()), "spikes_target": int(target.sum()),
              "seconds": elapsed}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "fit_network_brian2.json").write_text(json.dumps(result, indent=1))
    if not args.no_plots:
        plot(args, losses, target.numpy(), z_brian0, z_torch, z_brian, identical, dv)
    return result


def _raster(ax, t, z, **style):
    k, i = np.nonzero(z)
    ax.plot(t[k], i, **style)


def plot(args, losses, target, z_before, z_torch, z_brian, identical, dv):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(z_torch.shape[0]) * args.dt_ms
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0, 0]
    ax.plot(losses, lw=1.2)
    ax.set(xlabel="iteration", ylabel="van Rossum distance to the target",
           title="Fit of the weights in PyTorch")
    for ax, z, title in ((axes[0, 1], z_before, "Brian2 before the fit (the script's weights)"),
                         (axes[1, 1], z_brian, "Brian2 after the fit")):
        _raster(ax, t, target, ls="none", marker="s", mfc="none", mec="0.6", ms=7,
                label="target")
        _raster(ax, t, z, ls="none", marker="|", color="tab:blue", ms=9, mew=1.5,
                label="Brian2")
        ax.set(xlabel="t (ms)", ylabel="neuron", title=title, xlim=(0, t[-1] + args.dt_ms))
        ax.legend(loc="upper right", fontsize=8)
    ax = axes[1, 0]
    _raster(ax, t, z_brian, ls="none", marker="o", mfc="none", mec="tab:blue", ms=7,
            label="Brian2")
    _raster(ax, t, z_torch, ls="none", marker=".", color="tab:red", ms=5, label="PyTorch")
    ax.set(xlabel="t (ms)", ylabel="neuron", xlim=(0, t[-1] + args.dt_ms),
           title=f"Fitted weights on both backends: {'identical' if identical else 'different'}"
                 f" spikes\nmax |dV| = {dv:.1e} mV (float64)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = args.output_dir / "fit_network_brian2.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
