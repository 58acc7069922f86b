r"""Fit an HH model's conductances and rate parameters to voltage traces recorded in NEURON.

The data come from another simulator: NEURON's built-in ``hh`` mechanism in a single
compartment (``nseg = 1``) at **16.3 degC** (``--celsius``), driven by a protocol of
current steps, one trace per step. The fitted model (:data:`FIT_MODEL`, declared below
with the plugin's model language) is the classic HH with two rate parameters besides
the conductances: every rate (:math:`\alpha_x, \beta_x` of :math:`x = m, h, n`) is

.. math::
    \phi\,\alpha_x(V - V_{shift}), \qquad \phi = Q_{10}^{(T - 6.3\,^\circ\mathrm{C})/10},

with the recording temperature :math:`T` known (``celsius``), the temperature
coefficient :math:`Q_{10}` and the voltage shift :math:`V_{shift}` (mV) of all rate
functions fitted. It is fitted to all traces at once, with the mean squared voltage
error as the loss,

.. math::
    L(\theta) = \frac{1}{K T} \sum_{k=1}^{K} \sum_{t=1}^{T}
        \big(V_k(t; \theta) - V^{\mathrm{NEURON}}_k(t)\big)^2 \quad [\mathrm{mV}^2],

over :math:`\theta = (\log g_{Na}, \log g_K, \log g_L, E_L, \log Q_{10}, V_{shift})`
(positive parameters through their logarithm, as ``HH(..., trainable=...)`` trains
them).

**Units.** The plugin simulates a 1 cm\ :sup:`2` patch in mS, uF, uA, mV and ms; NEURON's
``hh`` uses densities. A conductance of :math:`g` S/cm\ :sup:`2` is :math:`10^3 g` mS on
the patch (``gnabar_hh = 0.12`` S/cm\ :sup:`2` is ``gNa = 120`` mS), ``cm = 1``
uF/cm\ :sup:`2` is ``C = 1`` uF, and a step of :math:`I` uA/cm\ :sup:`2` is an ``IClamp``
of :math:`I \cdot A \cdot 10^3` nA on a section of area :math:`A` cm\ :sup:`2`
(``h.area`` is in um\ :sup:`2`, :math:`10^{-8}` cm\ :sup:`2` each).

**Temperature.** NEURON's ``hh`` multiplies its rates by
:math:`3^{(T - 6.3\,^\circ\mathrm{C})/10}`: at 16.3 degC they are three times those at
6.3 degC, so the true :math:`Q_{10}` is 3 and the true shift 0 mV. NEURON's rate tables
are switched off (``usetable_hh = 0``) and it integrates with Crank-Nicolson
(``secondorder = 2``) at a step ``--neuron-substeps`` times shorter than the plugin's,
sampled at the plugin's steps.

**True parameters** are NEURON's defaults: ``gnabar = 0.12``, ``gkbar = 0.036``,
``gl = 0.0003`` S/cm\ :sup:`2`, ``el = -54.3`` mV, and :math:`Q_{10} = 3`,
:math:`V_{shift} = 0`. Both simulators start every trace at ``--v-init`` with the gates
at their steady state there.

**Three fits with the same budget of simulated time** (``--budget-evaluations`` runs
of the whole protocol; each run of the protocol counts :math:`K T` ms, the backward pass
of the gradient fit is not counted as simulated time but is in its wall time):

* gradient: :class:`torch.optim.LBFGS` (strong Wolfe line search) on the module's
  ``nn.Parameter``\ s, gradients through the fused kernel's adjoint (the rate
  parameters' derivatives generated from the model definition, as the conductances');
* Nelder-Mead (:func:`scipy.optimize.minimize`) from the same start;
* differential evolution (:func:`scipy.optimize.differential_evolution`, seeded, no
  polishing) in a box around the start (positive parameters within a factor
  ``--de-factor``, :math:`E_L` within ``--de-el-mv``, :math:`V_{shift}` within
  ``--de-shift-mv``).

The gradient-free fits simulate with the same torch forward (fused kernel) under
``torch.no_grad``. All run in float64 with the model's RK4 method. The script prints the
best loss against the simulated time spent and the wall time of each fit, then the
recovered parameters against the true ones, and finally runs the gradient fit's best
parameters (:func:`spec_from`, the specification ``module.p.to_spec()`` gives at that
point) in Brian2 and asserts that it spikes at the same steps as the torch float64
forward.

Run from the repository root::

    python examples/fit_conductances.py            # 5 steps of 60 ms
    python examples/fit_conductances.py --quick    # 3 steps of 40 ms, smaller budget

It writes ``fit_conductances.json`` and ``fit_conductances.png`` (loss against wall time,
NEURON's traces and the fitted model's) to ``--output-dir`` (default ``examples/output``;
``examples/output/quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", category=DeprecationWarning)  # norse's torch.jit notices

try:
    import hh_plugin  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.model import (ChannelDefinition, GateDefinition, ModelDefinition,  # noqa: E402
                             ParameterDefinition as P, get_model, known_models,
                             register_model)
from hh_plugin.torch import HH  # noqa: E402

#: Every rate times the temperature factor; the reference temperature of the rate
#: functions is 6.3 degC (those of NEURON's hh.mod).
RATE_FACTOR = "Q10**((celsius - 6.3)/10)"
#: The classic HH (NEURON's ``hh``) with its rates' temperature coefficient ``Q10`` and a
#: common voltage shift ``V_shift`` of the rate functions as parameters.
_DEFINITION = ModelDefinition(
    name="classic_hh_rate_fit",
    parameters=(P("ENa", 50.0, "mV"), P("gNa", 120.0, "mS", constraint="nonnegative"),
                P("EK", -77.0, "mV"), P("gK", 36.0, "mS", constraint="nonnegative"),
                P("EL", -54.3, "mV"), P("gL", 0.3, "mS", constraint="nonnegative"),
                P("C", 1.0, "uF", constraint="positive"), P("V_th", -20.0, "mV"),
                P("celsius", 6.3, "1", "temperature (degrees C)"),
                P("Q10", 3.0, "1", "rate factor per 10 degrees C", "positive"),
                P("V_shift", 0.0, "mV", "shift of every rate function along V")),
    gates=(GateDefinition("m", "1/exprel(-(V - V_shift + 40)/10)",
                          "4*exp(-(V - V_shift + 65)/18)", rate_factor=RATE_FACTOR),
           GateDefinition("h", "0.07*exp(-(V - V_shift + 65)/20)",
                          "1/(1 + exp(-(V - V_shift + 35)/10))", rate_factor=RATE_FACTOR),
           GateDefinition("n", "0.1/exprel(-(V - V_shift + 55)/10)",
                          "0.125*exp(-(V - V_shift + 65)/80)", rate_factor=RATE_FACTOR)),
    channels=(ChannelDefinition("Na", "gNa*m**3*h", "ENa"),
              ChannelDefinition("K", "gK*n**4", "EK"), ChannelDefinition("L", "gL", "EL")),
    initial_voltage=-65.0, max_dt=0.05,
    reference="NEURON's hh.mod with its Q10 and a shift of the rate functions as parameters",
)
#: The model once per process: the torch types are made for the first instance, so a
#: second run of this file (a test importing it again) reuses the registered one.
FIT_MODEL = (get_model(_DEFINITION.name) if _DEFINITION.name in known_models()
             and get_model(_DEFINITION.name) == _DEFINITION else register_model(_DEFINITION))

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "output"
NAMES = ("gNa", "gK", "gL", "EL", "Q10", "V_shift")
#: NEURON's ``hh`` defaults in the plugin's units (mS and mV on a 1 cm2 patch), its Q10 and
#: no shift.
TRUE = {"gNa": 0.12 * 1e3, "gK": 0.036 * 1e3, "gL": 0.0003 * 1e3, "EL": -54.3,
        "Q10": 3.0, "V_shift": 0.0}
START = {"gNa": 90.0, "gK": 45.0, "gL": 0.1, "EL": -60.0, "Q10": 2.0, "V_shift": 4.0}
LOG = ("gNa", "gK", "gL", "Q10")  # fitted through their logarithm
#: The gradient fit's unit of each parameter (1 for a logarithm; mV).
SCALE = {"EL": 10.0, "V_shift": 10.0}
#: The loss (mV^2) the gradient fit's line search sees where a trial step overflowed.
UNUSABLE = 1e6
#: Errors are relative, |x - true|/|true|, except for V_shift (true 0): |x - true| in mV.
ABSOLUTE = ("V_shift",)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="folder for the JSON summary and the PNG (default "
                             "examples/output, examples/output/quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="seconds (for tests)")
    parser.add_argument("--steps-ua", type=float, nargs="+", default=None,
                        help="current steps in uA/cm2 ([-2, 2, 5, 10, 20]; quick: [-2, 5, 10])")
    parser.add_argument("--duration-ms", type=float, default=None,
                        help="length of each trace (60; quick: 40)")
    parser.add_argument("--step-on-ms", type=float, default=5.0)
    parser.add_argument("--step-off-before-end-ms", type=float, default=15.0,
                        help="the step ends this long before the trace")
    parser.add_argument("--dt-ms", type=float, default=0.025, help="plugin step (RK4)")
    parser.add_argument("--neuron-substeps", type=int, default=20,
                        help="NEURON's step is dt-ms divided by this")
    parser.add_argument("--v-init", type=float, default=-65.0, help="initial V (mV)")
    parser.add_argument("--celsius", type=float, default=16.3,
                        help="NEURON's temperature (degC), known to the fitted model")
    parser.add_argument("--budget-evaluations", type=int, default=None,
                        help="simulated-time budget in runs of the protocol (1500; quick: 300)")
    parser.add_argument("--first-stage-spikes", type=int, default=1,
                        help="the gradient fit's first stage takes the traces with at most "
                             "this many spikes")
    parser.add_argument("--de-factor", type=float, default=4.0)
    parser.add_argument("--de-el-mv", type=float, default=15.0)
    parser.add_argument("--de-shift-mv", type=float, default=10.0)
    parser.add_argument("--de-popsize", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="differential evolution's seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    if args.output_dir is None:  # a quick run never overwrites a full run's figures
        args.output_dir = DEFAULT_OUTPUT / "quick" if args.quick else DEFAULT_OUTPUT
    if args.steps_ua is None:
        args.steps_ua = [-2.0, 5.0, 10.0] if args.quick else [-2.0, 2.0, 5.0, 10.0, 20.0]
    if args.duration_ms is None:
        args.duration_ms = 40.0 if args.quick else 60.0
    if args.budget_evaluations is None:
        args.budget_evaluations = 300 if args.quick else 1500
    return args


def step_current(args) -> np.ndarray:
    """Input of shape ``(T, K)`` in uA (on the 1 cm2 patch): step ``k`` holds
    ``steps_ua[k]`` from ``step_on_ms`` to ``duration_ms - step_off_before_end_ms``."""
    steps = int(round(args.duration_ms / args.dt_ms))
    on = int(round(args.step_on_ms / args.dt_ms))
    off = int(round((args.duration_ms - args.step_off_before_end_ms) / args.dt_ms))
    current = np.zeros((steps, len(args.steps_ua)))
    current[on:off] = args.steps_ua
    return current


def record_neuron(args) -> np.ndarray:
    """NEURON's ``hh`` membrane potential (mV), shape ``(T, K)``: sample ``t`` is the
    potential at :math:`(t + 1)\\,dt`, as the plugin's step ``t`` ends there."""
    from neuron import h

    h.load_file("stdrun.hoc")
    soma = h.Section(name="soma")
    soma.L = soma.diam = 10.0  # um; the densities make the size irrelevant
    soma.nseg, soma.cm = 1, 1.0
    soma.insert("hh")  # NEURON's defaults: gnabar 0.12, gkbar 0.036, gl 0.0003, el -54.3
    h.usetable_hh = 0
    h.celsius = args.celsius  # NEURON's hh rates times 3^((celsius - 6.3)/10)
    h.secondorder = 2
    h.cvode.active(0)
    h.dt = args.dt_ms / args.neuron_substeps
    h.steps_per_ms = 1.0 / h.dt
    area_cm2 = h.area(0.5, sec=soma) * 1e-8  # um2 -> cm2
    clamp = h.IClamp(soma(0.5))
    clamp.delay = args.step_on_ms
    clamp.dur = args.duration_ms - args.step_off_before_end_ms - args.step_on_ms
    steps, sub = int(round(args.duration_ms / args.dt_ms)), args.neuron_substeps
    v = h.Vector()
    v.record(soma(0.5)._ref_v)  # one vector, refilled by every run
    traces = []
    for amplitude in args.steps_ua:
        clamp.amp = amplitude * area_cm2 * 1e3  # uA/cm2 * cm2 = uA; 1 uA = 1e3 nA
        h.finitialize(args.v_init)
        h.continuerun(args.duration_ms)
        traces.append(np.array(v)[sub::sub][:steps])  # a copy
    return np.stack(traces, axis=1)


