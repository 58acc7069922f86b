r"""Train a Hodgkin-Huxley spiking network on scikit-learn's handwritten digits with Norse.

The network is built from ordinary Norse and PyTorch modules::

    pixels (8x8, in uA) --Linear(64, H)--ReLU--> HH (H neurons) --Linear(H, 10)--> LI (10)

* **Encoding**: each image is a constant input current: a pixel of intensity 16 (the
  maximum of ``load_digits``) injects ``--input-scale`` uA, held for all ``--steps`` time
  steps of ``--dt-ms`` ms. The first ``Linear`` layer mixes these currents (its weights are
  dimensionless, its bias is in uA) into the current of each HH neuron; a ReLU keeps
  these currents excitatory.
* **Hidden layer**: :class:`hh_plugin.torch.HH`, the reference HH model (exponential
  Euler, a spike per upward crossing of :math:`V_{th} = 20` mV, ReLU surrogate gradient).
* **Readout**: Norse's leaky integrator ``LI``; the class scores are the readout
  membranes' maxima over time, trained with cross-entropy (Adam, backpropagation through
  time with the surrogate gradient).

Run from the repository root::

    python examples/train_digits.py                 # full run (~10 s fused loop, ~1 min naive)
    python examples/train_digits.py --quick         # smoke test (seconds)

It prints test accuracy, spikes per hidden neuron per sample and wall time, and writes
``learning_curve.png``, ``hh_membrane.png`` and ``train_digits.json`` to
``--output-dir`` (default ``examples/output``; ``examples/output/quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", category=DeprecationWarning)  # norse's torch.jit notices

try:
    import hh_plugin  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import norse.torch as norse  # noqa: E402

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.torch import HH  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "output"
REST_MV = -70.68  # resting potential of the reference model (gL = 0.03 mS)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="folder for the PNGs and the JSON summary (default "
                             "examples/output, examples/output/quick with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (20; quick: 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, init and batches")
    parser.add_argument("--quick", action="store_true",
                        help="a few seconds: fewer samples, steps and epochs (for tests)")
    parser.add_argument("--hidden", type=int, default=128, help="number of HH neurons")
    parser.add_argument("--steps", type=int, default=40, help="time steps per image")
    parser.add_argument("--dt-ms", type=float, default=0.1, help="time step in ms")
    parser.add_argument("--input-scale", type=float, default=60.0,
                        help="current (uA) injected by a pixel of maximal intensity")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest for these small tensors)")
    parser.add_argument("--hh-path", default=None,
                        help="time-loop implementation of the HH layer, e.g. 'naive' (a Python "
                             "loop of hh_step) or 'fused_cpp'; default: the HH module's default")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    args = parser.parse_args(argv)
    if args.output_dir is None:  # a quick run never overwrites a full run's figures
        args.output_dir = DEFAULT_OUTPUT / "quick" if args.quick else DEFAULT_OUTPUT
    return args


def load_data(seed: int, input_scale: float, quick: bool):
    """Digits as currents (uA), split 75/25 stratified; float32 tensors."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0 * input_scale
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed)
    if quick:
        X_train, y_train, X_test, y_test = X_train[:256], y_train[:256], X_test[:128], y_test[:128]
    as_t = lambda a, dt: torch.as_tensor(a, dtype=dt)  # noqa: E731
    return (as_t(X_train, torch.float32), as_t(y_train, torch.long),
            as_t(X_test, torch.float32), as_t(y_test, torch.long))


def build_model(hidden: int, dt_ms: float, path=None) -> norse.SequentialState:
    """Linear -> ReLU -> HH -> Linear -> LI, a Norse ``SequentialState`` over (T, batch, ...).

    (*) A neuron driven by a current <= 0 stays silent and, its membrane far below
    :math:`V_{th}`, passes no surrogate gradient either way; the ReLU changes neither the
    spikes nor the gradients, it only keeps such membranes at rest instead of letting a
    large negative current drive them to unphysiological potentials.
    """
    dt = dt_ms * 1e-3  # Norse and hh_plugin take dt in seconds
    readout = norse.LIParameters(tau_syn_inv=torch.tensor(1.0 / 1e-3),   # 1 ms synapse
                                 tau_mem_inv=torch.tensor(1.0 / 2e-3))   # 2 ms membrane
    return norse.SequentialState(
        torch.nn.Linear(64, hidden),                        # currents into the HH neurons (uA)
        torch.nn.ReLU(),                                    # excitatory currents only (*)
        HH(p=HHSpec(), dt=dt, V_init=REST_MV,               # start every image at rest
           **({} if path is None else {"path": path})),
        torch.nn.Linear(hidden, 10),
        norse.LI(p=readout, dt=dt),
        return_hidden=True,                                 # also return the HH spikes
    )


def run(model, x, steps):
    """Class scores (batch, 10) and the HH spikes (T, batch, H) for inputs ``x`` (batch, 64)."""
    sequence = x.unsqueeze(0).expand(steps, *x.shape)       # constant current over time
    outputs, _ = model(sequence)                            # one output per layer
    spikes, readout = outputs[2], outputs[4]
    return readout.max(dim=0).values, spikes


def evaluate(model, X, y, steps, batch_size=512):
    correct, spike_total = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            scores, spikes = run(model, X[i:i + batch_size], steps)
            correct += (scores.argmax(1) == y[i:i + batch_size]).sum().item()
            spike_total += spikes.sum().item()
    hidden = model[0].out_features
    return correct / len(X), spike_total / (len(X) * hidden)


