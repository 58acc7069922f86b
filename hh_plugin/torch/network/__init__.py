"""PyTorch networks built from a :class:`~hh_plugin.network.NetworkSpec` (see :mod:`.module`)."""

from .module import POPULATION_KINDS, NetworkModule, NetworkOutput, NetworkState
from .projection import ProjectionOperator

__all__ = ["NetworkModule", "NetworkOutput", "NetworkState", "ProjectionOperator",
           "POPULATION_KINDS"]
