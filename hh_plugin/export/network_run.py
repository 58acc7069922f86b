"""Run a network file on a backend, and compare two runs population by population
(``hh-plugin run`` / ``crosscheck`` on network files)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import CrosscheckError

#: Backends of :func:`run_network`.
NETWORK_BACKENDS = ("torch", "brian2", "cpp_standalone", "neuron")


def run_network(spec, backend: str, steps: int, record: Sequence[str] = ("V", "v"),
                dtype=None, device=None, target: str = "numpy", integration=None,
                threads: int = 1) -> Optional[Dict]:
    """Run ``spec`` for ``steps`` steps; the ``results`` mapping of
    :func:`~hh_plugin.export.save_network` (spikes and the recorded variables that each
    population has; names no population has are skipped).

    ``'neuron'`` (:func:`hh_plugin.neuron.network.run_network`, ``integration`` and
    ``threads`` apply): under ``mpirun`` every rank calls this; rank 0 gets the results,
    the other ranks ``None``. Each spike is put in the step whose interval
    :math:`(t_k, t_{k+1}]` holds its time, and its time is stored with it (format 1.2)."""
    if backend not in NETWORK_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {NETWORK_BACKENDS}")
    known = spec.variables()
    record = [name for name in record if name in known]
    if backend == "neuron":
        from ..neuron.network import run_network as run_neuron

        run = run_neuron(spec, steps, integration=integration, threads=threads,
                         record=[name for name in record if name == "V"])
        return run.results(spec) if run.is_root else None
    if backend == "torch":
        import torch

        from ..torch.network import NetworkModule

        module = NetworkModule(spec, dtype=dtype or torch.float64, device=device)
        with torch.no_grad():
            out = module(steps=steps, record=tuple(record))
        return results_from_torch(out)
    import tempfile

    import brian2

    from ..brian2 import use_device
    from ..brian2.network import build_network

    brian2.start_scope()
    if backend == "brian2":
        with use_device("runtime", target=target):
            net = build_network(spec, steps, record=tuple(record))
            net.run()
            return results_from_brian2(net, steps)
    with tempfile.TemporaryDirectory() as directory:
        with use_device("cpp_standalone", directory=directory, build_on_run=False) as s:
            net = build_network(spec, steps, record=tuple(record))
            net.run()
            s.build(with_output=False)
        return results_from_brian2(net, steps)


def results_from_torch(out) -> Dict:
    """The ``results`` mapping of a torch ``NetworkOutput`` (one sample)."""
    spikes = {p: np.asarray(v.detach().cpu()) for p, v in out.spikes.items()}
    steps = next(iter(spikes.values())).shape[0] if spikes else 0
    traces = {p: {n: np.asarray(t.detach().cpu()) for n, t in d.items()}
              for p, d in out.traces.items()}
    return {"steps": steps, "spikes": spikes, "traces": traces}


def results_from_brian2(net, steps: Optional[int] = None) -> Dict:
    """The ``results`` mapping of a Brian2 ``BrianNetwork`` after its run (``steps``:
    default, the steps it has run)."""
    spec = net.spec
    if steps is None:
        import brian2

        steps = int(round(float(net.network.t / brian2.ms) / spec.dt))
    return {"steps": steps, "spikes": {p: net.spike_raster(p, steps) for p in spec.populations},
            "traces": {p: {v: net.trace(p, v) for v in net.recorded(p)}
                       for p in spec.populations}}


@dataclass
class PopulationComparison:
    """One population of two runs: spike counts, the first step whose spikes differ, the
    largest ``V`` difference, and, where both runs have spike times (format 1.2), whether
    every neuron spiked as often in both and the largest difference between the times of
    its spikes paired in order (``max_spike_dt``, ms; ``None`` when counts differ or a run
    has no times)."""

    name: str
    spikes_a: int
    spikes_b: int
    first_diverging_step: Optional[int]
    max_dV: Optional[float]
    variable: Optional[str]
    same_counts: bool = True
    max_spike_dt: Optional[float] = None
    timed: bool = False

    @property
    def identical_spikes(self) -> bool:
        return self.first_diverging_step is None


def _spike_time_difference(a, b, pop, steps):
    """``(same counts per neuron, max |t_a - t_b| over spikes paired in order)``."""
    size = a.spec.populations[pop].size
    (ka, ia), (kb, ib) = a.spikes[pop], b.spikes[pop]
    ta, tb = a.spike_times[pop], b.spike_times[pop]
    keep_a, keep_b = ka < steps, kb < steps
    ia, ta, ib, tb = ia[keep_a], ta[keep_a], ib[keep_b], tb[keep_b]
    if not np.array_equal(np.bincount(ia, minlength=size), np.bincount(ib, minlength=size)):
        return False, None
    # stable sort by neuron keeps each neuron's spikes in time order
    oa, ob = np.argsort(ia, kind="stable"), np.argsort(ib, kind="stable")
    diff = np.abs(ta[oa] - tb[ob])
    return True, float(diff.max()) if diff.size else 0.0


def compare_networks(a, b) -> List[PopulationComparison]:
    """Compare two :class:`~hh_plugin.export.NetworkRecord` runs of the same network:
    per population the spike counts, the first step whose spikes differ, the largest
    difference of ``V`` (or ``v``) where both recorded it, and the spike times where both
    have them."""
    for record, label in ((a, "first"), (b, "second")):
        if not record.has_results:
            raise CrosscheckError(f"the {label} file holds a network but no run")
    if list(a.spec.populations) != list(b.spec.populations) or any(
            a.spec.populations[p].size != b.spec.populations[p].size
            for p in a.spec.populations):
        raise CrosscheckError("the files hold different networks (populations or sizes "
                              "differ)")
    steps = min(a.steps, b.steps)
    rows = []
    for pop in a.spec.populations:
        ra, rb = a.raster(pop)[:steps], b.raster(pop)[:steps]
        differ = np.nonzero(np.any(ra != rb, axis=1))[0]
        dV = var = None
        for name in ("V", "v"):
            ta, tb = a.traces.get(pop, {}).get(name), b.traces.get(pop, {}).get(name)
            if ta is not None and tb is not None:
                dV, var = float(np.abs(ta[:steps] - tb[:steps]).max()), name
                break
        row = PopulationComparison(pop, int(ra.sum()), int(rb.sum()),
                                   int(differ[0]) if len(differ) else None, dV, var)
        if pop in a.spike_times and pop in b.spike_times:
            row.timed = True
            row.same_counts, row.max_spike_dt = _spike_time_difference(a, b, pop, steps)
        rows.append(row)
    return rows


def comparison_table(rows: List[PopulationComparison], backends=("a", "b")) -> str:
    head = (f"{'population':<14} {'spikes ' + str(backends[0]):>16} "
            f"{'spikes ' + str(backends[1]):>16} {'first diverging step':>21} "
            f"{'max |dV|':>10} {'max |dt spike| (ms)':>20}")
    lines = [head, "-" * len(head)]
    for r in rows:
        first = "none" if r.first_diverging_step is None else str(r.first_diverging_step)
        dV = "-" if r.max_dV is None else f"{r.max_dV:.2e}"
        if not r.timed:
            dt = "no times"
        elif not r.same_counts:
            dt = "counts differ"
        else:
            dt = f"{r.max_spike_dt:.2e}"
        lines.append(f"{r.name:<14} {r.spikes_a:>16d} {r.spikes_b:>16d} {first:>21} "
                     f"{dV:>10} {dt:>20}")
    return "\n".join(lines)


def plot_rasters(a, b, handle, labels=("a", "b")) -> None:
    """Side-by-side rasters of every population of two runs (PNG to ``handle``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, record, label in zip(axes, (a, b), labels):
        offset = 0
        for pop in record.spec.populations:
            k, i = record.spikes[pop]
            ax.plot(k * record.spec.dt, i + offset, "|", markersize=3, label=pop)
            offset += record.spec.populations[pop].size
        ax.set_title(str(label))
        ax.set_xlabel("time (ms)")
    axes[0].set_ylabel("neuron (populations stacked)")
    # outside the axes, so that it hides no spike
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False,
                   markerscale=3)
    fig.tight_layout()
    fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
