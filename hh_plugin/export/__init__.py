r"""Portable export of hh_plugin models and runs: one HDF5 format (``export/FORMAT.md``).

- :func:`save`, :func:`load`, :class:`HHRecord`: single-population files (version 1.0,
  :mod:`.population_file`).
- :func:`save_network`, :func:`load_network`, :class:`NetworkRecord`: networks and their
  runs (version 1.1, :mod:`.network_file`); :func:`load_any` reads either.
- :func:`write_checksum`: re-stamp the content checksum of a file edited on purpose with
  another HDF5 tool.
- :mod:`.container`: the layer under both kinds (atomic writes, checksum, allowed
  members, limits, the sandboxed read); :mod:`.io` lists the layers.
- :mod:`.torch_adapter`, :mod:`.brian2_adapter`: states, parameters and recordings of
  each backend to and from records (importing them imports torch / Brian2).
- :mod:`.runner`: run a case file on a backend; :mod:`.crosscheck`: compare two runs.

Units everywhere: V in mV, t and dt in ms, I in uA, g in mS, C in uF (the torch adapter
additionally takes the torch backend's ``dt`` in seconds where it says so).

The names are imported at first use, so that the sandboxed reader's child process
(:mod:`.container.sandbox`) imports only the container layer, not the model.
"""

__all__ = ["CrosscheckError", "FormatError", "SimulationError", "HHRecord", "load", "save",
           "NetworkRecord", "load_network", "load_any", "save_network", "write_checksum",
           "FORMAT_VERSION", "SCHEMA"]

_WHERE = {"CrosscheckError": "errors", "FormatError": "errors", "SimulationError": "errors",
          "HHRecord": "population_file", "load": "io", "save": "io", "NetworkRecord": "io",
          "load_network": "io", "load_any": "io", "save_network": "io",
          "write_checksum": "container.checksum", "FORMAT_VERSION": "schema",
          "SCHEMA": "schema"}


def __getattr__(name):
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
