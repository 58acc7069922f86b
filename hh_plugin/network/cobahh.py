r"""COBAHH, Brian2's ``examples/COBAHH.py``, as a :class:`~hh_plugin.network.NetworkSpec`.

Benchmark 3 of Brette et al. (J. Comput. Neurosci. 23, 2007): 4,000 Traub-Miles neurons
(:data:`hh_plugin.model.TRAUB_MILES`, a 20,000 um2 patch), the first 3,200 excitatory and
the last 800 inhibitory, each pair connected with probability :math:`p = 0.02` through
exponentially decaying conductances,

.. math::
    C_m \dot V = g_l (E_l - V) + g_e (E_e - V) + g_i (E_i - V) - I_{Na} - I_{Kd},
    \qquad \dot g_e = -g_e/\tau_e, \quad \dot g_i = -g_i/\tau_i,

a spike of an excitatory (inhibitory) neuron adding :math:`w_e` = 6 nS (:math:`w_i` =
67 nS) to :math:`g_e` (:math:`g_i`) of its targets; :math:`\tau_e` = 5 ms,
:math:`\tau_i` = 10 ms, :math:`E_e` = 0 mV, :math:`E_i` = -80 mV, ``dt`` = 0.1 ms,
``threshold='v>-20*mV'`` with ``refractory=3*ms`` and no reset.

How the example maps to the specification:

- one population ``'P'`` of 4,000 neurons (the example's ``P``; ``P[:3200]`` is
  excitatory), with ``refractory=3.0`` (Brian2's absolute refractory period, see
  :class:`~hh_plugin.network.Population`);
- two projections ``P -> P``: receptor ``'e'`` (variable ``g_e``) from the excitatory
  neurons, receptor ``'i'`` (``g_i``) from the inhibitory ones, each a
  :class:`~hh_plugin.network.Sparse` list of index pairs;
- **delay 1 step.** The example's ``on_pre='ge+=we'`` has no delay: Brian2 delivers the
  spike of step :math:`k` in the ``synapses`` slot of step :math:`k` (after the
  threshold), so it first enters the state update of step :math:`k + 1`. That is the
  plugin's delay :math:`d = 1` (:mod:`hh_plugin.network.spec`: ``delay=0*ms`` in
  Brian2 is :math:`d = 1`; the plugin's :math:`d = 0` would let a spike act in the step
  that emits it, a ``torch.nn.Linear`` between layers);
- **units.** The plugin's conductances are in mS: :math:`w_e` = 6 nS = 6e-6 mS,
  :math:`w_i` = 67 nS = 6.7e-5 mS, the example's initial ``ge = (randn()*1.5 + 4)*10*nS``
  is :math:`(1.5\,\xi + 4) \cdot 10^{-5}` mS. Plain numbers given here are in the
  plugin's units (mS, mV); Brian2 quantities (``6*nS``) are converted.
- **initial state.** The example sets ``v = El + (randn()*5 - 5)*mV`` (:math:`E_l` =
  -60 mV), ``ge`` and ``gi`` as above, and leaves the gates at 0: so do
  :func:`cobahh_initial_values` (drawn with ``numpy.random.default_rng(seed)``) and
  :func:`cobahh_network`.

To rebuild a particular run of the example, pass its connectivity (``Ce.i, Ce.j`` and
``Ci.i, Ci.j``: source indices within ``P[:3200]`` and ``P[3200:]``, target indices
within ``P``) and its initial values (``P.v``, ``P.ge``, ``P.gi``) to
:func:`cobahh_network`; without them it draws its own with a seed.

Example:
    >>> spec = cobahh_network(seed=1, n_exc=80, n_inh=20)
    >>> spec.dt, spec.populations['P'].size, sorted(spec.connections)
    (0.1, 100, ['P_to_P_e', 'P_to_P_i'])
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from ..model.spec import HHSpec
from ..model.traub_miles import TRAUB_MILES
from .connectivity import FixedProbability, Sparse
from .spec import NetworkSpec, Population, Projection
from .synapses import exponential_conductance
from .units import as_array, as_count, as_index_array

#: The example's sizes, connection probability, weights (mS), synapses and step.
N_EXC, N_INH = 3200, 800
P_CONNECT = 0.02
W_EXC = 6e-6      # 6 nS in mS
W_INH = 6.7e-5    # 67 nS in mS
TAU_E, TAU_I = 5.0, 10.0      # ms
E_E, E_I = 0.0, -80.0         # mV
REFRACTORY = 3.0  # ms
DT = 0.1          # ms
#: The population's name and the delay (steps) of the example's ``delay=0*ms`` synapses.
POPULATION = "P"
DELAY = 1

Pairs = Tuple[np.ndarray, np.ndarray]


def cobahh_connectivity(n_exc: int = N_EXC, n_inh: int = N_INH, p: float = P_CONNECT,
                        seed: int = 0) -> Tuple[Pairs, Pairs]:
    """``((exc_pre, exc_post), (inh_pre, inh_post))``: each (source, target) pair of the
    excitatory (inhibitory) neurons onto all ``n_exc + n_inh`` neurons with probability
    ``p``, drawn as :class:`~hh_plugin.network.FixedProbability` does with ``seed``
    (``seed + 1`` for the inhibitory part). Source indices count within each part, as
    the example's ``Ce.i`` and ``Ci.i``."""
    n = n_exc + n_inh
    exc = FixedProbability(p, 0.0, seed).pairs(n_exc, n)
    inh = FixedProbability(p, 0.0, seed + 1).pairs(n_inh, n)
    return exc, inh


