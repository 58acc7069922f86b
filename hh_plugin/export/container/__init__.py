"""The container layer of the portable format: what every hh_plugin file is, whatever it holds.

One HDF5 file with a 512-byte checksum block (:mod:`.checksum`), the root attributes
``format``, ``format_version`` and ``metadata``, and numeric datasets with a ``unit``
attribute. This layer writes it atomically (:mod:`.atomic`), and reads it as hostile
input: the file probed without HDF5, every member checked from the headers before any
data is read (:mod:`.members`) against the reader's limits (:mod:`.limits`), HDF5 run in
a sandboxed child unless the caller trusts the file (:mod:`.trust`, :mod:`.sandbox`).

It knows no record kind: the population files (format 1.0,
:mod:`hh_plugin.export.population_file`) and network files (formats 1.1 and 1.2,
:mod:`hh_plugin.export.network_file`) sit on top of it and check its
:class:`~.hdf5.RawFile` against their metadata. Nothing here imports them, the model, or
a simulator.
"""
