"""The `tango` group and what every command shares: one-line errors, refusals of options that
do not apply, the option blocks (columns, tiers, runtime, cascade) and building the model.

Set ``TANGO_DEBUG=1`` to see full tracebacks instead of one-line errors.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
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


@click.group()
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


# --- shared option blocks; the commands live in the other modules of tango.cli ------------------


def stacked(*options: Callable[..., Any]) -> Callable[..., Any]:
    """One decorator applying ``options`` in the order given (the order --help lists them)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


# Columns of a labelled file (guessed from common names when not given).
data_options = stacked(
    click.option("--text-column", default=None, help="Text column (default: guessed)."),
    click.option("--pair-column", default=None, help="Second text column, for pair tasks."),
    click.option("--label-column", default=None, help="Label column (default: guessed)."),
)

# Tiers by name: --tier1/--tier2/--tier3 or --tiers a,b,c (read by tier_names).
tier_options = stacked(
    click.option(
        "--tier1", help="Tier-1 model: a directory, an alias (tango/resources/aliases.toml) or a hub id."
    ),
    click.option("--tier2", help="Tier-2 model, same forms as --tier1."),
    click.option("--tier3", help="Optional third tier, same forms as --tier1."),
    click.option(
        "--tiers",
        help="All tiers, cheapest first, comma-separated (e.g. linear-sst2,distil,large); "
        "instead of --tier1/--tier2/--tier3.",
    ),
)

confidence_option = click.option(
    "--confidence",
    type=click.Choice(["maxprob", "margin", "entropy"]),
    default=None,
    help="How confidence is read off the probabilities, the kind the threshold acts on "
    "(default: the cascade's, else maxprob).",
)

# Where every tier runs: the runtime and its threads.
runtime_options = stacked(
    click.option(
        "--runtime",
        type=click.Choice(["auto", "onnx", "openvino", "torch"]),
        default="auto",
        show_default=True,
        help="Runtime for every tier; auto = the fastest that `tango probe` recorded, "
        "else ONNX if model.onnx exists, OpenVINO if an IR does, else PyTorch.",
    ),
    click.option(
        "--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads (default: all cores)."
    ),
)

# Options that build a cascade: a saved one (--cascade) or tiers by name (--tier1/2/3, --tiers).
cascade_options = stacked(
    click.option(
        "--cascade",
        "cascade_dir",
        type=click.Path(exists=True, file_okay=False),
        help="A saved (calibrated) cascade directory.",
    ),
    click.option(
        "--allow-external-tiers",
        is_flag=True,
        help="Let --cascade load tiers its cascade.json names outside its directory (default: refused).",
    ),
    tier_options,
    click.option(
        "--threshold",
        type=float,
        multiple=True,
        help="Escalate rows whose confidence is below this (once per tier boundary). "
        "Default: the cascade's calibrated threshold, else 0.9.",
    ),
    confidence_option,
    runtime_options,
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=32,
        show_default=True,
        help="Rows per batch, per tier.",
    ),
)


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


@dataclass(frozen=True)
class ModelOptions:
    """How `tango run` loads its model: the cascade's thresholds, confidence and tiers' runtime, or
    an early-exit model's policy, patience and device."""

    threshold: tuple[float, ...] = ()
    confidence: str | None = None
    runtime: str = "auto"
    threads: int | None = None
    batch_size: int = 32
    policy: str | None = None
    patience: int | None = None
    device: str = "cpu"
    allow_external_tiers: bool = False


def build_model(
    early_exit: str | None, cascade_dir: str | None, names: list[str], options: ModelOptions
) -> Any:
    """`tango run`'s model: an early-exit model, or the cascade the options describe."""
    from tango.jobs import load_early_exit

    if early_exit:
        if cascade_dir or names or options.confidence:
            raise click.UsageError("--early-exit scores with one model: drop --cascade/--tier*/--confidence")
        if len(options.threshold) > 1:
            raise click.UsageError("an early-exit model takes one --threshold (its policy's knob)")
        knob = options.threshold[0] if options.threshold else None
        model = (options.policy, options.patience, options.device, options.threads, options.batch_size)
        return load_early_exit(early_exit, knob, *model)
    if options.policy or options.patience is not None or options.device != "cpu":
        raise click.UsageError("--policy, --patience and --device apply to --early-exit models")
    if not cascade_dir and not options.threshold:
        click.echo(
            "note: no calibrated threshold; using 0.9. Run `tango calibrate` to choose one from evidence.",
            err=True,
        )
    tiers = (options.runtime, options.threads, options.batch_size, options.allow_external_tiers)
    return build_cascade(cascade_dir, names, options.threshold, options.confidence, *tiers)
