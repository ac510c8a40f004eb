"""tango: spend transformer compute only where an input needs it."""

__version__ = "0.1.0"

from tango.cascade import Cascade, CascadeResult, CascadeStats  # noqa: E402
from tango.tiers import Tier  # noqa: E402

__all__ = ["Cascade", "CascadeResult", "CascadeStats", "Tier", "__version__"]