def spec_from(values: dict, celsius: float) -> HHSpec:
    """:data:`FIT_MODEL` at ``celsius`` with RK4 and ``values`` (NEURON's reversal
    potentials and capacitance are the model's defaults)."""
    return HHSpec(model=FIT_MODEL, method="rk4", celsius=celsius, **values)


def to_theta(values: dict) -> np.ndarray:
    return np.array([math.log(values[n]) if n in LOG else values[n] for n in NAMES])


def from_theta(theta) -> dict:
    return {n: float(math.exp(x) if n in LOG else x) for n, x in zip(NAMES, theta)}


class BudgetSpent(Exception):
    """Raised by :class:`Budget` when the simulated time is used up."""


class Budget:
    """Counts simulated milliseconds and keeps, per run of the protocol, the simulated
    time, the wall time since the fit started and the best loss so far."""

    def __init__(self, limit_ms: float, per_run_ms: float):
        self.limit_ms, self.per_run_ms = limit_ms, per_run_ms
        self.used_ms, self.best, self.best_values = 0.0, math.inf, None
        self.rows, self.start = [], None
        self.module = None  # the gradient fit's module, once it ran

    def charge(self, fraction: float = 1.0):
        """Before a run of ``fraction`` of the protocol (some of its traces): refuse it
        when it would exceed the budget. The wall clock starts at the first run."""
        if self.start is None:
            self.start = time.perf_counter()
        cost = fraction * self.per_run_ms
        if self.used_ms + cost > self.limit_ms + 1e-9:
            raise BudgetSpent
        self.used_ms += cost

    def record(self, loss: float, values: dict):
        if loss < self.best:
            self.best, self.best_values = loss, values
        self.rows.append((self.used_ms, time.perf_counter() - self.start, self.best))


