"""tango: spend transformer compute only where an input needs it."""

__version__ = "0.1.0"
