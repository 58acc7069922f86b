r"""External inputs of a network, identical in both backends.

- :class:`CurrentInput`: a current (uA) into a population, constant or one row per step
  (row :math:`k` is the current of step :math:`k`, the step from :math:`t_k = k\Delta t`
  to :math:`t_{k+1}`).
- Spike sources, usable as the source of a projection like a population:
  :class:`PoissonSource` (independent Poisson trains with a seed) and
  :class:`SpikeTrains` (given spikes). A source's spike "of step :math:`k`" is treated
  exactly like a neuron's spike emitted in step :math:`k`. (``PoissonSource`` was called
  ``PoissonInput`` before, a name that reads as Brian2's ``PoissonInput``, an input
  summed into a variable; the old name still works, with a ``DeprecationWarning``.)

Poisson trains are drawn once, in numpy, as a Bernoulli raster: neuron :math:`i` spikes in
step :math:`k` iff :math:`u_{ki} < r_i \Delta t` with
:math:`u = \texttt{default\_rng(seed).random((T, N))}` (Brian2's ``PoissonGroup`` rule,
but with a generator both backends share). The first :math:`T` rows do not depend on how
many steps are run.
"""

from __future__ import annotations

import warnings
from typing import Dict, Optional

import numpy as np

from .units import as_array, as_count, as_index_array, check_name


class CurrentInput:
    """A current into population ``target`` (uA, or a Brian2 quantity).

    ``values``: one number or one per neuron ``(N,)`` for a constant current; a 2-D
    array ``(T, N)`` (or ``(T, 1)``, the same for every neuron) for one row per step. A
    run longer than ``T`` steps is refused. A Brian2 current density
    (``1*uA/cm**2``) is converted with the target population's patch area
    (``HHSpec.area``, :mod:`hh_plugin.model.quantities`) when the
    :class:`~hh_plugin.network.NetworkSpec` is made; until then ``values`` is ``None``
    and ``density`` holds it.
    """

    def __init__(self, target: str, values):
        self.target = check_name(target, "population")
        self.density = None
        if _is_density(values):
            self.density, self.values = values, None
            return
        array = as_array(values, "uA", f"current into {target!r}")
        if array.ndim > 2:
            raise ValueError(f"current into {target!r}: expected a scalar, (N,) or (T, N) "
                             f"array, got shape {array.shape}")
        self.values = array

    def on_area(self, area: Optional[float]) -> "CurrentInput":
        """This input with a density converted for a patch of ``area`` um² (itself when it
        holds currents)."""
        if self.density is None:
            return self
        from ..model.quantities import convert

        return CurrentInput(self.target, convert(self.density, "uA",
                                                 f"current into {self.target!r}", area))

    @property
    def is_constant(self) -> bool:
        return self.values.ndim < 2

    @property
    def steps(self) -> Optional[int]:
        """Rows of a time course, ``None`` for a constant current."""
        return None if self.is_constant else int(self.values.shape[0])

    def check(self, n: int) -> None:
        width = self.values.shape[-1] if self.values.ndim else 1
        if self.values.ndim >= 1 and width not in ((n,) if self.values.ndim == 1 else (1, n)):
            raise ValueError(f"current into {self.target!r} has {width} columns for a "
                             f"population of {n} neurons")

    def table(self, steps: int, n: int) -> np.ndarray:
        """``(steps, n)`` float64 currents (uA) for a run of ``steps`` steps."""
        self.check(n)
        if self.is_constant:
            return np.broadcast_to(self.values, (steps, n))
        if steps > self.values.shape[0]:
            raise ValueError(f"current into {self.target!r} has {self.values.shape[0]} rows "
                             f"(steps); cannot run {steps} steps")
        return np.broadcast_to(self.values[:steps], (steps, n))

    def to_dict(self) -> Dict:
        return {"type": "current", "target": self.target, "values": np.asarray(self.values)}

    def __repr__(self):
        if self.values is None:
            return f"CurrentInput({self.target!r}, per area)"
        kind = "constant" if self.is_constant else f"{self.values.shape[0]} steps"
        return f"CurrentInput({self.target!r}, {kind})"


def _is_density(values) -> bool:
    """Whether ``values`` is a Brian2 quantity of current per area."""
    if not (hasattr(values, "dim") and hasattr(values, "has_same_dimensions")):
        return False
    import brian2

    return values.has_same_dimensions(brian2.amp / brian2.metre ** 2)


