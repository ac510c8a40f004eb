"""`python -m tango` = the `tango` command."""

from tango.cli import cli

if __name__ == "__main__":
    cli()
