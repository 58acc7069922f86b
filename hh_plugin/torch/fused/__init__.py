"""Fast fused paths of the torch backend (see :mod:`.sequence`)."""

from .cpp import PathUnavailable, cache_dir, load_extension, release_outputs
from .sequence import PATHS, checkpoint_interval, hh_sequence, path_unavailable_reason, resolve_path

__all__ = ["PathUnavailable", "cache_dir", "load_extension", "PATHS",
           "checkpoint_interval", "hh_sequence", "path_unavailable_reason", "release_outputs",
           "resolve_path"]
