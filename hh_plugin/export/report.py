"""Text table and PNG plot of a :class:`~hh_plugin.export.crosscheck.CrosscheckResult`."""

from __future__ import annotations

import numpy as np

from .crosscheck import CrosscheckResult
from .population_file import HHRecord


def _shift(value: float) -> str:
    return "count differs" if np.isnan(value) else f"{value:.3g}"


def table(result: CrosscheckResult, worst: int = 10, backends=("", "")) -> str:
    """The crosscheck report: header, tolerances, worst neurons, first divergence, verdict."""
    r, tol = result, result.tolerances
    la, lb = (f"{label} ({b})" if b else label for label, b in zip(r.labels, backends))
    n = len(r.max_dV)
    lines = [f"crosscheck  A = {la}",
             f"            B = {lb}",
             f"{n} neurons {r.shape}, {len(r.time)} steps of {r.dt:g} ms "
             f"({r.time[0]:g} .. {r.time[-1]:g} ms), compared as {r.dtype}",
             f"tolerances: |dV| <= {tol.atol_V:g} mV, gate error <= {tol.atol_gate:g}, "
             f"spike shift <= {tol.spike_steps} step(s)"
             + ("" if tol.spike_atol is None else
                f", spike times inside the step within {tol.spike_atol:g} ms")]
    if r.spec_differences:
        lines.append("specifications DIFFER: " + "; ".join(r.spec_differences))
    else:
        lines.append("specifications: identical")
    total_a, total_b = int(r.spikes_a.sum()), int(r.spikes_b.sum())
    count_diff = int((r.spikes_a != r.spikes_b).sum())
    finite = r.max_shift[~np.isnan(r.max_shift)]
    lines.append(f"overall: max |dV| {r.max_dV.max():.3g} mV, max gate error "
                 f"{r.max_gate.max():.3g}, spikes A {total_a} / B {total_b}, "
                 f"{count_diff} neuron(s) with different counts, max spike shift "
                 f"{(finite.max() if len(finite) else 0.0):.3g} ms")
    if r.max_time_shift is not None:
        times = r.max_time_shift[~np.isnan(r.max_time_shift)]
        late = np.flatnonzero(r.max_time_shift > tol.spike_atol)
        lines.append(f"spike times (linear interpolation inside the step): largest "
                     f"difference {(times.max() if len(times) else 0.0):.3g} ms; "
                     + (f"first neuron outside {tol.spike_atol:g} ms: "
                        f"{r.neuron_name(late[0])}" if len(late) else
                        f"all within {tol.spike_atol:g} ms"))
    lines.append("")
    lines.append(f"neurons, worst first (failed first, then by max |dV|); {min(worst, n)} "
                 f"of {n} listed (--worst):")
    lines.append(f"{'neuron':>10} {'max|dV| mV':>12} {'max gate err':>13} {'spikes A':>9} "
                 f"{'spikes B':>9} {'shift ms':>13} {'diverges at':>16}  status")
    for j in r.worst[:worst]:
        first = r.first_step[j]
        where = "-" if first < 0 else f"step {first} ({r.time[first]:g} ms)"
        lines.append(f"{r.neuron_name(j):>10} {r.max_dV[j]:12.3g} {r.max_gate[j]:13.3g} "
                     f"{r.spikes_a[j]:9d} {r.spikes_b[j]:9d} {_shift(r.max_shift[j]):>13} "
                     f"{where:>16}  {'FAIL' if r.failed[j] else 'ok'}")
    lines.append("")
    if r.passed:
        lines.append("first divergence: none")
        lines.append(f"PASS: all {n} neurons within tolerance")
    else:
        failed = np.flatnonzero(r.failed)
        step = int(r.first_step[failed].min())
        who = failed[r.first_step[failed] == step]
        names = ", ".join(r.neuron_name(j) for j in who[:5])
        lines.append(f"first divergence: step {step} (t = {r.time[step]:g} ms), neuron(s) "
                     f"{names}")
        lines.append(f"FAIL: {len(failed)} of {n} neuron(s) exceed the tolerances; worst: "
                     f"neuron {r.neuron_name(r.worst[0])}")
    return "\n".join(lines)


def plot(result: CrosscheckResult, a: HHRecord, b: HHRecord, path, worst: int = 4) -> None:
    """PNG: V of A and B overlaid for the ``worst`` neurons, with |dV| on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    neurons = result.worst[:worst]
    steps = len(result.time)
    Va = np.asarray(a.traces["V"], np.float64).reshape(steps, -1)
    Vb = np.asarray(b.traces["V"], np.float64).reshape(steps, -1)
    fig, axes = plt.subplots(len(neurons), 2, figsize=(11, 2.4 * len(neurons)),
                             squeeze=False, sharex=True)
    for row, j in enumerate(neurons):
        ax, ax_d = axes[row]
        ax.plot(result.time, Va[:, j], lw=1.2, label=f"A {a.backend}")
        ax.plot(result.time, Vb[:, j], lw=0.8, ls="--", label=f"B {b.backend}")
        ax.set_ylabel(f"neuron {result.neuron_name(j)}\nV (mV)")
        diff = np.abs(Va[:, j] - Vb[:, j])
        ax_d.semilogy(result.time, np.maximum(diff, 1e-18), lw=0.8, color="C3")
        ax_d.axhline(result.tolerances.atol_V, color="k", ls=":", lw=0.8)
        ax_d.set_ylabel("|dV| (mV)")
        if row == 0:
            ax.legend(loc="upper right", fontsize=8)
            ax.set_title("membrane potential, worst neurons")
            ax_d.set_title(f"|V_A - V_B| (dotted: tolerance {result.tolerances.atol_V:g} mV)")
    axes[-1][0].set_xlabel("t (ms)")
    axes[-1][1].set_xlabel("t (ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
