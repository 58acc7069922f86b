r"""The Brian2 group of a leaky-integrator population (Norse's ``LI``; the math is in
:mod:`hh_plugin.network.leaky_integrator`).

Norse's step is a discrete update, not an ODE, so the group has no differential equation
for :math:`v`, :math:`i`: a ``run_regularly`` operation computes Norse's three lines::

    j = i_syn + I/uA
    v = v + dt*tau_mem_inv*((v_leak - v) + j)
    i_syn = j + (-dt*tau_syn_inv)*j

(``i`` is Brian2's neuron index, so Norse's :math:`i` is ``i_syn`` here.) It runs in the
population's state-update slot of :func:`~hh_plugin.brian2.network.build_network`'s
schedule; the group's own state updater, which decays exponential current receptors, runs
right after it, so the update sees the receptors' values at the start of the step, as on
the torch side.
"""

from __future__ import annotations

from typing import Dict, Optional

#: Norse's state names and their Brian2 variables.
VARIABLES = {"v": "v", "i": "i_syn"}

UPDATE = """j = i_syn + I/uA
v = v + dt*tau_mem_inv*((v_leak - v) + j)
i_syn = j + (-dt*tau_syn_inv)*j"""


def leaky_integrator_group(size: int, spec, state: Dict, current: Optional[str],
                           extra_lines, namespace: Dict, clock, update_order: float,
                           name: str, method: str = "exponential_euler"):
    """A ``NeuronGroup`` of ``size`` leaky integrators with parameters ``spec``
    (an :class:`~hh_plugin.network.leaky_integrator.LISpec`), initial ``state``
    (``{'v': ..., 'i': ...}``), input ``current`` (a Brian2 expression in amp or ``None``)
    and the receptors' ``extra_lines``; the update runs at ``update_order``."""
    import brian2

    lines = ["v : 1", "i_syn : 1",
             f"I = {current} : amp" if current else "I : amp",
             "tau_syn_inv : Hz (constant, shared)",
             "tau_mem_inv : Hz (constant, shared)",
             "v_leak : 1 (constant, shared)", *extra_lines]
    group = brian2.NeuronGroup(size, "\n".join(lines), method=method, clock=clock,
                               order=update_order + 0.5, namespace=namespace, name=name)
    group.tau_syn_inv = spec.tau_syn_inv * brian2.Hz
    group.tau_mem_inv = spec.tau_mem_inv * brian2.Hz
    group.v_leak = spec.v_leak
    for norse_name, variable in VARIABLES.items():
        setattr(group, variable, state[norse_name])
    group.run_regularly(UPDATE, when="groups", order=update_order, name=f"{name}_update")
    return group
