r"""Compare two runs (result files) neuron by neuron; a text table and an optional PNG.

Per neuron: max :math:`|\Delta V|` (mV) over all rows, max gate error over ``m, h, n``,
spike counts, the largest spike-time shift (ms, when the counts agree) and the first row
where the runs diverge (:math:`|\Delta V|` or a gate error above tolerance, or a spike
that is not matched within the spike tolerance).

Default tolerances depend on the lower precision of the two runs' traces:

========  ==============  ==========  ================
dtype     ``atol_V`` mV   ``atol_gate``  ``spike_steps``
========  ==============  ==========  ================
float64   1e-6            1e-8        0 (identical rows)
float32   0.5             1e-3        1
float16   5.0             1e-2        2
========  ==============  ==========  ================

Float32 runs drift away from float64 after a few spikes (the HH upstroke amplifies
round-off), so the float32 defaults are meant for short runs and for catching model or
parameter mismatches, not round-off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .errors import CrosscheckError
from .population_file import HHRecord

GATES = ("m", "h", "n")


@dataclass(frozen=True)
class Tolerances:
    """``atol_V`` in mV, ``atol_gate`` dimensionless, ``spike_steps`` in steps,
    ``spike_atol`` in ms (or ``None``)."""

    atol_V: float
    atol_gate: float
    spike_steps: int
    #: ms: compare spike times inside the step (:func:`spike_times`), ``None``: steps only
    spike_atol: Optional[float] = None

    @classmethod
    def for_dtype(cls, dtype) -> "Tolerances":
        bits = np.dtype(dtype).itemsize * 8
        if bits >= 64:
            return cls(1e-6, 1e-8, 0)
        if bits >= 32:
            return cls(0.5, 1e-3, 1)
        return cls(5.0, 1e-2, 2)


@dataclass
class CrosscheckResult:
    """Per-neuron comparison (neurons flattened in C order; ``shape`` gives the layout)."""

    shape: tuple
    dt: float
    time: np.ndarray
    tolerances: Tolerances
    dtype: np.dtype
    max_dV: np.ndarray
    max_gate: np.ndarray
    spikes_a: np.ndarray
    spikes_b: np.ndarray
    max_shift: np.ndarray          # ms; nan where the counts differ
    first_step: np.ndarray         # first diverging row per neuron, -1 if none
    max_time_shift: Optional[np.ndarray] = None  # ms, sub-step times; nan: counts differ
    spec_differences: List[str] = field(default_factory=list)
    labels: tuple = ("A", "B")

    @property
    def failed(self) -> np.ndarray:
        """Boolean per neuron: some tolerance exceeded."""
        return self.first_step >= 0

    @property
    def passed(self) -> bool:
        return not self.failed.any()

    @property
    def worst(self) -> np.ndarray:
        """Neuron indices, worst first: failed neurons first, then by max |dV|, then by
        max gate error (the order of the report's table, so its max |dV| column falls)."""
        return np.lexsort((-self.max_gate, -self.max_dV, ~self.failed))

    def neuron_name(self, index: int) -> str:
        if len(self.shape) == 1:
            return str(int(index))
        return str(tuple(int(i) for i in np.unravel_index(index, self.shape)))


def _flat(values: np.ndarray, steps: int) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(steps, -1)


def _spec_differences(a: HHRecord, b: HHRecord) -> List[str]:
    out = []
    if a.spec.model.name != b.spec.model.name:
        return [f"model {a.spec.model.name} vs {b.spec.model.name}"]
    pa, pb = a.spec.parameters, b.spec.parameters
    for name in pa:
        va, vb = np.asarray(pa[name]), np.asarray(pb[name])
        if va.shape == vb.shape and np.array_equal(va, vb):
            continue
        va, vb = np.broadcast_arrays(va, vb)
        if va.ndim == 0:
            out.append(f"{name}: {float(va)!r} vs {float(vb)!r}")
            continue
        bad = np.flatnonzero(va != vb)
        shown = ", ".join(f"neuron {i}: {float(va[i])!r} vs {float(vb[i])!r}" for i in bad[:3])
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        out.append(f"{name}: {shown}{more}")
    for key in ("spk_reset", "alpha", "width", "V_scale"):
        if getattr(a.spec, key) != getattr(b.spec, key):
            out.append(f"{key}: {getattr(a.spec, key)!r} vs {getattr(b.spec, key)!r}")
    if not np.array_equal(np.asarray(a.spec.V_reset, dtype=object),
                          np.asarray(b.spec.V_reset, dtype=object)):
        out.append("V_reset differs")
    return out


def spike_times(record: HHRecord) -> List[np.ndarray]:
    r"""Per neuron (flattened in C order), the times (ms) of its spikes inside their steps,
    from the record's ``V`` and ``spikes`` traces with the formula every backend uses
    (:func:`hh_plugin.model.spike_times.crossing_times`: the threshold crossing of the
    straight line between :math:`V` at the two ends of the step). A soft reset is undone
    for the crossing (:math:`V_{th} - V_{reset}` added back); a spike in the first row,
    whose :math:`V` before the step the traces do not hold, is placed at the step's end."""
    from ..model.spike_times import crossing_times

    if record.spec.V_reset is not None and record.spec.spk_reset == "hard":
        raise CrosscheckError(f"{record.path or 'a run'}: spike times inside the step need "
                              f"V before the reset, which a hard reset overwrites; compare "
                              f"steps (--spike-steps) instead")
    steps = len(record.traces["time"])
    V = _flat(record.traces["V"], steps)
    z = record.traces["spikes"].reshape(steps, -1).astype(bool)
    dt = float(record.dt if record.dt is not None else np.diff(record.traces["time"][:2])[0])
    V_th = np.broadcast_to(np.asarray(record.spec.parameters[record.spec.model.threshold],
                                      dtype=np.float64), V.shape[1:])
    undo = 0.0
    if record.spec.V_reset is not None:  # soft reset: V_after = V_crossing - (V_th - V_reset)
        undo = np.broadcast_to(V_th - np.asarray(record.spec.V_reset, dtype=np.float64),
                               V.shape[1:])
    out = []
    for j in range(V.shape[1]):
        rows = np.flatnonzero(z[:, j])
        start = record.traces["time"][0] - dt  # the start of the first row's step
        times = np.full(len(rows), start + dt)  # a spike in row 0: the step's end
        later = rows > 0
        after = V[rows[later], j] + (undo[j] if np.ndim(undo) else undo)
        times[later] = crossing_times(rows[later], V[rows[later] - 1, j], after, V_th[j], dt,
                                      t0=start)
        out.append(times)
    return out


def compare(a: HHRecord, b: HHRecord, tolerances: Optional[Tolerances] = None,
            **overrides) -> CrosscheckResult:
    """Compare the traces of two result records.

    ``tolerances`` defaults to :meth:`Tolerances.for_dtype` of the lower-precision run;
    keyword ``overrides`` (``atol_V=``, ``atol_gate=``, ``spike_steps=``, ``spike_atol=``)
    replace fields. With ``spike_atol`` (ms) the spikes' times inside their steps
    (:func:`spike_times`) must also agree within it, pair by pair.
    Raises :class:`CrosscheckError` when the runs cannot be compared.
    """
    for rec, label in ((a, "A"), (b, "B")):
        if rec.traces is None or "V" not in rec.traces:
            raise CrosscheckError(f"{rec.path or label}: no V traces to compare "
                                  f"(is it a result of 'hh-plugin run'?)")
    if a.shape != b.shape:
        raise CrosscheckError(f"population shapes differ: {a.shape} vs {b.shape}")
    ta, tb = a.traces["time"], b.traces["time"]
    if len(ta) != len(tb) or not np.allclose(ta, tb, rtol=0, atol=1e-9 * max(1.0, ta[-1])):
        raise CrosscheckError(f"time axes differ: {len(ta)} rows {ta[0]}..{ta[-1]} ms vs "
                              f"{len(tb)} rows {tb[0]}..{tb[-1]} ms")
    dtype = min((a.traces["V"].dtype, b.traces["V"].dtype), key=lambda d: d.itemsize)
    tol = tolerances or Tolerances.for_dtype(dtype)
    if overrides:
        tol = Tolerances(**{**tol.__dict__, **{k: v for k, v in overrides.items()
                                              if v is not None}})
    steps = len(ta)
    dV = np.abs(_flat(a.traces["V"], steps) - _flat(b.traces["V"], steps))
    bad = dV > tol.atol_V
    gate_err = np.zeros_like(dV)
    for gate in GATES:
        if gate in a.traces and gate in b.traces:
            gate_err = np.maximum(gate_err, np.abs(_flat(a.traces[gate], steps)
                                                   - _flat(b.traces[gate], steps)))
    bad |= gate_err > tol.atol_gate
    n = dV.shape[1]
    counts_a = counts_b = np.zeros(n, dtype=np.int64)
    shift = np.zeros(n)
    if "spikes" in a.traces and "spikes" in b.traces:
        za = a.traces["spikes"].reshape(steps, -1).astype(bool)
        zb = b.traces["spikes"].reshape(steps, -1).astype(bool)
        counts_a, counts_b = za.sum(0), zb.sum(0)
        for j in np.flatnonzero((za != zb).any(0)):
            ra, rb = np.flatnonzero(za[:, j]), np.flatnonzero(zb[:, j])
            k = min(len(ra), len(rb))
            diff = np.abs(ra[:k] - rb[:k])
            shift[j] = diff.max() * a.dt if k and len(ra) == len(rb) else (
                np.nan if len(ra) != len(rb) else 0.0)
            mismatch = np.flatnonzero(diff > tol.spike_steps)
            rows = [min(ra[i], rb[i]) for i in mismatch[:1]]
            if len(ra) != len(rb):
                rows.append((ra if len(ra) > k else rb)[k])
            for row in rows:
                bad[row, j] = True
    time_shift = None
    if tol.spike_atol is not None and "spikes" in a.traces and "spikes" in b.traces:
        time_shift = np.zeros(n)
        rows_a = [np.flatnonzero(c) for c in za.T]
        rows_b = [np.flatnonzero(c) for c in zb.T]
        for j, (ta_j, tb_j) in enumerate(zip(spike_times(a), spike_times(b))):
            if len(ta_j) != len(tb_j):
                time_shift[j] = np.nan  # the count mismatch is marked above
                continue
            if not len(ta_j):
                continue
            diff = np.abs(ta_j - tb_j)
            time_shift[j] = diff.max()
            outside = np.flatnonzero(diff > tol.spike_atol)
            if len(outside):
                i = outside[0]
                bad[min(rows_a[j][i], rows_b[j][i]), j] = True
    first = np.where(bad.any(0), bad.argmax(0), -1)
    return CrosscheckResult(
        shape=tuple(a.shape), dt=float(a.dt if a.dt is not None else ta[1] - ta[0]),
        time=ta, tolerances=tol, dtype=np.dtype(dtype), max_dV=dV.max(0),
        max_gate=gate_err.max(0), spikes_a=counts_a, spikes_b=counts_b, max_shift=shift,
        first_step=first, max_time_shift=time_shift,
        spec_differences=_spec_differences(a, b),
        labels=(str(a.path or "A"), str(b.path or "B")))
