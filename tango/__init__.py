"""tango: spend transformer compute only where an input needs it."""

from typing import Any

from tango._version import __version__
from tango.cascade import Cascade, CascadeResult, CascadeStats
from tango.linear import LinearTier  # registers the "linear" kind Tier.from_pretrained loads
from tango.tiers import Tier

# Loaded on first use, so that `import tango` stays light (scipy, torch's training side).
_LAZY = {"Target": "tango.tuning", "EarlyExitClassifier": "tango.early_exit"}

__all__ = ["Cascade", "CascadeResult", "CascadeStats", "EarlyExitClassifier", "LinearTier", "Target", "Tier"]
__all__ += ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tango' has no attribute {name!r}")
