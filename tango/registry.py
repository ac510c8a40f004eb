"""Where tiers live and how a name becomes a directory.

A name resolves in this order: (1) an existing local directory, (2) an alias from the
package's ``tango/resources/aliases.toml`` (the alias's public hub checkpoint; where the hub
cannot be reached, the best tier that ``tango train`` registered locally), (3) a Hugging Face
hub id. Trained
tiers are cached under ``$TANGO_HOME`` (default ``~/.cache/tango``) and listed in its
``registry.json``.
"""

from __future__ import annotations

import json
import os
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


def _registered_dir(name: str) -> Path | None:
    entry = registered().get(name)
    if entry and Path(entry["path"]).is_dir():
        return Path(entry["path"])
    return None


def _hub_snapshot(repo_id: str) -> Path:
    """Download (or find in the HF cache) a hub checkpoint; raises OSError when unreachable."""
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model", "*.onnx"])
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TANGO_OFFLINE") == "1"


def local_choices() -> list[str]:
    """Names that resolve without a network: registered tiers."""
    return sorted(name for name in registered() if _registered_dir(name))


def resolve(name: str | Path) -> Path:
    """Turn a directory, alias or hub id into a local model directory.

    Raises ValueError naming everything that was tried and the local choices.
    """
    tried: list[str] = []
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    tried.append(f"local directory {str(path)!r} (not found)")

    if _registered_dir(str(name)):
        return _registered_dir(str(name))  # type: ignore[return-value]
    alias = aliases().get(str(name))
    hub_ids: list[str] = []
    if alias:
        local = list(alias.get("local", []))
        hub_ids = [alias["hub"]] if alias.get("hub") else []
        candidates = [("hub", h) for h in hub_ids] + [("local", n) for n in local]
        if _offline():
            candidates = [c for c in candidates if c[0] == "local"]
            tried.append(f"alias {name!r} -> hub skipped (offline mode)")
        for kind, candidate in candidates:
            if kind == "local":
                found = _registered_dir(candidate)
                if found:
                    return found
                tried.append(f"alias {name!r} -> registered tier {candidate!r} (not trained here)")
            else:
                try:
                    return _hub_snapshot(candidate)
                except Exception as error:  # noqa: BLE001 - any hub failure means "not available"
                    tried.append(f"alias {name!r} -> hub {candidate!r} ({type(error).__name__})")
    elif not _offline() and not str(name).startswith((".", "/", "~")):
        try:
            return _hub_snapshot(str(name))
        except Exception as error:  # noqa: BLE001
            tried.append(f"hub id {str(name)!r} ({type(error).__name__})")

    choices = local_choices()
    hint = (
        f"local tiers registered here: {', '.join(choices)}"
        if choices
        else "no tiers are registered here yet: train some with `tango models install` and "
        "`tango train` (see docs/models.md)"
    )
    raise ValueError(
        f"cannot resolve model {str(name)!r}. Tried: "
        + "; ".join(tried)
        + f". {hint}; aliases: "
        + ", ".join(sorted(aliases()))
        + "."
    )
