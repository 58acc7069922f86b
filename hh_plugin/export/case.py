"""Random test cases: a population with heterogeneous, noisy input currents."""

from __future__ import annotations

import numpy as np

from ..model import HHSpec, initial_state
from .record import HHRecord


def make_case(neurons: int = 1000, duration: float = 50.0, dt: float = 0.01, seed: int = 0,
              dtype: str = "float64", mean=(0.0, 20.0), noise: float = 3.0,
              spec: HHSpec = None) -> HHRecord:
    """A case record: ``spec`` (default ``HHSpec()``), initial state drawn with ``seed``
    (V uniform in the model's range, gates at steady state), and an input current (uA)
    ``I[k, j] = mu_j + noise * xi[k, j]`` with ``mu_j`` uniform in ``mean`` and ``xi``
    standard normal, for ``round(duration / dt)`` steps of ``dt`` ms."""
    if neurons < 1 or duration <= 0 or dt <= 0:
        raise ValueError("neurons, duration and dt must be positive")
    steps = int(round(duration / dt))
    if steps < 1:
        raise ValueError(f"duration {duration} ms is shorter than one step of {dt} ms")
    spec = HHSpec() if spec is None else spec
    rng = np.random.default_rng(seed)
    state = initial_state(spec.model, neurons, seed=seed)
    mu = rng.uniform(mean[0], mean[1], neurons)
    current = mu + noise * rng.standard_normal((steps, neurons))
    state = {k: v.astype(dtype) for k, v in state.items()}
    return HHRecord(spec=spec, dt=dt, state=state, time=0.0, input=current.astype(dtype),
                    input_t_start=0.0, provenance={"backend": "none",
                                                   "notes": f"make-case seed={seed}"})
