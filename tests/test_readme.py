"""README's code blocks: every `tango` command line parses, and the Python block runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from tiny_models import build_tiny_classifier

from tango.cascade import Cascade
from tango.cli import cli
from tango.tiers import Tier

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def tango_commands() -> list[str]:
    """Each `tango ...` command of the bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|\|", line.split("  #")[0]):
                part = part.strip()
                if part.startswith("tango "):
                    commands.append(part)
    return commands


def test_readme_has_tango_commands():
    assert len(tango_commands()) >= 10


@pytest.mark.parametrize("command", tango_commands())
def test_every_readme_command_parses(command):
    """The options and subcommands README shows exist (parsed by click, nothing runs)."""
    args = shlex.split(command)[1:]
    group_ctx = cli.make_context("tango", list(args), resilient_parsing=True)
    name, sub, rest = cli.resolve_command(group_ctx, group_ctx.protected_args + group_ctx.args)
    assert sub is not None, f"no such command in README: {command}"
    if isinstance(sub, click.Group):
        name, sub, rest = sub.resolve_command(group_ctx, rest)
    known = {opt for param in sub.params for opt in param.opts + param.secondary_opts}
    used = {arg.split("=")[0] for arg in rest if arg.startswith("-")}
    assert used <= known, f"{command}: unknown options {sorted(used - known)}"


def test_readme_python_block_runs(tmp_path, monkeypatch):
    """The README's Python example, against a tiny saved cascade where it expects cascades/sst2."""
    monkeypatch.chdir(tmp_path)
    tiers = [Tier.from_pretrained(build_tiny_classifier(tmp_path / f"t{k}", seed=k)) for k in range(2)]
    Cascade(tiers, thresholds=0.9).save_pretrained(tmp_path / "cascades" / "sst2")
    (code,) = blocks("python")
    namespace = {"texts": ["a good film", "a bad film", "it was fine"]}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert len(namespace["result"].labels) == 3
