"""NEURON as a backend of the plugin's model and network specifications.

- :mod:`.nmodl`: the NMODL density mechanism generated from a ``ModelDefinition``;
- :mod:`.build`: ``nrnivmodl`` builds cached by content, and loading them;
- :mod:`.integration`: CVODE (default) or NEURON's fixed step;
- :mod:`.cell`: single-compartment cells whose area makes the plugin's units exact;
- :mod:`.single`: uncoupled neurons with constant currents;
- :mod:`.receptors`: the synapse models as point processes;
- :mod:`.spike_rule`: Brian2's refractory spike rule as a point process;
- :mod:`.network`: a ``NetworkSpec`` distributed over MPI ranks by gid
  (:mod:`.mpi` finds an MPI library for NEURON).

See ``docs/neuron.md``. ``import hh_plugin.neuron`` does not import NEURON; the functions
that build or run do.
"""

from .integration import Integration
from .nmodl import Mechanism, generate_mechanism

__all__ = ["Integration", "Mechanism", "generate_mechanism", "run_neurons",
           "run_network", "mechanism_sources"]


def run_neurons(*args, **kwargs):
    """:func:`hh_plugin.neuron.single.run_neurons`."""
    from .single import run_neurons as run

    return run(*args, **kwargs)


def run_network(*args, **kwargs):
    """:func:`hh_plugin.neuron.network.run_network`."""
    from .network import run_network as run

    return run(*args, **kwargs)


def mechanism_sources(models=(), synapses: bool = True):
    """``{mechanism name: NMODL source}`` of ``models`` (``ModelDefinition`` objects) and,
    with ``synapses``, of the generated synapse point processes and refractory spike
    rule: what
    :func:`hh_plugin.neuron.build.ensure_mechanisms` takes to compile them in one
    ``nrnivmodl`` run."""
    from .receptors import SOURCES
    from .spike_rule import REFRACTORY, REFRACTORY_SOURCE

    out = {}
    for model in models:
        mech = generate_mechanism(model)
        out[mech.suffix] = mech.source
    if synapses:
        out.update(SOURCES)
        out[REFRACTORY] = REFRACTORY_SOURCE
    return out
