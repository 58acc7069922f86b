"""Errors of the export package: every problem with a file is one :class:`FormatError`."""

from ..text import printable

__all__ = ["printable", "FormatError", "CrosscheckError", "SimulationError"]


class FormatError(ValueError):
    """A file that is not a valid hh_plugin file (format 1.0), with a one-line message.

    ``str(error)`` starts with the file name when one is known, e.g.
    ``case.h5: /state/V has shape (3, 4), expected (3, 5)``; ``error.reason`` is the
    message without the file name.
    """

    def __init__(self, message: str, path=None):
        message = printable(" ".join(str(message).split()))  # one printable line
        self.reason = message
        self.path = None if path is None else str(path)
        super().__init__(message if path is None else f"{path}: {message}")


class CrosscheckError(ValueError):
    """Two files that cannot be compared (different shapes, time axes, missing traces)."""


class SimulationError(ValueError):
    """A case that the model cannot simulate: the state became NaN or infinite."""