def mse(module: HH, current: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:math:`L` (mV^2): the mean over steps and traces of the squared difference between
    ``module``'s potential under ``current`` (uA, ``(T, K)``) and ``target`` (mV)."""
    _, states = module(current)
    return ((states.V - target) ** 2).mean()


def spike_counts(trace: torch.Tensor, threshold: float) -> torch.Tensor:
    """Upward crossings of ``threshold`` (mV) per trace of ``trace`` ``(T, K)``."""
    return ((trace[1:] >= threshold) & (trace[:-1] < threshold)).sum(0)


def fit_gradient(args, current, target, budget: Budget) -> Budget:
    r"""L-BFGS on the module's trainable parameters until the budget is spent (or the
    optimiser stops moving), first on the traces with few spikes, then on all.

    **Two stages.** In a trace with many spikes, a spike that the start puts a few ms
    off its target is a local minimum of the loss (moving it means passing through a
    larger error first; the full protocol from :data:`START` stopped at 59 mV^2 so). The
    fit therefore starts on the traces in which NEURON fires at most
    ``--first-stage-spikes`` times (at the model's threshold), until L-BFGS converges
    there or half of the budget is spent, and goes on from there on every trace: the
    loss the other fits minimise. A run on some of the traces is charged their share of
    the protocol's simulated time; only runs of the whole protocol record a loss (until
    then the table shows ``inf``). Where every trace qualifies (the quick protocol),
    there is one stage.

    **Scaling.** The optimiser moves :math:`u = \theta / s`: the module's unconstrained
    parameters (:math:`\log g` for the positive ones, :math:`E_L` and :math:`V_{shift}`
    in mV) over the scales :data:`SCALE` (1 for a logarithm, 10 mV for a potential, the
    voltage scale of the rate functions), so that one unit is a comparable change for
    every parameter (:math:`\partial L/\partial u = s\,\partial L/\partial\theta`)."""
    module = HH(spec_from(START, args.celsius), dt=args.dt_ms * 1e-3, V_init=args.v_init,
                record_states=("V",), trainable=NAMES)
    raw = dict(module.named_parameters())
    keys = [f"parametrizations.{n}.original" if n in LOG else n for n in NAMES]
    scale = torch.tensor([SCALE.get(n, 1.0) for n in NAMES], dtype=torch.float64)
    u = torch.nn.Parameter(torch.stack([raw[k].detach().reshape(()) for k in keys]) / scale)
    K = current.shape[1]
    few = torch.nonzero(spike_counts(target, FIT_MODEL.defaults["V_th"])
                        <= args.first_stage_spikes).flatten().tolist()
    stages = ([few] if 0 < len(few) < K else []) + [list(range(K))]

    def closure_for(traces):
        fraction = len(traces) / K
        part_current, part_target = current[:, traces], target[:, traces]

        def closure():
            budget.charge(fraction)
            with torch.no_grad():
                for k, value in zip(keys, u * scale):
                    raw[k].copy_(value)
                    raw[k].grad = None
            with warnings.catch_warnings():  # a trial step far out may overflow the rates
                warnings.simplefilter("ignore", RuntimeWarning)
                loss = mse(module, part_current, part_target)
            loss.backward()
            grad = torch.stack([raw[k].grad.reshape(()) for k in keys]) * scale
            value = loss.detach().item()
            if not math.isfinite(value) or not bool(torch.isfinite(grad).all()):
                # a line-search trial where the simulation overflowed: a loss above any
                # reached, no slope, so that the line search steps back
                u.grad = torch.zeros_like(u)
                return torch.tensor(UNUSABLE, dtype=torch.float64)
            u.grad = grad
            if fraction == 1.0:
                budget.record(value, {n: float(getattr(module.p, n).detach())
                                      for n in NAMES})
            return loss.detach()
        return closure, fraction

    try:
        for stage, traces in enumerate(stages):
            last = stage == len(stages) - 1
            closure, fraction = closure_for(traces)
            optimiser = torch.optim.LBFGS([u], lr=1.0, max_iter=20, history_size=20,
                                          line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                                          tolerance_change=1e-14)
            while last or budget.used_ms < budget.limit_ms / 2:
                before = budget.used_ms
                optimiser.step(closure)
                if budget.used_ms - before <= fraction * budget.per_run_ms + 1e-9:
                    break  # converged: the step took one evaluation
    except BudgetSpent:
        pass
    budget.module = module
    return budget


def gradient_free_loss(args, current, target, budget: Budget):
    """The loss of ``theta`` by the torch forward under ``no_grad``, charged to
    ``budget``."""
    def loss(theta):
        budget.charge()
        values = from_theta(theta)
        module = HH(spec_from(values, args.celsius), dt=args.dt_ms * 1e-3, V_init=args.v_init,
                    record_states=("V",))
        with torch.no_grad():
            value = mse(module, current, target).item()
        budget.record(value, values)
        return value
    return loss


def fit_nelder_mead(args, current, target, budget: Budget) -> Budget:
    from scipy.optimize import minimize

    loss = gradient_free_loss(args, current, target, budget)
    try:
        minimize(loss, to_theta(START), method="Nelder-Mead",
                 options={"maxfev": args.budget_evaluations + 1, "xatol": 1e-9,
                          "fatol": 1e-14})
    except BudgetSpent:
        pass
    return budget


def fit_differential_evolution(args, current, target, budget: Budget) -> Budget:
    from scipy.optimize import differential_evolution

    theta0, spread = to_theta(START), math.log(args.de_factor)
    half = {"EL": args.de_el_mv, "V_shift": args.de_shift_mv}
    bounds = [(x - half[n], x + half[n]) if n in half else (x - spread, x + spread)
              for n, x in zip(NAMES, theta0)]
    loss = gradient_free_loss(args, current, target, budget)
    try:
        differential_evolution(loss, bounds, popsize=args.de_popsize, seed=args.seed,
                               polish=False, tol=0.0, maxiter=10 ** 6, x0=theta0)
    except BudgetSpent:
        pass
    return budget


def relative_errors(values: dict) -> dict:
    """:math:`|x - x_{true}| / |x_{true}|` per parameter, and for the parameters of
    :data:`ABSOLUTE` (true value 0) :math:`|x - x_{true}|` in their unit."""
    return {n: abs(values[n] - TRUE[n]) / (1.0 if n in ABSOLUTE else abs(TRUE[n]))
            for n in NAMES}


def best_at(budget: Budget, fraction: float):
    """(wall seconds, best loss) when ``fraction`` of the budget was used."""
    rows = [r for r in budget.rows if r[0] <= fraction * budget.limit_ms + 1e-9]
    return (rows[-1][1], rows[-1][2]) if rows else (0.0, math.nan)


def brian2_spike_steps(args, spec: HHSpec, current: np.ndarray) -> np.ndarray:
    """Spike raster ``(T, K)`` of ``spec`` in Brian2 (numpy target, RK4, same steps)."""
    import brian2 as b2

    from hh_plugin.brian2 import neuron_group

    b2.start_scope()
    b2.prefs.codegen.target = "numpy"
    dt = args.dt_ms * b2.ms
    stim = b2.TimedArray(current * b2.uA, dt=dt)
    group = neuron_group(current.shape[1], spec, current="stim(t, i)",
                         V_init=args.v_init * b2.mV, dt=dt, namespace={"stim": stim})
    spikes = b2.SpikeMonitor(group)
    b2.run(current.shape[0] * dt)
    raster = np.zeros(current.shape)
    raster[np.round(np.asarray(spikes.t / dt)).astype(int), np.asarray(spikes.i)] = 1
    return raster


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.output_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    current_np = step_current(args)
    target_np = record_neuron(args)
    current, target = torch.tensor(current_np), torch.tensor(target_np)
    per_run_ms = args.duration_ms * len(args.steps_ua)
    limit_ms = per_run_ms * args.budget_evaluations
    print(f"NEURON hh at {args.celsius:g} degC: {len(args.steps_ua)} steps {args.steps_ua} uA/cm2, "
          f"{args.duration_ms:g} ms each, recorded in {time.perf_counter() - started:.1f} s; "
          f"budget {limit_ms:,.0f} simulated ms ({args.budget_evaluations} runs of the "
          f"protocol) per fit")
    with torch.no_grad():  # the model at the true parameters: the floor of the loss
        floor = mse(HH(spec_from(TRUE, args.celsius), dt=args.dt_ms * 1e-3, V_init=args.v_init,
                       record_states=("V",)), current, target).item()

    fits = {}
    for name, fit in (("L-BFGS (gradient)", fit_gradient),
                      ("Nelder-Mead", fit_nelder_mead),
                      ("differential evolution", fit_differential_evolution)):
        fits[name] = fit(args, current, target, Budget(limit_ms, per_run_ms))

    fractions = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    print(f"\nbest loss (mV^2) against simulated time and wall time; loss at the true "
          f"parameters {floor:.2e}")
    header = f"{'simulated ms':>13s}" + "".join(f" | {n[:22]:>22s}" for n in fits)
    print(header + "\n" + "-" * len(header))
    table = []
    for fraction in fractions:
        cells = {n: best_at(b, fraction) for n, b in fits.items()}
        table.append({"simulated_ms": fraction * limit_ms,
                      **{n: {"wall_s": w, "loss": v} for n, (w, v) in cells.items()}})
        print(f"{fraction * limit_ms:13,.0f}" + "".join(
            f" | {w:7.2f} s {v:12.4g}" for w, v in cells.values()))
    print(f"{'used ms':>13s}" + "".join(f" | {b.used_ms:22,.0f}" for b in fits.values())
          + "  (L-BFGS stops early once its step no longer changes the loss)")

    print(f"\n{'parameter':>9s} {'true':>9s} {'start':>9s}" + "".join(
        f" | {n[:22]:>22s}" for n in fits))
    errors = {n: relative_errors(b.best_values) for n, b in fits.items()}
    for p in NAMES:
        print(f"{p:>9s} {TRUE[p]:9.4g} {START[p]:9.4g}" + "".join(
            f" | {b.best_values[p]:10.5g} ({errors[n][p]:8.1e})" for n, b in fits.items()))
    print("(fitted value, error: relative |x - true|/|true|, for V_shift |x - true| in mV; "
          "gNa, gK, gL in mS, EL and V_shift in mV)")

    gradient = fits["L-BFGS (gradient)"]
    fitted = spec_from(gradient.best_values, args.celsius)  # the best point it evaluated
    with torch.no_grad():
        z_torch, states = HH(fitted, dt=args.dt_ms * 1e-3, V_init=args.v_init,
                             record_states=("V",))(current)
    z_torch = z_torch.numpy()
    z_brian2 = brian2_spike_steps(args, fitted, current_np)
    assert np.array_equal(z_torch, z_brian2), "Brian2 and torch spike at different steps"
    print(f"\nfitted spec in Brian2: {int(z_brian2.sum())} spikes at the same steps as torch "
          f"float64 (per step {z_brian2.sum(0).astype(int).tolist()}); "
          f"total {time.perf_counter() - started:.1f} s")

    summary = {
        "steps_ua": args.steps_ua, "duration_ms": args.duration_ms, "dt_ms": args.dt_ms,
        "budget_simulated_ms": limit_ms, "loss_at_true_parameters": floor, "table": table,
        "true": TRUE, "start": START,
        "fitted": {n: b.best_values for n, b in fits.items()},
        "best_loss": {n: b.best for n, b in fits.items()},
        "simulated_ms_used": {n: b.used_ms for n, b in fits.items()},
        "wall_s": {n: b.rows[-1][1] for n, b in fits.items()},
        "relative_errors": errors, "celsius": args.celsius,
        "brian2_spikes": int(z_brian2.sum()), "identical_spike_steps": True,
    }
    (args.output_dir / "fit_conductances.json").write_text(json.dumps(summary, indent=1))
    if not args.no_plots:
        plot(fits, target_np, states.V.numpy(), args, args.output_dir / "fit_conductances.png")
    return summary


def plot(fits, target, fitted, args, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    for name, budget in fits.items():
        rows = np.array(budget.rows)
        ax0.semilogy(rows[:, 1], rows[:, 2], label=name)
    ax0.set(xlabel="wall time (s)", ylabel="best loss (mV$^2$)", title="same simulated time")
    ax0.legend()
    t = (np.arange(target.shape[0]) + 1) * args.dt_ms
    for k in range(target.shape[1]):
        ax1.plot(t, target[:, k], color="k", lw=2.5, alpha=0.35)
        ax1.plot(t, fitted[:, k], lw=0.9, label=f"{args.steps_ua[k]:g} uA/cm$^2$")
    ax1.set(xlabel="time (ms)", ylabel="V (mV)", title="NEURON (grey) and the L-BFGS fit")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
