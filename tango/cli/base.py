"""The `tango` group and what every command shares besides its options (those are in
:mod:`tango.cli.options`): one-line errors, refusals of options that do not apply, tiers by name,
building a cascade, the checks of a scoring run and the refusal of a model of the other kind.

Set ``TANGO_DEBUG=1`` to see full tracebacks instead of one-line errors.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the API's ValueError/TypeError/KeyError and every OS error into one-line click errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, TypeError, OSError, KeyError) as error:
            if os.environ.get("TANGO_DEBUG"):
                raise
            raise click.ClickException(_one_line(error)) from error

    return wrapper


def _one_line(error: BaseException) -> str:
    """The message a person needs: for OS errors the reason and the path, no traceback."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, OSError) and error.strerror:
        where = " -> ".join(str(f) for f in (error.filename, error.filename2) if f is not None)
        return f"{error.strerror}: {where}" if where else error.strerror
    return str(error)


def refuse_unused(names: tuple[str, ...], context: str, why: str) -> None:
    """A UsageError naming each option in ``names`` the user set (defaults are fine): it does not
    apply in ``context``, and ``why``. Options that do not apply are refused, never ignored."""
    ctx = click.get_current_context()
    set_here = [
        name
        for name in names
        if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    ]
    if set_here:
        params = {param.name: param for param in ctx.command.params}
        shown = ", ".join(params[name].opts[0] for name in set_here)
        raise click.UsageError(
            f"{shown} {'does' if len(set_here) == 1 else 'do'} not apply to {context}: {why}"
        )


def command_line() -> str:
    """The running command as the user gave it (options set on the command line, in declaration
    order), for results to name what made them; read from click, not ``sys.argv``."""
    import shlex

    ctx = click.get_current_context()
    words = ["tango", ctx.info_name or ""]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            words.append(str(value))
        elif isinstance(param, click.Option) and param.is_flag:
            words.append(param.opts[0] if value else (param.secondary_opts or param.opts)[0])
        elif isinstance(value, (tuple, list)):
            words += [w for v in value for w in (param.opts[0], str(v))]
        else:
            words += [param.opts[0], str(value)]
    return shlex.join(words)


def terminal() -> dict[str, Callable[[str], None]]:
    """Where a job (tango.jobs) reports: results (``log``) to stdout, notes (``warn``) to stderr."""
    return {"log": click.echo, "warn": lambda message: click.echo(message, err=True)}


class _Command(click.Command):
    """A tango command; an unknown ``--early-exit`` (the flag early-exit models once took on
    train and run) names the commands of their own."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as error:
            if error.option_name == "--early-exit":
                error.message = (
                    f"{error.message.rstrip('.')}: early-exit models have their own commands "
                    "(`tango early-exit --help`)"
                )
            raise


class _Group(click.Group):
    command_class = _Command


@click.group(cls=_Group)
@click.version_option(package_name="tango")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Show other libraries' logs, warnings and progress bars (transformers, ONNX, the hub).",
)
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """tango: cheap transformer text classification on CPUs (cascades and early exit)."""
    if not verbose:
        from tango.quiet import quiet_libraries

        ctx.with_resource(quiet_libraries())  # undone when the command ends


# --- what the commands share besides their options (tango.cli.options) -------------------------


def tier_names(tiers: str | None, *numbered: str | None) -> list[str]:
    """The tiers named by --tiers a,b,c or by --tier1/--tier2/--tier3 (not both), cheapest first."""
    given = [name for name in numbered if name]
    if tiers:
        if given:
            raise click.UsageError("give --tiers or --tier1/--tier2/--tier3, not both")
        names = [name.strip() for name in tiers.split(",")]
        if len(names) < 2 or not all(names):
            raise click.UsageError(f"--tiers needs two or more comma-separated names, got {tiers!r}")
        return names
    if given and given != [name for name in numbered[: len(given)]]:
        raise click.UsageError("number tiers from 1 without gaps: --tier1, --tier2, then --tier3")
    return given


def build_cascade(
    cascade_dir: str | None,
    names: list[str],
    threshold: tuple[float, ...],
    confidence: str | None,
    runtime: str,
    threads: int | None,
    batch_size: int,
    allow_external_tiers: bool = False,
) -> Any:
    """The Cascade the options describe (shared by run and calibrate)."""
    from tango.jobs import load_cascade

    if cascade_dir and names:
        raise click.UsageError(
            "give either --cascade or tiers by name (--tiers or --tier1/--tier2), not both"
        )
    if not cascade_dir and len(names) < 2:
        raise click.UsageError("give --cascade DIR, or at least --tier1 and --tier2 (or --tiers a,b)")
    options = {"runtime": runtime, "threads": threads, "batch_size": batch_size}
    return load_cascade(
        cascade_dir, names, threshold, confidence, allow_external_tiers=allow_external_tiers, **options
    )


def columns_of(options: dict[str, Any]) -> dict[str, str | None]:
    """The columns of a labelled file (tango.cli.options.data_options), taken out of ``options``
    under the names the API gives them."""
    names = {"text_column": "text_column", "pair_column": "text_pair_column", "label_column": "label_column"}
    return {api: options.pop(option) for option, api in names.items()}


def refuse_early_exit_model(name: str | None, command: str, instead: str) -> None:
    """A UsageError when ``name`` is an early-exit model (a directory holding early_exit.json, or
    the registered name of one): `tango COMMAND` takes cascades and tiers; ``instead`` is the
    command that takes it."""
    from tango.jobs import early_exit_dir

    if name and (found := early_exit_dir(name)):
        raise click.UsageError(
            f"{name} is an early-exit model ({found} holds early_exit.json), which `tango {command}` "
            f"does not take: use `{instead}`"
        )


def check_local_run(input_path: str, output_path: str, options: dict[str, Any]) -> None:
    """A run on this machine, before any model loads or any file is written: every path checked
    (tango.runfiles) and, when not given, the input's text (and pair) columns guessed into
    ``options`` (the scoring options of tango.cli.options)."""
    from tango.data import guess_columns
    from tango.runfiles import RunFiles

    errors = options["errors_path"]
    if errors and os.path.isdir(errors):  # --errors is a directory only with --engine ray
        raise click.BadParameter(
            f"{errors!r} is a directory: the local engine writes one file", param_hint="--errors"
        )
    files = RunFiles.plan(input_path, output_path, errors)
    files.check(resume=options["resume"], overwrite=options["overwrite"])
    if options["text_column"] is None:
        text, pair, _ = guess_columns(input_path, options["input_format"], label=False)
        options["text_column"], options["pair_column"] = text, options["pair_column"] or pair


def score_and_report(
    model: Any, input_path: str, output_path: str, quiet: bool, options: dict[str, Any]
) -> None:
    """Score ``input_path`` with ``model`` (tango.jobs.score) and, unless ``quiet``, show the totals."""
    from tango.jobs import score

    summary = score(model, input_path, output_path, progress=not quiet, **options)
    if not quiet:
        click.echo(summary.report(), err=True)
