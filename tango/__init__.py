"""tango: spend transformer compute only where an input needs it."""

from tango._version import __version__
from tango.cascade import Cascade, CascadeResult, CascadeStats
from tango.linear import LinearTier  # registers the "linear" kind Tier.from_pretrained loads
from tango.tiers import Tier

__all__ = ["Cascade", "CascadeResult", "CascadeStats", "LinearTier", "Tier", "__version__"]