def train(args):
    torch.manual_seed(args.seed)
    X_train, y_train, X_test, y_test = load_data(args.seed, args.input_scale, args.quick)
    model = build_model(args.hidden, args.dt_ms, args.hh_path)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    generator = torch.Generator().manual_seed(args.seed)
    history = {"epoch": [], "train_loss": [], "train_acc": [], "test_acc": [],
               "spikes_per_neuron": []}
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(X_train), generator=generator)
        total_loss, correct = 0.0, 0
        for i in range(0, len(X_train), args.batch_size):
            index = order[i:i + args.batch_size]
            scores, _ = run(model, X_train[index], args.steps)
            loss = torch.nn.functional.cross_entropy(scores, y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(index)
            correct += (scores.argmax(1) == y_train[index]).sum().item()
        scheduler.step()
        model.eval()
        test_acc, spikes = evaluate(model, X_test, y_test, args.steps)
        history["epoch"].append(epoch)
        history["train_loss"].append(total_loss / len(X_train))
        history["train_acc"].append(correct / len(X_train))
        history["test_acc"].append(test_acc)
        history["spikes_per_neuron"].append(spikes)
        print(f"epoch {epoch:3d}  loss {history['train_loss'][-1]:.4f}  "
              f"train acc {history['train_acc'][-1]:.3f}  test acc {test_acc:.3f}  "
              f"spikes/neuron {spikes:.3f}  [{time.perf_counter() - start:.1f} s]", flush=True)
    train_time = time.perf_counter() - start
    return model, history, train_time, (X_test, y_test)


def plot_learning_curve(history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(history["epoch"], history["train_loss"], "o-")
    ax1.set(xlabel="epoch", ylabel="cross-entropy (train)", title="Training loss")
    ax2.plot(history["epoch"], history["train_acc"], "o-", label="train")
    ax2.plot(history["epoch"], history["test_acc"], "s-", label="test")
    ax2.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1.02))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_membrane(model, x, label, args, path):
    """Raster of the HH layer for one test digit, and a few membrane traces."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recorder = HH(p=HHSpec(), dt=args.dt_ms * 1e-3, V_init=REST_MV, record_states=True)
    with torch.no_grad():
        current = model[1](model[0](x.unsqueeze(0).expand(args.steps, 1, 64)))
        spikes, states = recorder(current)
        scores, _ = run(model, x.unsqueeze(0), args.steps)
    spikes, V = spikes[:, 0].numpy(), states.V[:, 0].numpy()
    t = (np.arange(args.steps) + 1) * args.dt_ms
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1, 2, 2]})
    axes[0].imshow(x.numpy().reshape(8, 8), cmap="gray_r")
    axes[0].set(title=f"digit {label} (predicted {scores.argmax().item()})", xticks=[], yticks=[])
    steps_, neurons = np.nonzero(spikes)
    axes[1].scatter(t[steps_], neurons, s=6, marker="|", color="k")
    axes[1].set(xlabel="time (ms)", ylabel="HH neuron", xlim=(0, t[-1]),
                ylim=(-1, spikes.shape[1]),
                title=f"HH spikes ({int(spikes.sum())} from {spikes.shape[1]} neurons)")
    fired = np.flatnonzero(spikes.sum(0) > 0)
    silent = np.flatnonzero(spikes.sum(0) == 0)
    silent = silent[np.argsort(-V[:, silent].max(0))]        # the closest misses first
    shown = list(fired[:4]) + list(silent[:2])
    for j in shown:
        axes[2].plot(t, V[:, j], lw=1, label=f"neuron {j}")
    axes[2].axhline(20.0, color="grey", ls="--", lw=0.8, label=r"$V_{th}$ = 20 mV")
    axes[2].set(xlabel="time (ms)", ylabel="V (mV)", title="HH membrane potential")
    axes[2].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    """Train, evaluate and plot; return the summary as a dict (also written as JSON)."""
    args = parse_args(argv)
    if args.epochs is None:
        args.epochs = 2 if args.quick else 20
    if args.quick:
        args.steps = min(args.steps, 25)
    torch.set_num_threads(args.threads)
    # same seed, same thread count, same machine: the same numbers, run after run (the last
    # digits may differ on another CPU, whose vector units round float32 sums differently)
    torch.use_deterministic_algorithms(True)
    t0 = time.perf_counter()
    model, history, train_time, (X_test, y_test) = train(args)
    summary = {
        "seed": args.seed, "epochs": args.epochs, "hidden": args.hidden, "steps": args.steps,
        "dt_ms": args.dt_ms, "input_scale_uA": args.input_scale, "batch_size": args.batch_size,
        "lr": args.lr, "quick": args.quick, "threads": args.threads, "hh_path": args.hh_path,
        "test_accuracy": history["test_acc"][-1],
        "spikes_per_neuron_per_sample": history["spikes_per_neuron"][-1],
        "train_time_s": train_time, "history": history,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if not args.no_plots:
        plot_learning_curve(history, args.output_dir / "learning_curve.png")
        plot_membrane(model, X_test[0], int(y_test[0]), args, args.output_dir / "hh_membrane.png")
    summary["wall_time_s"] = time.perf_counter() - t0
    (args.output_dir / "train_digits.json").write_text(json.dumps(summary, indent=1))
    print(f"test accuracy {summary['test_accuracy']:.4f} | spikes per HH neuron per sample "
          f"{summary['spikes_per_neuron_per_sample']:.3f} | training {train_time:.1f} s, "
          f"wall {summary['wall_time_s']:.1f} s | seed {args.seed}")
    if not args.no_plots:
        print(f"figures in {args.output_dir}")
    return summary


if __name__ == "__main__":
    main()
