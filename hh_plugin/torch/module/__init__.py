"""Thin Norse modules of the torch backend."""

from .hh import HH, HHCell, HHRecurrent, HHRecurrentCell

__all__ = ["HH", "HHCell", "HHRecurrent", "HHRecurrentCell"]