def cobahh_initial_values(n: int = N_EXC + N_INH, seed: int = 0) -> Dict[str, np.ndarray]:
    r"""The example's random initial values with ``numpy.random.default_rng(seed)``:
    ``V`` = -60 + (5 :math:`\xi` - 5) mV, ``g_e`` = (1.5 :math:`\xi` + 4) 1e-5 mS,
    ``g_i`` = (12 :math:`\xi` + 20) 1e-5 mS (:math:`\xi` standard normal, drawn in
    that order)."""
    rng = np.random.default_rng(seed)
    El = TRAUB_MILES.defaults["El"]
    V = El + (rng.standard_normal(n) * 5 - 5)
    g_e = (rng.standard_normal(n) * 1.5 + 4) * 10 * 1e-6
    g_i = (rng.standard_normal(n) * 12 + 20) * 10 * 1e-6
    return {"V": V, "g_e": g_e, "g_i": g_i}


def _pairs(pairs, n_src: int, n: int, what: str) -> Pairs:
    try:
        pre, post = pairs
    except (TypeError, ValueError):
        raise TypeError(f"{what}: expected a pair (source indices, target indices)") from None
    pre = as_index_array(pre, f"source indices of the {what}", upper=n_src)
    post = as_index_array(post, f"target indices of the {what}", size=len(pre), upper=n)
    return pre, post


def cobahh_network(exc: Optional[Pairs] = None, inh: Optional[Pairs] = None, V=None,
                   g_e=None, g_i=None, *, n_exc: int = N_EXC, n_inh: int = N_INH,
                   p: float = P_CONNECT, we=W_EXC, wi=W_INH, seed: int = 0,
                   dt=DT, spec: Optional[HHSpec] = None) -> NetworkSpec:
    """The COBAHH network (see the module docstring) as a :class:`NetworkSpec`.

    Arguments:
        exc, inh: ``(source, target)`` index arrays of the excitatory and inhibitory
            synapses (the example's ``Ce.i, Ce.j`` and ``Ci.i, Ci.j``: sources count
            within their part, targets within all neurons); ``None``: drawn by
            :func:`cobahh_connectivity` with ``p`` and ``seed``.
        V, g_e, g_i: initial membrane potentials (mV) and conductances (mS), one per
            neuron or one for all (Brian2 quantities accepted); ``None``: drawn by
            :func:`cobahh_initial_values` with ``seed``. The gates start at 0, as in the
            example.
        n_exc, n_inh: the sizes of the two parts (3,200 and 800).
        p: connection probability of the drawn connectivity.
        we, wi: the synaptic weights (mS, or Brian2 quantities): 6 nS and 67 nS.
        seed: seed of whatever is drawn.
        dt: the step (ms), 0.1 ms as the example.
        spec: the neurons' :class:`~hh_plugin.HHSpec` (default: Traub-Miles with the
            example's parameters).

    The population is ``'P'``; the projections ``'P_to_P_e'`` and ``'P_to_P_i'``.
    """
    n_exc = as_count(n_exc, "n_exc")
    n_inh = as_count(n_inh, "n_inh")
    n = n_exc + n_inh
    spec = HHSpec(model=TRAUB_MILES) if spec is None else spec
    if not isinstance(spec, HHSpec):
        raise TypeError(f"spec must be an HHSpec, got {type(spec).__name__}")
    if exc is None or inh is None:
        drawn = cobahh_connectivity(n_exc, n_inh, p, seed)
        exc = drawn[0] if exc is None else exc
        inh = drawn[1] if inh is None else inh
    exc_pre, exc_post = _pairs(exc, n_exc, n, "excitatory synapses")
    inh_pre, inh_post = _pairs(inh, n_inh, n, "inhibitory synapses")
    drawn_values = (cobahh_initial_values(n, seed) if any(v is None for v in (V, g_e, g_i))
                    else {})
    initial = {"V": drawn_values["V"] if V is None else V,
               "g_e": drawn_values["g_e"] if g_e is None else g_e,
               "g_i": drawn_values["g_i"] if g_i is None else g_i,
               "m": 0.0, "n": 0.0, "h": 0.0}
    for key, unit in (("g_e", "mS"), ("g_i", "mS")):
        initial[key] = as_array(initial[key], unit, f"initial {key}", shape=(n,))
    population = Population(POPULATION, n, spec, initial=initial, refractory=REFRACTORY)
    exc_syn = exponential_conductance("e", tau=TAU_E, E_rev=E_E)
    inh_syn = exponential_conductance("i", tau=TAU_I, E_rev=E_I)
    projections = [
        Projection(POPULATION, POPULATION, Sparse(exc_pre, exc_post, we), exc_syn, delay=DELAY),
        Projection(POPULATION, POPULATION, Sparse(inh_pre + n_exc, inh_post, wi), inh_syn,
                   delay=DELAY)]
    return NetworkSpec([population], projections, dt=dt)


__all__ = ["cobahh_network", "cobahh_connectivity", "cobahh_initial_values", "N_EXC",
           "N_INH", "P_CONNECT", "W_EXC", "W_INH", "TAU_E", "TAU_I", "E_E", "E_I",
           "REFRACTORY", "DT", "POPULATION", "DELAY"]
