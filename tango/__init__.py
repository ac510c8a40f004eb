"""tango: spend transformer compute only where an input needs it."""

from tango._version import __version__
from tango.cascade import Cascade, CascadeResult, CascadeStats
from tango.tiers import Tier

__all__ = ["Cascade", "CascadeResult", "CascadeStats", "Tier", "__version__"]
