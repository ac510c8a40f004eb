"""`tango build`: tiers from the [tier.NAME] recipes of a TOML config (train, export, probe)."""

from __future__ import annotations

import click

from tango.cli.base import cli, user_errors


@cli.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.argument("names", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Show the commands a build would run; run none.")
@click.option("--list", "list_only", is_flag=True, help="List the config's tiers and stop.")
@user_errors
def build(config: str, names: tuple[str, ...], dry_run: bool, list_only: bool) -> None:
    """Build the tiers a config's [tier.NAME] tables describe (all of them, or NAMES), in order.

    Each tier is trained (`tango train` with the table's options), then exported to each form in
    its `exports` and probed; steps already done are skipped and an interrupted training resumes,
    so the command is re-runnable. Logs go to $TANGO_HOME/logs. See docs/models.md.

    \b
    Examples:
      tango build configs/sst2.toml --list
      tango build configs/sst2.toml mpnet-base-sst2-g30k minilm-l6-sst2-g30k-imdb
      tango build configs/ag_news.toml --dry-run
    """
    from tango.recipes import build as run_build
    from tango.recipes import read_recipes

    recipes = read_recipes(config)
    if list_only:
        for name, recipe in recipes.items():
            click.echo(
                f"{name}: {recipe.model}" + (f" -> {', '.join(recipe.exports)}" if recipe.exports else "")
            )
        return
    missing = [n for n in names if n not in recipes]
    if missing:
        raise click.UsageError(f"{config} has no [tier.{missing[0]}]; it has {sorted(recipes)}")
    chosen = [recipes[n] for n in names] if names else list(recipes.values())
    try:
        ran = run_build(chosen, dry_run=dry_run, log=click.echo)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{len(ran)} step(s) {'to run' if dry_run else 'run'}; the rest were done")
