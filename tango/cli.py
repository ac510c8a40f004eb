"""The `tango` command line: a thin click shell over the Python API.

Each command parses its options, calls one API function and prints or writes the result.
Set ``TANGO_DEBUG=1`` to see full tracebacks instead of one-line errors.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the API's ValueError/TypeError/FileNotFoundError into one-line click errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, TypeError, FileNotFoundError, KeyError) as error:
            if os.environ.get("TANGO_DEBUG"):
                raise
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            raise click.ClickException(str(message)) from error

    return wrapper


@click.group()
@click.version_option(package_name="tango")
def cli() -> None:
    """tango: cheap transformer text classification on CPUs (cascades and early exit)."""


# --- commands are added below, one small function each -----------------------------------------