class SpikeSource:
    """Base of spike sources: ``name``, ``size`` and :meth:`raster`."""

    name: str
    size: int

    def raster(self, steps: int, dt: float) -> np.ndarray:  # pragma: no cover - abstract
        """``(steps, size)`` boolean: source ``i`` spikes in step ``k``."""
        raise NotImplementedError

    def window(self, start: int, steps: int, dt: float) -> np.ndarray:
        """Rows ``start .. start + steps - 1`` of :meth:`raster`, ``(steps, size)``
        boolean (what a run that continues from step ``start`` needs)."""
        return self.raster(start + steps, dt)[start:]

    def spikes(self, steps: int, dt: float):
        """``(step, index)`` arrays of the spikes, ordered by step then index."""
        k, i = np.nonzero(self.raster(steps, dt))
        return k.astype(np.int64), i.astype(np.int64)


class PoissonSource(SpikeSource):
    """``size`` independent Poisson trains of ``rate`` Hz (one number or one per train),
    drawn with ``numpy.random.default_rng(seed)`` (see the module docstring): a population
    of spike sources, as Brian2's ``PoissonGroup`` (not Brian2's ``PoissonInput``, which
    adds spikes to a variable of a group)."""

    def __init__(self, name: str, size: int, rate, seed: int):
        self.name = check_name(name, "input")
        self.size = as_count(size, f"size of {name!r}")
        self.rate = as_array(rate, "Hz", f"rate of {name!r}", shape=(self.size,))
        if np.any(self.rate < 0):
            raise ValueError(f"rate of {name!r} must be >= 0 Hz")
        self.seed = as_count(seed, f"seed of {name!r}", 0)

    def raster(self, steps: int, dt: float) -> np.ndarray:
        return self.window(0, steps, dt)

    def window(self, start: int, steps: int, dt: float) -> np.ndarray:
        """Rows ``start .. start + steps - 1`` of the raster without drawing the rows
        before them: the generator (PCG64, one 64-bit draw per uniform, row by row) is
        advanced by ``start * size`` draws, so a long run in pieces costs memory and time
        for its pieces only, and the rows equal those of :meth:`raster`."""
        p = np.broadcast_to(self.rate * (dt * 1e-3), (self.size,))
        if np.any(p > 1):
            raise ValueError(f"rate of {self.name!r} times dt exceeds 1 (more than one "
                             f"spike per step)")
        rng = np.random.default_rng(self.seed)
        if start:
            rng.bit_generator.advance(int(start) * self.size)
        out = np.empty((steps, self.size), dtype=bool)
        chunk = max(1, (1 << 22) // self.size)
        for row in range(0, steps, chunk):
            stop = min(steps, row + chunk)
            out[row:stop] = rng.random((stop - row, self.size)) < p
        return out

    def to_dict(self) -> Dict:
        return {"type": "poisson", "name": self.name, "size": self.size,
                "rate": np.asarray(self.rate), "seed": self.seed}

    def __repr__(self):
        return f"PoissonSource({self.name!r}, {self.size}, seed={self.seed})"


class PoissonInput(PoissonSource):
    """Deprecated name of :class:`PoissonSource` (it reads as Brian2's ``PoissonInput``,
    which is something else); makes a ``PoissonSource`` behaving the same, with a
    ``DeprecationWarning``."""

    def __init__(self, name: str, size: int, rate, seed: int):
        warnings.warn("hh_plugin.network.PoissonInput is now PoissonSource (a spike-source "
                      "population, not Brian2's PoissonInput); the old name will go",
                      DeprecationWarning, stacklevel=2)
        super().__init__(name, size, rate, seed)


class SpikeTrains(SpikeSource):
    """Given spikes: source ``indices[k]`` spikes in step ``steps[k]`` (at most once per
    step and index)."""

    def __init__(self, name: str, size: int, steps, indices):
        self.name = check_name(name, "input")
        self.size = as_count(size, f"size of {name!r}")
        self.steps = as_index_array(steps, f"spike steps of {name!r}")
        self.indices = as_index_array(indices, f"spike indices of {name!r}",
                                      size=len(self.steps), upper=self.size)
        pairs = self.steps * self.size + self.indices
        if len(np.unique(pairs)) != len(pairs):
            raise ValueError(f"spike trains of {name!r}: a source spikes twice in one step")

    def raster(self, steps: int, dt: float) -> np.ndarray:
        return self.window(0, steps, dt)

    def window(self, start: int, steps: int, dt: float) -> np.ndarray:
        out = np.zeros((steps, self.size), dtype=bool)
        keep = (self.steps >= start) & (self.steps < start + steps)
        out[self.steps[keep] - start, self.indices[keep]] = True
        return out

    def to_dict(self) -> Dict:
        return {"type": "spikes", "name": self.name, "size": self.size,
                "steps": np.asarray(self.steps), "indices": np.asarray(self.indices)}

    def __repr__(self):
        return f"SpikeTrains({self.name!r}, {self.size}, {len(self.steps)} spikes)"
