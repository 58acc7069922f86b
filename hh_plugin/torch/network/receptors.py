r"""One receptor of a population as torch operations, generated from its synapse definition.

For a receptor with states :math:`x_s` (:class:`~hh_plugin.network.synapses.SynapseModel`),
increments :math:`c_s`, output coefficients :math:`k_s`, propagator
:math:`P = e^{A\Delta t}` and optional voltage-dependent factor :math:`B(V)`:

.. math::
    \begin{align*}
    x_s &\mathrel{+}= c_s\, W z && \text{(spikes due now)}\\
    y &= \sum_s k_s x_s && \text{(conductance, mS, or current, uA)}\\
    G &\mathrel{+}= y\,B(V_k), \quad J \mathrel{+}= y\,B(V_k)\,E
        && \text{(a conductance: part of the exponential Euler } G\text{)}\\
    x &\leftarrow P x && \text{(after the neuron step; a pulse: } x \leftarrow 0\text{)}
    \end{align*}

The coefficients are Python floats computed in float64 by the definition
(:meth:`~hh_plugin.network.synapses.Synapse.propagator`: the very numbers the Brian2
backend uses), unless a parameter tensor of the receptor requires grad
(:meth:`ReceptorNumerics.parameters`): then they are computed with torch operations from
those tensors (``torch.exp`` of a diagonal, else ``torch.linalg.matrix_exp``) so that
gradients with respect to the time constants, reversal potentials and factor parameters
flow through autograd.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from ...model.expressions import exprel_torch
from ...network.synapses import Synapse


class ReceptorNumerics:
    """The numbers and operations of one receptor (``dt`` in ms)."""

    def __init__(self, synapse: Synapse, dt: float):
        self.synapse = synapse
        self.model = synapse.model
        self.dt = dt
        self.variables: Tuple[str, ...] = synapse.state_variables
        self.presynaptic: Tuple[str, ...] = synapse.presynaptic_variables
        self._P = synapse.propagator(dt)
        self._inc = synapse.increments()
        self._out = synapse.output_coefficients()
        self._factor = (self.model.compiled.function("factor", "torch")
                        if self.model.factor is not None else None)
        self.parameters: Dict[str, torch.Tensor] = {
            name: torch.tensor(value, dtype=torch.float64)
            for name, value in synapse.parameters.items()}

    @property
    def trainable(self) -> bool:
        """Whether a parameter tensor requires grad (then the coefficients are tensors)."""
        return any(t.requires_grad for t in self.parameters.values())

    def constants(self, dtype, device):
        """``(P, increments, outputs, E, parameter values)``: nested lists of floats, or
        of tensors when :attr:`trainable`."""
        model, n = self.model, len(self.variables)
        if not self.trainable:
            P = [[float(self._P[i, j]) for j in range(n)] for i in range(n)]
            E = self.synapse.reversal_potential
            return P, list(self._inc), list(self._out), E, self.synapse.parameter_values
        values = tuple(self.parameters[name].to(dtype=dtype, device=device)
                       for name in model.parameter_names)
        compiled = model.compiled

        def tensors(items):
            return [torch.as_tensor(v, dtype=dtype, device=device) + 0 * values[0]
                    if not torch.is_tensor(v) else v for v in items]

        if model.is_pulse or n == 0:
            P = [[0.0] * n for _ in range(n)]
        else:
            flat = tensors(compiled.function("matrix", "torch", with_dt=True)(self.dt, *values))
            M = torch.stack(flat).reshape(n, n)
            if model.is_diagonal:
                d = torch.exp(torch.diagonal(M))
                P = [[d[i] if i == j else 0.0 for j in range(n)] for i in range(n)]
            else:
                E_ = torch.linalg.matrix_exp(M)
                P = [[E_[i, j] for j in range(n)] for i in range(n)]
        inc = tensors(compiled.function("increment", "torch")(*values))
        out = tensors(compiled.function("output", "torch")(*values))
        E = None if model.reversal is None else values[model.parameter_names.index(
            model.reversal)]
        return P, inc, out, E, values

    @staticmethod
    def _scale(value, c):
        if not torch.is_tensor(c):
            if c == 1.0:
                return value
            if c == 0.0:
                return None
        return value * c

    def add_spikes(self, x: Dict[str, torch.Tensor], contribution: torch.Tensor, inc) -> None:
        """``x_s += c_s * contribution`` for every state the spikes change."""
        for var, c in zip(self.variables, inc):
            term = self._scale(contribution, c)
            if term is not None:
                x[var] = x[var] + term

    def output(self, x: Dict[str, torch.Tensor], out) -> torch.Tensor:
        """:math:`y = \\sum_s k_s x_s`."""
        y = None
        for var, k in zip(self.variables, out):
            term = self._scale(x[var], k)
            if term is not None:
                y = term if y is None else y + term
        return y if y is not None else torch.zeros_like(x[self.variables[0]])

    def factor(self, V: torch.Tensor, values) -> Optional[torch.Tensor]:
        """:math:`B(V)` at the step's start potential, or ``None`` without a factor."""
        if self._factor is None:
            return None
        value = self._factor(V, *values)[0]
        return value if torch.is_tensor(value) else torch.full_like(V, float(value))

    # ---------------------------------------------------------------- graded synapses
    def transmit(self, states, values) -> torch.Tensor:
        """The graded signal of the presynaptic states (what the weights multiply)."""
        value = self.model.compiled.function("transmit", "torch")(*states, *values)[0]
        return value if torch.is_tensor(value) else torch.full_like(states[0], float(value))

    def advance_presynaptic(self, V: torch.Tensor, states, values):
        r"""One exponential Euler step of the presynaptic states, all from the step's
        start (``V`` and ``states``): :math:`x' = x + \Delta t\,\operatorname{exprel}
        (-\lambda\Delta t)\, f` with :math:`\lambda = -\partial f/\partial x` (the
        scheme of the gates, and Brian2's ``exponential_euler``)."""
        compiled = self.model.compiled
        drift = compiled.function("pre_drift", "torch")(V, *states, *values)
        rate = compiled.function("pre_rate", "torch")(V, *states, *values)
        out = []
        for x, f, lam in zip(states, drift, rate):
            lam = lam if torch.is_tensor(lam) else torch.full_like(x, float(lam))
            out.append(x + self.dt * exprel_torch(-lam * self.dt) * f)
        return out

    def advance(self, x: Dict[str, torch.Tensor], P) -> None:
        """:math:`x \\leftarrow P x` (a pulse is cleared)."""
        if self.model.is_pulse:
            for var in self.variables:
                x[var] = torch.zeros_like(x[var])
            return
        old = [x[var] for var in self.variables]
        for i, var in enumerate(self.variables):
            total = None
            for j, xj in enumerate(old):
                p = P[i][j]
                if not torch.is_tensor(p) and p == 0.0:
                    continue
                term = xj * p
                total = term if total is None else total + term
            x[var] = total if total is not None else torch.zeros_like(old[i])
