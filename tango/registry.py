"""Where tiers live and how a name becomes a directory.

A name resolves in this order: (1) an existing local directory, (2) an alias from the
package's ``tango/resources/aliases.toml`` (the alias's public hub checkpoint; where the hub
cannot be reached, the best tier that ``tango train`` registered locally), (3) a Hugging Face
hub id. The tiers of one run resolve together (:func:`resolve_all`): all their aliases from the
hub, or all locally. Trained tiers are cached under ``$TANGO_HOME`` (default ``~/.cache/tango``)
and listed in its ``registry.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

ALIASES_FILE = resources.files("tango.resources") / "aliases.toml"  # shipped inside the package


def tango_home() -> Path:
    """The cache root: ``$TANGO_HOME`` or ``~/.cache/tango``."""
    return Path(os.environ.get("TANGO_HOME", Path.home() / ".cache" / "tango")).expanduser()


def _registry_file() -> Path:
    return tango_home() / "registry.json"


def registered() -> dict[str, dict[str, Any]]:
    """All registered tiers: name -> {path, task, role, metrics, ...}."""
    path = _registry_file()
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def register(name: str, path: str | Path, **info: Any) -> None:
    """Record a trained tier under ``name`` so aliases and ``tango run`` can find it."""
    entries = registered()
    entries[name] = {"path": str(Path(path).resolve()), **info}
    _write(entries)


def forget(names: Sequence[str] = (), *, missing: bool = False) -> list[str]:
    """Drop registry entries: those named, and with ``missing`` every entry whose directory is gone
    (a tier trained into a temporary directory leaves one behind). The directories themselves are
    left alone. Returns the names dropped; an unknown name raises KeyError before anything changes."""
    if isinstance(names, str):
        raise TypeError("forget takes a sequence of names, not one string")
    entries = registered()
    unknown = list(dict.fromkeys(name for name in names if name not in entries))
    if unknown:
        raise KeyError(f"not registered: {', '.join(unknown)} (`tango models list` shows the names)")
    gone = {name for name, entry in entries.items() if missing and not entry_dir_exists(entry)}
    dropped = sorted(set(names) | gone)
    if dropped:
        _write({name: entry for name, entry in entries.items() if name not in dropped})
    return dropped


def entry_dir_exists(entry: dict[str, Any]) -> bool:
    """Whether a registry entry's directory is there (an entry without a path is not)."""
    path = entry.get("path")
    return bool(path) and Path(path).is_dir()


def _write(entries: dict[str, dict[str, Any]]) -> None:
    _registry_file().parent.mkdir(parents=True, exist_ok=True)
    tmp = _registry_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=2, sort_keys=True))
    tmp.replace(_registry_file())


def aliases(path: Path | resources.abc.Traversable = ALIASES_FILE) -> dict[str, dict[str, Any]]:
    """The alias table (the packaged ``tango/resources/aliases.toml``; empty if ``path`` is absent)."""
    if not path.is_file():
        return {}
    with path.open("rb") as file:
        return tomllib.load(file)


def registered_dir(name: str) -> Path | None:
    """The directory registered as ``name``, if it is still there; else None."""
    entry = registered().get(name)
    return Path(entry["path"]) if entry and entry_dir_exists(entry) else None


def _hub_snapshot(repo_id: str) -> Path:
    """Download (or find in the HF cache) a hub checkpoint; raises OSError when unreachable."""
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model", "*.onnx"])
    )


def offline() -> bool:
    """True where the hub must not be asked (HF_HUB_OFFLINE=1 or TANGO_OFFLINE=1)."""
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TANGO_OFFLINE") == "1"


def local_choices() -> list[str]:
    """Names that resolve without a network: registered tiers."""
    return sorted(name for name in registered() if registered_dir(name))


def resolve(name: str | Path) -> Path:
    """Turn a directory, alias or hub id into a local model directory.

    Raises ValueError naming everything that was tried and the local choices.
    """
    return resolve_all([name])[0]


def resolve_all(names: Sequence[str | Path]) -> list[Path]:
    """Resolve the tiers of one run together: their aliases all from the hub, or all locally.

    An alias goes to its hub checkpoint where every alias's hub checkpoint can be had; as soon as
    one cannot (no network, ``TANGO_OFFLINE=1``), every alias goes to its registered local tiers,
    so ``--tier1 distil --tier2 large`` never pairs a hub tier-1 with a local tier-2. Directories,
    registered names and hub ids resolve as :func:`resolve` does. Raises ValueError naming what
    was tried, and the fix, where a name resolves to nothing or an alias has no local tier.
    """
    table = aliases()
    found: list[Path | None] = []
    tried: dict[int, list[str]] = {}
    for k, name in enumerate(names):
        path = Path(name).expanduser()
        if path.is_dir():
            found.append(path)
        else:
            found.append(registered_dir(str(name)))
            tried[k] = [f"local directory {str(path)!r} (not found)"]
    pending = [k for k, name in enumerate(names) if found[k] is None and str(name) in table]
    if pending:
        hub = {k: table[str(names[k])].get("hub") for k in pending}
        if offline():
            for k in pending:
                tried[k].append(f"alias {names[k]!r} -> hub skipped (offline mode)")
        elif not all(hub.values()):
            for k in pending:
                tried[k].append(f"alias {names[k]!r} -> hub skipped (an alias of this run has no hub id)")
        else:
            for k in pending:
                try:
                    found[k] = _hub_snapshot(hub[k])  # type: ignore[arg-type]
                except Exception as error:  # noqa: BLE001 - any hub failure means "not available"
                    tried[k].append(f"alias {names[k]!r} -> hub {hub[k]!r} ({type(error).__name__})")
                    break
        if any(found[k] is None for k in pending):  # one alias must go local: they all do
            on_hub = [names[k] for k in pending if found[k] is not None]
            for k in pending:
                found[k] = _alias_local(str(names[k]), table[str(names[k])], tried[k])
            if on_hub and any(found[k] is None for k in pending):
                for k in pending:
                    tried[k].append(
                        f"(aliases {', '.join(map(repr, on_hub))} reached the hub, but one run's "
                        "aliases resolve all from the hub or all locally; pass a directory to mix them)"
                    )
    for k, name in enumerate(names):
        if found[k] is None and str(name) not in table:
            if not offline() and not str(name).startswith((".", "/", "~")):
                try:
                    found[k] = _hub_snapshot(str(name))
                    continue
                except Exception as error:  # noqa: BLE001
                    tried[k].append(f"hub id {str(name)!r} ({type(error).__name__})")
    missing = [k for k in range(len(names)) if found[k] is None]
    if missing:
        raise ValueError(" ".join(_unresolved(names[k], tried[k]) for k in missing))
    return found  # type: ignore[return-value]


def _alias_local(name: str, alias: dict[str, Any], tried: list[str]) -> Path | None:
    """The first of an alias's ``local`` candidates that is registered here."""
    for candidate in alias.get("local", []):
        found = registered_dir(candidate)
        if found:
            return found
        tried.append(f"alias {name!r} -> registered tier {candidate!r} (not trained here)")
    return None


def _unresolved(name: str | Path, tried: list[str]) -> str:
    choices = local_choices()
    hint = (
        f"local tiers registered here: {', '.join(choices)}"
        if choices
        else "no tiers are registered here yet: train some with `tango models install` and "
        "`tango train` (see docs/models.md)"
    )
    return (
        f"cannot resolve model {str(name)!r}. Tried: "
        + "; ".join(tried)
        + f". {hint}; aliases: "
        + ", ".join(sorted(aliases()))
        + "."
    )
