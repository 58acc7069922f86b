r"""Which neurons a projection connects, with which weights and delays.

Every connector expands, once and in numpy, to an explicit list of synapses
(:class:`Connection`: presynaptic index, postsynaptic index, weight, delay), and both
backends are built from that list, so a rule with a seed gives the same synapses in
Brian2 and in PyTorch. Random draws use ``numpy.random.default_rng(seed)``.

Connectors:

- :class:`Dense`: a full weight matrix of shape ``(target size, source size)``, the
  layout of ``torch.nn.Linear.weight`` and NIR's ``Linear``/``Affine`` ``weight``;
  the torch backend keeps it dense (``torch.nn.functional.linear``).
- :class:`Sparse`: index pairs and values.
- :class:`AllToAll`, :class:`OneToOne`, :class:`FixedProbability` (each pair
  independently with probability :math:`p`, as Brian2's ``connect(p=...)``): rules.

Weights of a rule: one number, one value per synapse, or a seeded distribution
(:class:`Uniform`, :class:`Normal`). Delays (an integer number of steps :math:`d \ge 0`,
see :mod:`hh_plugin.network.spec` for their meaning): one integer, one per synapse
(a ``(target, source)`` matrix for :class:`Dense`), or :class:`RandomDelay`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
import numpy as np

from .units import as_array, as_count, as_index_array


# ------------------------------------------------------------------------ distributions
@dataclass(frozen=True)
class Uniform:
    """Weights drawn uniformly from ``[low, high)`` with ``default_rng(seed)``."""

    low: float
    high: float
    seed: int

    def draw(self, n: int, unit: str, name: str) -> np.ndarray:
        low, high = (float(as_array(v, unit, name)) for v in (self.low, self.high))
        if not low <= high:
            raise ValueError(f"{name}: Uniform needs low <= high, got {low}, {high}")
        return np.random.default_rng(self.seed).uniform(low, high, n)


@dataclass(frozen=True)
class Normal:
    """Weights drawn from a normal distribution with ``default_rng(seed)``."""

    mean: float
    std: float
    seed: int

    def draw(self, n: int, unit: str, name: str) -> np.ndarray:
        mean, std = (float(as_array(v, unit, name)) for v in (self.mean, self.std))
        if not std >= 0:
            raise ValueError(f"{name}: Normal needs std >= 0, got {std}")
        return np.random.default_rng(self.seed).normal(mean, std, n)


@dataclass(frozen=True)
class RandomDelay:
    """Integer delays (steps) drawn uniformly from ``low..high`` inclusive."""

    low: int
    high: int
    seed: int

    def draw(self, n: int) -> np.ndarray:
        low = as_count(self.low, "RandomDelay.low", 0)
        high = as_count(self.high, "RandomDelay.high", low)
        return np.random.default_rng(self.seed).integers(low, high, n, endpoint=True)


def _weights(weight, n: int, unit: str, name: str) -> np.ndarray:
    if isinstance(weight, (Uniform, Normal)):
        values = weight.draw(n, unit, name)
    else:
        values = as_array(weight, unit, name, shape=(n,))
        values = np.broadcast_to(values, (n,))
    out = np.array(values, dtype=np.float64)
    out.setflags(write=False)
    return out


def expand_delay(delay, n: int, name: str, shape=None) -> np.ndarray:
    """Per-synapse integer delays (steps >= 0) from one integer, an array or a
    :class:`RandomDelay`."""
    if isinstance(delay, RandomDelay):
        out = delay.draw(n)
    elif isinstance(delay, (numbers.Integral, np.integer)) and not isinstance(delay, bool):
        out = np.full(n, as_count(delay, name, 0), dtype=np.int64)
    else:
        array = np.asarray(delay)
        if shape is not None and array.shape == tuple(shape):
            array = array.reshape(-1)
        if array.ndim != 1 or len(array) != n:
            raise ValueError(f"{name}: expected one integer, {n} per-synapse values"
                             f"{'' if shape is None else f' or a matrix of shape {tuple(shape)}'}"
                             f", got shape {array.shape}")
        out = as_index_array(array, name)
    out = np.asarray(out, dtype=np.int64)
    out.setflags(write=False)
    return out


# ---------------------------------------------------------------------------- connection
@dataclass(frozen=True)
class Connection:
    """An expanded projection: synapse ``k`` connects source ``pre[k]`` to target
    ``post[k]`` with ``weight[k]`` (the synapse model's unit) after ``delay[k]`` steps.

    ``dense``: the list holds every (target, source) pair in row-major order of the
    ``(n_post, n_pre)`` matrix (``weight.reshape(n_post, n_pre)`` is the matrix).
    """

    pre: np.ndarray
    post: np.ndarray
    weight: np.ndarray
    delay: np.ndarray
    n_pre: int
    n_post: int
    dense: bool = False

    @property
    def size(self) -> int:
        return len(self.pre)

    @property
    def weight_matrix(self) -> np.ndarray:
        """The ``(n_post, n_pre)`` matrix (dense connections only)."""
        if not self.dense:
            raise ValueError("weight_matrix is defined for dense connections only")
        return self.weight.reshape(self.n_post, self.n_pre)


class Connector:
    """Base class: ``expand(n_pre, n_post, unit, delay, name) -> Connection``."""

    dense = False

    def pairs(self, n_pre: int, n_post: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def weights(self, n: int, unit: str, name: str) -> np.ndarray:
        return _weights(self.weight, n, unit, name)

    def expand(self, n_pre: int, n_post: int, unit: str, delay, name: str) -> Connection:
        pre, post = self.pairs(n_pre, n_post)
        pre = as_index_array(pre, f"{name}: source index", upper=n_pre)
        post = as_index_array(post, f"{name}: target index", size=len(pre), upper=n_post)
        weight = self.weights(len(pre), unit, f"{name}: weight")
        delays = expand_delay(delay, len(pre), f"{name}: delay",
                              (n_post, n_pre) if self.dense else None)
        return Connection(pre, post, weight, delays, n_pre, n_post, self.dense)


class Dense(Connector):
    """All pairs, with a weight matrix of shape ``(target size, source size)``
    (``torch.nn.Linear.weight``'s layout)."""

    dense = True

    def __init__(self, weight):
        self.weight = weight

    def pairs(self, n_pre, n_post):
        post = np.repeat(np.arange(n_post, dtype=np.int64), n_pre)
        pre = np.tile(np.arange(n_pre, dtype=np.int64), n_post)
        return pre, post

    def weights(self, n, unit, name):
        matrix = as_array(self.weight, unit, name, allow_scalar=False)
        if matrix.ndim != 2 or matrix.size != n:
            raise ValueError(f"{name}: a dense weight matrix has shape (target size, "
                             f"source size), got {matrix.shape}")
        return matrix

    def expand(self, n_pre, n_post, unit, delay, name):
        matrix = self.weights(n_pre * n_post, unit, f"{name}: weight")
        if matrix.shape != (n_post, n_pre):
            raise ValueError(f"{name}: weight matrix of shape {matrix.shape}, expected "
                             f"(target size, source size) = {(n_post, n_pre)}")
        pre, post = self.pairs(n_pre, n_post)
        weight = np.array(matrix, dtype=np.float64).reshape(-1)
        weight.setflags(write=False)
        pre.setflags(write=False)
        post.setflags(write=False)
        delays = expand_delay(delay, len(pre), f"{name}: delay", (n_post, n_pre))
        return Connection(pre, post, weight, delays, n_pre, n_post, True)


class Sparse(Connector):
    """Explicit synapses: ``pre[k] -> post[k]`` with ``weight`` (one value or one per pair)."""

    def __init__(self, pre, post, weight):
        self.pre, self.post, self.weight = pre, post, weight

    def pairs(self, n_pre, n_post):
        return self.pre, self.post


class AllToAll(Connector):
    """Every source to every target (``autapses=False``: not ``i -> i``, for a
    projection of a population onto itself)."""

    def __init__(self, weight, autapses: bool = True):
        self.weight, self.autapses = weight, bool(autapses)

    def pairs(self, n_pre, n_post):
        pre = np.repeat(np.arange(n_pre, dtype=np.int64), n_post)
        post = np.tile(np.arange(n_post, dtype=np.int64), n_pre)
        if not self.autapses:
            keep = pre != post
            pre, post = pre[keep], post[keep]
        return pre, post


class OneToOne(Connector):
    """Source ``i`` to target ``i`` (equal sizes)."""

    def __init__(self, weight):
        self.weight = weight

    def pairs(self, n_pre, n_post):
        if n_pre != n_post:
            raise ValueError(f"OneToOne needs equal sizes, got {n_pre} and {n_post}")
        index = np.arange(n_pre, dtype=np.int64)
        return index, index.copy()


class FixedProbability(Connector):
    """Each (source, target) pair independently with probability ``p``.

    The draw is ``default_rng(seed).random((n_pre, n_post)) < p`` (row by row, in
    chunks), so the synapses are ordered by source, then target.
    """

    def __init__(self, p: float, weight, seed: int, autapses: bool = True):
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"FixedProbability: p must be within [0, 1], got {p}")
        if seed is None or isinstance(seed, bool) or not isinstance(seed, (numbers.Integral,
                                                                           np.integer)):
            raise TypeError(f"FixedProbability needs an integer seed (both backends expand "
                            f"the rule with it), got {seed!r}")
        self.p, self.weight, self.seed, self.autapses = p, weight, int(seed), bool(autapses)

    def pairs(self, n_pre, n_post):
        rng = np.random.default_rng(self.seed)
        rows = max(1, (1 << 22) // max(n_post, 1))
        pres, posts = [], []
        for start in range(0, n_pre, rows):
            stop = min(n_pre, start + rows)
            hit = rng.random((stop - start, n_post)) < self.p
            i, j = np.nonzero(hit)
            pres.append(i + start)
            posts.append(j)
        pre = np.concatenate(pres) if pres else np.zeros(0, np.int64)
        post = np.concatenate(posts) if posts else np.zeros(0, np.int64)
        if not self.autapses:
            keep = pre != post
            pre, post = pre[keep], post[keep]
        return pre.astype(np.int64), post.astype(np.int64)


def as_connector(value) -> Connector:
    """A connector; a 2-D array is taken as a :class:`Dense` matrix."""
    if isinstance(value, Connector):
        return value
    if hasattr(value, "shape") and len(getattr(value, "shape")) == 2:
        return Dense(value)
    raise TypeError(f"connectivity must be a connector (Dense, Sparse, AllToAll, OneToOne, "
                    f"FixedProbability) or a 2-D weight matrix, got {type(value).__name__}")


__all__ = ["Uniform", "Normal", "RandomDelay", "Connection", "Connector", "Dense", "Sparse",
           "AllToAll", "OneToOne", "FixedProbability", "as_connector", "expand_delay"]
