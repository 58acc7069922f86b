"""Random test cases: a heterogeneous population with noisy input currents."""

from __future__ import annotations

import numpy as np

from ..model import HHSpec, initial_state
from .population_file import HHRecord

#: Conductances drawn per neuron by :func:`make_case` (uniform within +-SPREAD of the default).
VARIED = ("gNa", "gK", "gL")
SPREAD = 0.1


def make_case(neurons: int = 1000, duration: float = 50.0, dt: float = 0.01, seed: int = 0,
              dtype: str = "float64", mean=(0.0, 20.0), noise: float = 3.0,
              spec: HHSpec = None, heterogeneous: bool = True) -> HHRecord:
    """A case record for ``round(duration / dt)`` steps of ``dt`` ms, every draw seeded
    by ``seed``:

    - ``spec``: the given one, else ``HHSpec()`` with, when ``heterogeneous``, per-neuron
      ``gNa``, ``gK``, ``gL`` each uniform within +-10% of the model default (drawn with
      ``numpy.random.default_rng([seed, 1])``, so state and input are the same either way);
    - the initial state: V uniform in the model's range, gates at steady state;
    - the input current (uA) ``I[k, j] = mu_j + noise * xi[k, j]``, ``mu_j`` uniform in
      ``mean`` and ``xi`` standard normal (``numpy.random.default_rng(seed)``).
    """
    if neurons < 1 or duration <= 0 or dt <= 0:
        raise ValueError("neurons, duration and dt must be positive")
    steps = int(round(duration / dt))
    if steps < 1:
        raise ValueError(f"duration {duration} ms is shorter than one step of {dt} ms")
    rng = np.random.default_rng(seed)
    if spec is None:
        spec = HHSpec()
        if heterogeneous:  # a stream of its own: state and input do not depend on it
            draw = np.random.default_rng([seed, 1]).uniform
            defaults = spec.model.defaults
            spec = spec.replace(**{name: defaults[name] * draw(1 - SPREAD, 1 + SPREAD, neurons)
                                   for name in VARIED})
    state = initial_state(spec.model, neurons, seed=seed)
    mu = rng.uniform(mean[0], mean[1], neurons)
    current = mu + noise * rng.standard_normal((steps, neurons))
    state = {k: v.astype(dtype) for k, v in state.items()}
    varied = "gNa, gK, gL per neuron" if heterogeneous and np.ndim(spec.parameters["gNa"]) else \
        "parameters as given"
    return HHRecord(spec=spec, dt=dt, state=state, time=0.0, input=current.astype(dtype),
                    input_t_start=0.0,
                    provenance={"backend": "none",
                                "notes": f"make-case seed={seed} ({varied})"})
