"""The network step schedule of both backends: checks it with a tiny run, then draws it.

1. **Check.** One spike source emits one spike in step ``k0 = 5`` into one resting HH
   neuron through each synapse model with delay ``d`` in 0, 1, 3. The network is run in
   PyTorch (:class:`~hh_plugin.torch.network.NetworkModule`, float64) and in Brian2
   (:func:`~hh_plugin.brian2.network.build_network`, numpy target), each once with the
   weight and once with weight 0; the first step whose recorded ``V`` (the state after
   the step) differs is the first update that saw the spike. The table printed gives it
   per backend, which the docs state as :math:`k_0 + d`, and the largest :math:`|\\Delta V|`
   between the backends.
2. **Figure** ``docs/_static/network_timeline.png``: steps ``k .. k+2`` with, per
   backend, where spikes are detected, delivered, where the synaptic variable decays and
   the neuron is updated, for a spike of step ``k`` with delay ``d = 2``.

Run from the repository root: ``python docs/network_timeline.py`` (``--no-check`` draws
only).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUTPUT = ROOT / "docs" / "_static" / "network_timeline.png"
K0 = 5


def check(steps: int = 25):
    """Rows ``(synapse model, d, first changed step torch, Brian2, max |dV| mV)``."""
    import brian2
    import torch

    from hh_plugin.brian2.network import build_network
    from hh_plugin.network import (NetworkSpec, OneToOne, Population, Projection, SpikeTrains,
                                   current_pulse, exponential_conductance, exponential_current)
    from hh_plugin.torch.network import NetworkModule

    brian2.prefs.codegen.target = "numpy"

    def spec(synapse, delay, weight):
        return NetworkSpec([Population("T", 1, initial={"V": -65.0})],
                           [Projection("S", "T", OneToOne(weight), synapse, delay=delay)],
                           [SpikeTrains("S", 1, [K0], [0])], dt=0.01)

    def first_change(a, b):
        rows = np.nonzero(np.abs(a - b) > 0)[0]
        return int(rows[0]) if len(rows) else None

    rows = []
    for synapse, weight in ((current_pulse("p"), 5.0), (exponential_current("x", 2.0), 5.0),
                            (exponential_conductance("e", 5.0, 0.0), 0.05)):
        for delay in (0, 1, 3):
            v_torch, v_brian = [], []
            for w in (weight, 0.0):
                net = spec(synapse, delay, w)
                with torch.no_grad():
                    out = NetworkModule(net, dtype=torch.float64)(steps=steps, record=("V",))
                v_torch.append(out.traces["T"]["V"][:, 0].numpy())
                brian2.start_scope()
                b = build_network(net, steps=steps, record=("V",))
                b.run()
                v_brian.append(b.trace("T", "V")[:, 0])
            dv = max(float(np.abs(a - b).max()) for a, b in zip(v_torch, v_brian))
            rows.append((synapse.model.name, delay, first_change(*v_torch),
                         first_change(*v_brian), dv))
    return rows


# ------------------------------------------------------------------------------ figure
STEP_W = 6.0  # width of a step in the drawing

TORCH_SLOTS = (("deliver\nx += W z", "#f4c27a"), ("update\n(hh_step)", "#9cc3e6"),
               ("decay\n$x\\,e^{-\\Delta t/\\tau}$", "#c7e3b4"), ("detect\nz_k", "#f1a1a1"),
               ("store z_k\n(history)", "#eeeeee"))
BRIAN_SLOTS = (("d = 0\nSynapses", "#f4c27a"), ("update\n(+ decay)", "#9cc3e6"),
               ("pulse\nx = 0", "#c7e3b4"), ("threshold", "#f1a1a1"),
               ("d >= 1\nSynapses", "#d9b3e6"), ("resets,\n'end'", "#eeeeee"))


def _box(ax, x0, x1, y, text, color, h=0.62):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x0, y - h / 2), x1 - x0, h, boxstyle="round,pad=0.02",
                                fc=color, ec="0.3", lw=0.8))
    ax.text((x0 + x1) / 2, y, text, ha="center", va="center", fontsize=7)


def _centre(step, slot, n):
    return step * STEP_W + (slot + 0.5) * STEP_W / n


def draw(path: Path = OUTPUT):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = 3
    fig, ax = plt.subplots(figsize=(13, 4.4))
    y_torch, y_brian = 2.4, 0.6
    for s in range(steps):
        x = s * STEP_W
        label = "k" if s == 0 else f"k+{s}"
        nxt = f"k+{s + 1}"
        ax.axvline(x, color="0.6", lw=0.8, zorder=0)
        ax.text(x + STEP_W / 2, 3.55, f"step {label}:  $t_{{{label}}} \\to t_{{{nxt}}}$",
                ha="center", va="center", fontsize=9)
        for rows, y in ((TORCH_SLOTS, y_torch), (BRIAN_SLOTS, y_brian)):
            w = STEP_W / len(rows)
            for j, (text, color) in enumerate(rows):
                _box(ax, x + j * w + 0.06, x + (j + 1) * w - 0.06, y, text, color)
    ax.axvline(steps * STEP_W, color="0.6", lw=0.8, zorder=0)
    ax.text(-0.2, y_torch, "PyTorch\nNetworkModule", ha="right", va="center", fontsize=9,
            weight="bold")
    ax.text(-0.2, y_brian, "Brian2\nbuild_network", ha="right", va="center", fontsize=9,
            weight="bold")
    # a spike of step k with delay d = 2
    nt, nb = len(TORCH_SLOTS), len(BRIAN_SLOTS)
    red = dict(arrowstyle="->", color="crimson", lw=1.6)
    ax.annotate("", xy=(_centre(2, 0, nt), y_torch + 0.36), xytext=(_centre(0, 3, nt),
                y_torch + 0.36), arrowprops=dict(red, connectionstyle="arc3,rad=-0.18"))
    ax.text(1.5 * STEP_W, y_torch + 0.98, "spike of step k, delay d = 2: added to x at the "
            "start of step k+2, used by that step's update", color="crimson", fontsize=8.5,
            ha="center")
    ax.annotate("", xy=(_centre(1, 4, nb), y_brian - 0.36), xytext=(_centre(0, 3, nb),
                y_brian - 0.36), arrowprops=dict(red, connectionstyle="arc3,rad=0.25"))
    ax.annotate("", xy=(_centre(2, 1, nb), y_brian - 0.36), xytext=(_centre(1, 4, nb),
                y_brian - 0.36), arrowprops=dict(red, color="purple",
                                                 connectionstyle="arc3,rad=0.3"))
    ax.text(_centre(0, 3, nb) + 0.9, y_brian - 1.2, "Synapses delay = (d-1) dt: x += w in "
            "step k+1's 'synapses' slot (after its update and decay)", color="crimson",
            fontsize=8.5, ha="left")
    ax.text(_centre(2, 1, nb) + 0.5, y_brian - 0.6, "first used by the update of step k+2",
            color="purple", fontsize=8.5, ha="left")
    ax.text(0.0, 1.55, "Brian2 slots: d = 0 Synapses, update, pulse clearing and threshold of "
            "a population all run in 'groups' (order 10(r+1)+j, r = rank in spec.order); "
            "d >= 1 Synapses in 'synapses'", fontsize=7.5, color="0.25")
    ax.set_xlim(-2.4, steps * STEP_W + 0.1)
    ax.set_ylim(-0.8, 3.7)
    ax.axis("off")
    ax.set_title("One network step on both backends (each population, in spec.order)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-check", action="store_true", help="draw only")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    rows = []
    if not args.no_check:
        rows = check()
        print(f"spike of step k0 = {K0}; first step whose V differs (expected k0 + d)")
        print(f"{'synapse model':<26}{'d':>3}{'torch':>7}{'Brian2':>8}{'max|dV| mV':>13}")
        for name, d, t, b, dv in rows:
            print(f"{name:<26}{d:>3}{t!s:>7}{b!s:>8}{dv:>13.2e}")
        bad = [r for r in rows if not r[2] == r[3] == K0 + r[1]]
        if bad:
            raise SystemExit(f"the schedule differs from the documented one: {bad}")
    print(f"wrote {draw(args.output)}")
    return rows


if __name__ == "__main__":
    main()
