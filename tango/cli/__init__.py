"""The `tango` command line: a thin click shell over the Python API, one module per command.

Each command parses its options, calls one API function (mostly in :mod:`tango.jobs`) and
prints or writes the result; :mod:`tango.cli.base` holds the group and the shared option
blocks. Importing this package registers every command on :data:`cli`.
"""

from tango.cli import bench, build, calibrate, early_exit, export, models, run, train  # noqa: F401 - registers the commands
from tango.cli.base import _one_line, cli, refuse_unused, user_errors

__all__ = ["_one_line", "cli", "refuse_unused", "user_errors"]
