"""The README's Validation figures from a fresh run, with the CPU model and load.

1. Each backend against the reference files (``brainpy.state.HH`` in float64,
   ``tests/data/``, see ``tests/data/REFERENCE_PROVENANCE.md``): max |dV| (mV), max gate
   error and whether every spike falls on the reference's step, at dt = 0.1 and 0.01 ms.
2. Torch against Brian2 (numpy target) on 1,000 neurons with per-neuron ``gL`` and ``ENa``
   and random piecewise-constant input (the case of ``tests/test_cross_backend.py``).
3. Gradients (torch float64): the surrogate spike-count loss and a smooth V loss against
   the reference gradient file, relative error.

The tests check these with tolerances (1e-6 mV, 1e-9, identical spike steps); this script
prints the measured values. Their last digits depend on the CPU (vector units and libm
round differently), so the README states the machine beside them.

    python benchmarks/validation.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.torch import HH, initial_state  # noqa: E402
from hh_plugin.torch.functional import HHState  # noqa: E402
from test_cross_backend import _case, _run_brian2, _run_torch  # noqa: E402
from timing import cpu_model  # noqa: E402  (benchmarks/timing.py)

DATA = ROOT / "tests" / "data"
REFERENCES = {0.1: DATA / "brainpy_hh_const_dt0.1_f64.npz",
              0.01: DATA / "brainpy_hh_const_dt0.01_f64_30ms.npz"}


def errors(result: dict, expected: dict):
    """max |dV| (mV), max gate error, identical spike steps."""
    dV = float(np.abs(np.asarray(result["V"], np.float64) - expected["V"]).max())
    gates = max(float(np.abs(np.asarray(result[g], np.float64) - expected[g]).max())
                for g in "mhn")
    return dV, gates, bool(np.array_equal(result["spike"], expected["spike"]))


def run_torch_reference(ref: dict, dtype) -> dict:
    module = HH(p=HHSpec(), dt=float(ref["dt"]) * 1e-3, record_states=True)
    state = HHState(*(torch.tensor(ref[k + "0"], dtype=dtype) for k in "Vmhn"))
    with torch.no_grad():
        spikes, states = module(torch.tensor(ref["I"], dtype=dtype), state)
    return {"V": states.V.double().numpy(), **{g: getattr(states, g).double().numpy()
                                               for g in "mhn"}, "spike": spikes.numpy()}


def run_brian2_reference(ref: dict, target: str) -> dict:
    import brian2 as b2

    from hh_plugin.brian2 import neuron_group

    b2.start_scope()
    b2.prefs.codegen.target = target
    dt = float(ref["dt"])
    steps, n = ref["V"].shape
    group = neuron_group(n, HHSpec(), current=ref["I"][0] * b2.uA, V_init=ref["V0"],
                         dt=dt * b2.ms)
    group.m, group.h, group.n = ref["m0"], ref["h0"], ref["n0"]
    monitor = b2.StateMonitor(group, ["V", "m", "h", "n"], record=True, when="end")
    spikes = b2.SpikeMonitor(group)
    b2.Network(group, monitor, spikes).run(steps * dt * b2.ms, namespace={})
    raster = np.zeros((steps, n))
    raster[np.rint(np.asarray(spikes.t / b2.ms) / dt).astype(int), np.asarray(spikes.i)] = 1
    return {"V": np.asarray(monitor.V / b2.mV).T, "m": monitor.m.T, "h": monitor.h.T,
            "n": monitor.n.T, "spike": raster}


def gradient_errors() -> dict:
    """Relative error of the two reference gradients (torch float64, default path)."""
    with np.load(DATA / "brainpy_hh_grad_f64.npz") as data:
        ref = {k: data[k] for k in data.files}
    out = {}
    for name, loss_of in (("spike count", lambda z, s: z.sum()),
                          ("smooth V", lambda z, s: 1e-3 * s.V.sum())):
        I = torch.tensor(ref["I"], dtype=torch.float64, requires_grad=True)
        steps = int(ref["steps"])
        module = HH(p=HHSpec(), dt=float(ref["dt"]) * 1e-3, record_states=True)
        s0 = initial_state(module.p, (5,), V=torch.tensor(ref["V0"]), dtype=torch.float64)
        spikes, states = module(I.expand(steps, 5), s0)
        (grad,) = torch.autograd.grad(loss_of(spikes, states), I)
        key = "grad_spike_sum_wrt_I" if name == "spike count" else "grad_V_sum_scaled_wrt_I"
        expected = ref[key]
        out[name] = float(np.abs(grad.numpy() - expected).max() / np.abs(expected).max())
    return out


def main() -> None:
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, torch {torch.__version__}")
    refs = {}
    for dt, path in REFERENCES.items():
        with np.load(path) as data:
            refs[dt] = {k: data[k] for k in data.files}
    rows = [("torch float64", lambda r: run_torch_reference(r, torch.float64)),
            ("torch float32", lambda r: run_torch_reference(r, torch.float32))]
    try:
        import brian2  # noqa: F401

        rows += [(f"Brian2 {target} target", lambda r, t=target: run_brian2_reference(r, t))
                 for target in ("numpy", "cython")]
    except ImportError:
        print("Brian2 is not installed: its rows are left out")
    print("\n| backend | dt (ms) | max \\|dV\\| (mV) | max gate error | spike steps |")
    print("| --- | --- | --- | --- | --- |")
    for name, run in rows:
        results = [errors(run(refs[dt]), refs[dt]) for dt in REFERENCES]
        dts = " / ".join(f"{dt:g}" for dt in REFERENCES)
        dV = " / ".join(f"{r[0]:.2g}" for r in results)
        gates = " / ".join(f"{r[1]:.2g}" for r in results)
        same = "identical" if all(r[2] for r in results) else "DIFFER"
        print(f"| {name} | {dts} | {dV} | {gates} | {same} |")
    if len(rows) > 2:
        spec, current = _case()
        a, b = _run_torch(spec, current), _run_brian2(spec, current, "numpy")
        dV, gates, same = errors(a, b)
        print(f"\ntorch against Brian2 (numpy target), 1,000 neurons, 20 ms at 0.01 ms: "
              f"{int(a['spike'].sum()):,} spikes, {'identical' if same else 'DIFFERENT'} "
              f"steps, max |dV| {dV:.2g} mV, gate error {gates:.2g}")
    grads = gradient_errors()
    print("gradients against the reference file (relative): "
          + ", ".join(f"{name} {error:.1g}" for name, error in grads.items()))


if __name__ == "__main__":
    main()
