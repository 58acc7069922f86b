"""`HHRecord`: the in-memory content of one hh_plugin file (plugin units throughout)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..model import HHSpec
from .schema import FORMAT_VERSION


@dataclass(frozen=True, eq=False)
class HHRecord:
    """What :func:`hh_plugin.export.load` returns and :meth:`save` writes.

    Attributes:
        spec: the :class:`~hh_plugin.HHSpec` (parameters in mV, mS, uF).
        dt: integration step in ms, or ``None`` when the file does not fix one.
        state: ``{'V': mV, 'm': 1, 'h': 1, 'n': 1}`` arrays of one shape ``S`` (batch
            dimensions first, neurons last) and one float dtype, or ``None``.
        time: the time (ms) ``state`` belongs to.
        input: input current in uA, shape ``(T, *S)``; row ``k`` is applied during the
            step from ``input_t_start + k dt`` to ``input_t_start + (k+1) dt``.
        input_t_start: start (ms) of the step that uses input row 0.
        traces: ``{'time': (T,) ms, 'V'/'m'/'h'/'n': (T, *S), 'spikes': (T, *S) uint8}``;
            row ``k`` is the state after a step, at ``traces['time'][k]``, and
            ``spikes[k] = 1`` iff that step crossed ``V_th`` upwards.
        provenance: ``backend``, ``created`` (ISO 8601, UTC), ``versions`` and optional
            ``device``, ``source``, ``notes``.
        format_version: version of the file this was read from.
        path: the file this was read from (``None`` for a record made in memory).
    """

    spec: HHSpec
    dt: Optional[float] = None
    state: Optional[Dict[str, np.ndarray]] = None
    time: Optional[float] = None
    input: Optional[np.ndarray] = None
    input_t_start: Optional[float] = None
    traces: Optional[Dict[str, np.ndarray]] = None
    provenance: Dict[str, Any] = field(default_factory=dict)
    format_version: str = FORMAT_VERSION
    path: Optional[str] = None

    @property
    def shape(self) -> Optional[Tuple[int, ...]]:
        """Population shape ``S`` (batch dimensions, then neurons)."""
        if self.state is not None:
            return tuple(self.state["V"].shape)
        if self.traces is not None:
            name = next(k for k in self.traces if k != "time")
            return tuple(self.traces[name].shape[1:])
        if self.input is not None:
            return tuple(self.input.shape[1:])
        return None

    @property
    def dtype(self) -> Optional[np.dtype]:
        """Float dtype of the state (else of the traces, else of the input)."""
        if self.state is not None:
            return self.state["V"].dtype
        if self.traces is not None:
            for name, values in self.traces.items():
                if name not in ("time", "spikes"):
                    return values.dtype
        if self.input is not None:
            return self.input.dtype
        return None

    @property
    def n_steps(self) -> Optional[int]:
        """Number of trace rows (else input rows), or ``None``."""
        if self.traces is not None:
            return len(self.traces["time"])
        if self.input is not None:
            return len(self.input)
        return None

    @property
    def backend(self) -> str:
        return self.provenance.get("backend", "none")

    def save(self, path, *, overwrite: bool = False, **provenance) -> "Path":
        """Write this record with :func:`hh_plugin.export.save` (provenance kept unless given)."""
        from .io import save

        prov = {k: v for k, v in self.provenance.items()
                if k in ("device", "source", "notes")}
        prov.update({k: v for k, v in provenance.items() if k != "backend"})
        return save(path, self.spec, self.state, time=self.time, dt=self.dt, input=self.input,
                    input_t_start=self.input_t_start, traces=self.traces,
                    backend=provenance.get("backend", self.backend), overwrite=overwrite,
                    provenance=prov)
