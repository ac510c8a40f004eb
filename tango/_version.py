"""The package version, in its own module so that modules inside tango can import it."""

__version__ = "0.1.0"
