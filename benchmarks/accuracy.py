"""Spike-time error against converged references, per model, method and dt; cost per accuracy.

For every shipped model at two constant drives, one neuron each, 100 ms from V = -65 mV
with the gates at steady state:

* the converged reference: scipy's DOP853 at rtol = atol = 1e-12 with event location of
  the threshold crossing (:func:`hh_plugin.model.reference.converged_spike_times`);
* each method (``exponential_euler``, ``rk4``) at a range of dt on the torch backend
  (fused C++ kernel, float64; Brian2 gives the same spike times to 1e-9 ms, see
  tests/test_spike_times.py), its spike times as every backend reports them (linear
  interpolation of the threshold crossing, :mod:`hh_plugin.model.spike_times`);
* the largest spike-time difference over both drives ("reported"), or the spike counts
  where they differ, and the same with a cubic Hermite interpolation through the step's
  end values and derivatives ("method": the integrator's own error, without the
  interpolation's O(dt^2)); the order fitted (least squares, log-log) to each column over
  the dt where the counts agree;
* the fused kernel's throughput per method (float64, N = 1000, T = 1000, best of 3) and,
  for a target error of 0.01 ms, the cheapest (method, dt) of the grid.

    python benchmarks/accuracy.py                 # tables
    python benchmarks/accuracy.py --plot docs/_static/accuracy.png
    python benchmarks/accuracy.py --stability     # RK4 at and above each max_dt

This is a benchmark, not a test (tests/test_accuracy.py is the CI check).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.model import (HODGKIN_HUXLEY, MORRIS_LECAR, TRAUB_MILES,  # noqa: E402
                             WANG_BUZSAKI)
from hh_plugin.model.reference import converged_spike_times, vector_field  # noqa: E402
from hh_plugin.torch import initial_state, spike_times  # noqa: E402
from hh_plugin.torch.functional.parameters import parameters_type  # noqa: E402
from hh_plugin.torch.fused import hh_sequence  # noqa: E402
from timing import best_of, cpu_model  # noqa: E402  (benchmarks/timing.py)

DURATION_MS = 100.0
TARGET_MS = 0.01
#: model, its two drives (uA), the dt grid (ms)
CASES = [
    (HODGKIN_HUXLEY, (10.0, 20.0), (0.0025, 0.005, 0.01, 0.02, 0.025, 0.04, 0.05, 0.1)),
    (WANG_BUZSAKI, (1.0, 5.0), (0.0025, 0.005, 0.01, 0.02, 0.025, 0.04, 0.05, 0.1)),
    (TRAUB_MILES, (5e-4, 2e-3), (0.0025, 0.005, 0.01, 0.02, 0.025, 0.04, 0.05, 0.1)),
    (MORRIS_LECAR, (150.0, 200.0), (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0)),
]
METHODS = ("exponential_euler", "rk4")


def _hermite_times(model, V, states, index, dt, drive, V_th):
    """Crossing times by a cubic Hermite interpolation through the two ends of each
    spiking step (values and derivatives of V), by bisection."""
    f = vector_field(model, drive)
    out = []
    for k in index[:, 0]:
        y0, y1 = states[:, k], states[:, k + 1]
        v0, v1 = y0[0], y1[0]
        d0, d1 = f(0.0, y0)[0] * dt, f(0.0, y1)[0] * dt

        def h(u):
            return ((2 * u**3 - 3 * u**2 + 1) * v0 + (u**3 - 2 * u**2 + u) * d0
                    + (-2 * u**3 + 3 * u**2) * v1 + (u**3 - u**2) * d1 - V_th)

        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if h(mid) < 0 else (lo, mid)
        out.append((k + 0.5 * (lo + hi)) * dt)
    return np.array(out)


def simulate(model, method, drives, dt, path="auto"):
    """Per drive: (reported spike times, Hermite spike times), torch float64 (the fused
    kernel on ``path='auto'``)."""
    spec = HHSpec(model=model, method=method)
    p = parameters_type(model).from_spec(spec)
    s0 = initial_state(p, (len(drives),), V=-65.0, dtype=torch.float64)
    steps = int(round(DURATION_MS / dt))
    current = torch.tensor(drives, dtype=torch.float64).expand(steps, -1).contiguous()
    with torch.no_grad():
        z, rec = hh_sequence(current, s0, p, dt * 1e-3, record_states=True, path=path)
    index, times = spike_times(z, rec.V, s0.V, spec, dt * 1e-3)
    V_th = float(getattr(p, model.threshold))
    out = []
    for j, drive in enumerate(drives):
        mine = index[:, 1] == j
        full = np.stack([np.concatenate([[float(getattr(s0, n)[j])],
                                         getattr(rec, n)[:, j].numpy()])
                         for n in model.state_names])
        out.append((times[mine], _hermite_times(model, None, full, index[mine], dt, drive,
                                                V_th)))
    return out


def _error(results, references, which):
    worst = 0.0
    for res, ref in zip(results, references):
        times = res[which]
        if len(times) != len(ref):
            return None
        worst = max(worst, float(np.abs(times - ref).max()) if len(ref) else 0.0)
    return worst


def _order(dts, errors):
    pts = [(math.log(d), math.log(e)) for d, e in zip(dts, errors)
           if e is not None and e > 1e-8]
    if len(pts) < 2:
        return float("nan")
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def throughput(model, method, drive, N=1000, T=1000, dt=0.01, repeats=3):
    spec = HHSpec(model=model, method=method)
    p = parameters_type(model).from_spec(spec)
    s0 = initial_state(p, (N,), V=-65.0, dtype=torch.float64)
    current = torch.full((T, N), drive, dtype=torch.float64)

    def run():
        with torch.no_grad():
            hh_sequence(current, s0, p, dt * 1e-3, path="fused_cpp")

    return N * T / best_of(run, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", help="write a log-log plot of the errors to this file")
    parser.add_argument("--stability", action="store_true",
                        help="only: RK4 at and above each model's max_dt (the refusal "
                             "lifted on a copy of the model), the measurements behind it")
    args = parser.parse_args()
    if args.stability:
        return stability()
    print(f"CPU: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{DURATION_MS:g} ms per run; errors in ms, max over both drives; "
          f"'n/m' = spike counts differ (method/reference)\n")
    table = {}
    for model, drives, dts in CASES:
        t0 = time.perf_counter()
        references = [converged_spike_times(model, I, DURATION_MS) for I in drives]
        counts = ", ".join(f"{I:g} uA: {len(r)}" for I, r in zip(drives, references))
        print(f"## {model.name} (reference spikes {counts}; DOP853 "
              f"{time.perf_counter() - t0:.1f} s)")
        print(f"{'dt (ms)':>9} | " + " | ".join(f"{m + ' reported':>26} | {'method':>9}"
                                                 for m in METHODS))
        rows = {m: [] for m in METHODS}
        for dt in dts:
            cells = []
            for method in METHODS:
                if dt > model.max_step(method) * (1 + 1e-9):
                    rows[method].append((dt, None, None))
                    cells.append(f"{'above max_dt':>26} | {'':>9}")
                    continue
                results = simulate(model, method, drives, dt)
                reported, own = _error(results, references, 0), _error(results, references, 1)
                rows[method].append((dt, reported, own))
                if reported is None:
                    n = "+".join(str(len(r[0])) for r in results)
                    m = "+".join(str(len(r)) for r in references)
                    cells.append(f"{n + '/' + m + ' spikes':>26} | {'':>9}")
                else:
                    cells.append(f"{reported:>26.2e} | {own:>9.2e}")
            print(f"{dt:>9g} | " + " | ".join(cells))
        for method in METHODS:
            ok = [(d, r, o) for d, r, o in rows[method] if r is not None]
            d_, r_, o_ = zip(*ok) if ok else ((), (), ())
            print(f"  {method}: fitted order reported {_order(d_, r_):.2f}, "
                  f"method {_order(d_, o_):.2f} (over dt {', '.join(f'{d:g}' for d in d_)})")
        table[model.name] = rows
        print()

    print(f"## Cost per accuracy: target {TARGET_MS} ms (reported spike times, both drives)")
    print(f"{'model':>15} | {'method':>17} | {'largest dt':>10} | {'neuron-steps/s':>14} | "
          f"{'simulated neuron-s per s':>24}")
    for model, drives, _ in CASES:
        for method in METHODS:
            rows = [(d, r) for d, r, _ in table[model.name][method] if r is not None]
            ok = [d for d, r in rows if r <= TARGET_MS]
            rate = throughput(model, method, drives[0])
            if ok:
                dt, note = max(ok), ""
            elif len(rows) >= 2:  # first order: extrapolate from the smallest dt measured
                d0, r0 = min(rows)
                dt = d0 * (TARGET_MS / r0) ** (1 / _order(*zip(*rows)))
                note = " (extrapolated)"
            else:
                print(f"{model.name:>15} | {method:>17} | {'none':>10} | {rate:>14.3g} | -")
                continue
            print(f"{model.name:>15} | {method:>17} | {dt:>10.2g} | {rate:>14.3g} | "
                  f"{rate * dt * 1e-3:>24.3g}{note}")
    if args.plot:
        _plot(table, args.plot)


#: dt (ms) at and above each model's RK4 limit for ``--stability``
STABILITY_DTS = {"hodgkin_huxley": (0.05, 0.075, 0.1), "wang_buzsaki": (0.05, 0.075, 0.1, 0.2),
                 "traub_miles": (0.04, 0.06, 0.075), "morris_lecar": (1.0,)}


def stability():
    """RK4 at and above ``max_step('rk4')``: spike counts and errors (torch naive loop; the
    model's RK4 limit is lifted for the measurement and restored after it)."""
    print(f"CPU: {cpu_model()}; RK4 above its limit, {DURATION_MS:g} ms, torch naive float64")
    for model, drives, _ in CASES:
        references = [converged_spike_times(model, I, DURATION_MS) for I in drives]
        limit, declared = model.max_step("rk4"), model.max_dt_by_method
        for dt in STABILITY_DTS[model.name]:
            object.__setattr__(model, "max_dt_by_method", (("rk4", 10.0),))
            try:
                results = simulate(model, "rk4", drives, dt, path="naive")
            finally:
                object.__setattr__(model, "max_dt_by_method", declared)
            cells = []
            for I, (times, _), ref in zip(drives, results, references):
                error = (f"{np.abs(times - ref).max():.2e} ms" if len(times) == len(ref)
                         else "-")
                cells.append(f"{I:g} uA: {len(times)}/{len(ref)} spikes, {error}")
            print(f"{model.name:>15} (max_dt {limit:g}) dt {dt:g}: " + "; ".join(cells))


def _plot(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, len(table), figsize=(4 * len(table), 3.6), sharey=True)
    for ax, (name, rows) in zip(axes, table.items()):
        for method, style in zip(METHODS, ("o-", "s-")):
            ok = [(d, r, o) for d, r, o in rows[method] if r is not None]
            if not ok:
                continue
            d, r, o = map(np.array, zip(*ok))
            ax.loglog(d, r, style, label=f"{method} (reported, order {_order(d, r):.1f})")
            ax.loglog(d, np.maximum(o, 1e-9), style, alpha=0.4, mfc="none",
                      label=f"{method} (method, order {_order(d, o):.1f})")
        ax.axhline(TARGET_MS, color="grey", lw=0.8, ls=":")
        ax.set_title(name)
        ax.set_xlabel("dt (ms)")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=6)
    axes[0].set_ylabel("max spike-time error (ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


if __name__ == "__main__":
    main()
