"""Names and versions of the portable file formats (specified in ``export/FORMAT.md``).

Kept apart from :mod:`hh_plugin.export`, with no imports, so that ``hh-plugin --version``
answers without loading numpy, h5py or a simulator.
"""

#: The ``format`` field of every file's metadata.
FORMAT_NAME = "hh_plugin"
#: Files of one population: a case (specification, state, input) or a run (traces).
POPULATION_FORMAT_VERSION = "1.0"
#: Network files: populations, projections, inputs and, optionally, a run. 1.2 adds the
#: spikes' times inside their steps to a run and the integration method of populations;
#: a file that uses neither is written as 1.1, which older readers read.
NETWORK_FORMAT_VERSION = "1.2"
#: The version of a network file that uses nothing 1.2 added.
NETWORK_BASE_VERSION = "1.1"
