r"""Networks from one specification: populations, projections, synapse models, inputs.

The specification is backend-independent (numpy only). Build it once, then run it in
Brian2 (:func:`hh_plugin.brian2.network.build_network`) or PyTorch
(:class:`hh_plugin.torch.network.NetworkModule`); both give the same spikes.

Example:
    >>> from hh_plugin import HHSpec
    >>> from hh_plugin.network import (NetworkSpec, Population, Projection,
    ...     FixedProbability, exponential_conductance, CurrentInput)
    >>> exc = exponential_conductance("e", tau=5.0, E_rev=0.0)
    >>> net = NetworkSpec(
    ...     [Population("E", 80, HHSpec(), seed=1), Population("I", 20, HHSpec(), seed=2)],
    ...     [Projection("E", "I", FixedProbability(0.1, weight=0.05, seed=3), exc, delay=2)],
    ...     [CurrentInput("E", 12.0)], dt=0.01)
    >>> net.order, net.connections["E_to_I_e"].size > 0
    (('E', 'I'), True)

Brian2's ``examples/COBAHH.py`` is :func:`~.cobahh.cobahh_network` (:mod:`.cobahh`).
"""

from .cobahh import cobahh_network
from .connectivity import (AllToAll, Connection, Connector, Dense, FixedProbability, Normal,
                           OneToOne, RandomDelay, Sparse, Uniform)
from .inputs import CurrentInput, PoissonInput, PoissonSource, SpikeSource, SpikeTrains
from .spec import NetworkSpec, Population, Projection
from .synapses import (ALPHA_CONDUCTANCE, BIEXPONENTIAL_CONDUCTANCE, BIEXPONENTIAL_CURRENT,
                       CURRENT_PULSE, EXPONENTIAL_CONDUCTANCE, EXPONENTIAL_CURRENT,
                       NMDA_CONDUCTANCE, GATED_CONDUCTANCE, STDP, ADDITIVE_STDP, Plasticity,
                       PlasticityModel, PlasticityParameter, Synapse, TsodyksMarkram, SynapseModel, SynapseParameter, SynapseState,
                       alpha_conductance, biexponential_conductance, biexponential_current,
                       current_pulse, exponential_conductance, exponential_current,
                       gated_conductance, get_synapse_model, nmda_conductance, register_synapse_model)

__all__ = ["AllToAll", "Connection", "Connector", "Dense", "FixedProbability", "Normal",
           "OneToOne", "RandomDelay", "Sparse", "Uniform", "CurrentInput", "PoissonSource",
           "PoissonInput",
           "SpikeSource", "SpikeTrains", "NetworkSpec", "Population", "Projection",
           "CURRENT_PULSE", "EXPONENTIAL_CONDUCTANCE", "EXPONENTIAL_CURRENT", "Synapse",
           "SynapseModel", "SynapseParameter", "current_pulse", "exponential_conductance",
           "exponential_current", "get_synapse_model", "register_synapse_model",
           "ALPHA_CONDUCTANCE", "BIEXPONENTIAL_CONDUCTANCE", "BIEXPONENTIAL_CURRENT",
           "NMDA_CONDUCTANCE", "GATED_CONDUCTANCE", "gated_conductance", "SynapseState", "TsodyksMarkram", "STDP", "ADDITIVE_STDP", "Plasticity",
           "PlasticityModel", "PlasticityParameter", "alpha_conductance",
           "biexponential_conductance", "biexponential_current", "nmda_conductance",
           "cobahh_network"]
