"""Every module and function stays small enough to read whole (issue #30): no module over 500
lines, no function over 60 lines or 10 parameters (positional and keyword-only, ``self``/``cls``
and ``*args``/``**kwargs`` aside; docstrings count as lines). Click commands are exempt: their
bodies are mostly option declarations. What ``PENDING`` names waits, each with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 10

# Not cut yet, each with why it waits: a module ("tango/jobs.py", with all its functions) or one
# function ("tango/cli/base.py:build_model"). Remove an entry once it is done.
PENDING: dict[str, str] = {}

CLICK_DECORATORS = {"cli.command", "click.command", "cli.group", "click.group"}


def decorator_name(node: ast.expr) -> str:
    """``@cli.command("run")`` -> ``cli.command``; ``@click.group`` -> ``click.group``."""
    if isinstance(node, ast.Call):
        node = node.func
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def is_click_command(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(decorator_name(d) in CLICK_DECORATORS for d in function.decorator_list)


def parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Positional and keyword-only parameters, ``self``/``cls`` and ``*args``/``**kwargs`` aside."""
    args = function.args
    return len([a for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")])


def offences(source: str, name: str, pending: dict[str, str] | None = None) -> list[str]:
    """What in the module ``source`` (reported as ``name``) is over a limit, ``pending`` aside."""
    pending = PENDING if pending is None else pending
    if name in pending:
        return []
    found = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{name}: {lines} lines (at most {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or is_click_command(node):
            continue
        if f"{name}:{node.name}" in pending:
            continue
        where = f"{name}:{node.lineno} {node.name}"
        length = node.end_lineno - node.lineno + 1
        if length > MAX_FUNCTION_LINES:
            found.append(f"{where}: {length} lines (at most {MAX_FUNCTION_LINES})")
        count = parameter_count(node)
        if count > MAX_PARAMETERS:
            found.append(f"{where}: {count} parameters (at most {MAX_PARAMETERS})")
    return found


def test_the_checker_counts_lines_and_parameters():
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    params = ", ".join(f"p{i}" for i in range(11))
    source = (
        f"def long():\n{body}\n\n\ndef wide(self, {params}, *args, **kwargs):\n    pass\n\n\n"
        f"@cli.command()\ndef command({params}):\n{body}\n\n\n"
        f"def fine(self, {', '.join(f'p{i}' for i in range(10))}, *args, **kwargs):\n    pass\n"
    )
    assert offences(source, "big.py", {}) == [
        "big.py:1 long: 61 lines (at most 60)",
        "big.py:64 wide: 11 parameters (at most 10)",
    ]
    assert offences(source, "big.py", {"big.py:long": "later", "big.py:wide": "later"}) == []
    assert offences("\n" * 501, "long.py", {}) == ["long.py: 501 lines (at most 500)"]
    assert offences("\n" * 501, "long.py", {"long.py": "later"}) == []


def test_no_module_or_function_is_too_big():
    found = []
    for path in sorted((ROOT / "tango").rglob("*.py")):
        found += offences(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    assert not found, "too big (issue #30):\n" + "\n".join(found)


def test_what_waits_still_exists():
    for entry in PENDING:
        path, _, function = entry.partition(":")
        source = (ROOT / path).read_text(encoding="utf-8")
        assert not function or f"def {function}(" in source, f"{entry} is gone: drop it from PENDING"
