"""Conversions into the network specification: a trained Norse model
(:func:`network_from_norse`); a Brian2 network built by the plugin is read back by
:func:`hh_plugin.brian2.transfer.network_spec_from_brian2`."""

from .norse import NorseNetwork, network_from_norse

__all__ = ["NorseNetwork", "network_from_norse"]
