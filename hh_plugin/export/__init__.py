r"""Portable export of hh_plugin models and runs: one HDF5 format (``export/FORMAT.md``).

- :func:`save`, :func:`load`, :class:`HHRecord`: single-population files (version 1.0).
- :func:`save_network`, :func:`load_network`, :class:`NetworkRecord`: networks and their
  runs (version 1.1, :mod:`.network_file`).
- :mod:`.torch_adapter`, :mod:`.brian2_adapter`: states, parameters and recordings of
  each backend to and from records (importing them imports torch / Brian2).
- :mod:`.runner`: run a case file on a backend; :mod:`.crosscheck`: compare two runs.

Units everywhere: V in mV, t and dt in ms, I in uA, g in mS, C in uF (the torch adapter
additionally takes the torch backend's ``dt`` in seconds where it says so).
"""

from .errors import CrosscheckError, FormatError, SimulationError
from .io import load, save
from .network_file import NetworkRecord, load_network, save_network
from .record import HHRecord
from .schema import FORMAT_VERSION, SCHEMA

__all__ = ["CrosscheckError", "FormatError", "SimulationError", "HHRecord", "load", "save",
           "NetworkRecord", "load_network", "save_network", "FORMAT_VERSION", "SCHEMA"]
