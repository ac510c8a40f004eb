"""A cascade directory on disk: ``cascade.json`` read and checked, and where its tiers may live.

:meth:`tango.cascade.Cascade.save_pretrained` writes ``cascade.json`` (tango version, tier
sub-directories, thresholds, temperatures, confidence kind, labels, calibration record, target)
beside ``tier0/``, ``tier1/``, ...; :meth:`~tango.cascade.Cascade.from_pretrained` reads it back
through :func:`read_cascade_manifest`, whose errors name the file and the field. A directory
received from someone loads only its own tiers (:func:`tier_dir`), never a path elsewhere or a
hub name, unless the caller allows external tiers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tango.confidence import CONFIDENCE_KINDS

MANIFEST = "cascade.json"


def read_cascade_manifest(directory: Path) -> dict[str, Any]:
    """``directory/cascade.json``, each field checked; errors name the file and the field."""
    path = directory / MANIFEST
    if not path.exists():
        raise FileNotFoundError(
            f"{directory} is not a cascade directory: no {MANIFEST}. "
            "Make one with Cascade(...).save_pretrained(dir)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(manifest).__name__}")
    tiers = manifest.get("tiers")
    if not isinstance(tiers, list) or len(tiers) < 1:
        raise ValueError(
            f"{path}: field 'tiers' must be a list of {{\"path\": ...}} objects, got {tiers!r:.60}"
        )
    for k, entry in enumerate(tiers):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
            raise ValueError(
                f"{path}: field 'tiers[{k}]' must be an object with a 'path' string, got {entry!r:.60}"
            )
    _check_numbers(path, "thresholds", manifest.get("thresholds"), len(tiers) - 1, allow_scalar=True)
    if manifest.get("temperatures") is not None:
        _check_numbers(path, "temperatures", manifest["temperatures"], len(tiers))
    kind = manifest.get("confidence", "maxprob")
    if kind not in CONFIDENCE_KINDS:
        raise ValueError(f"{path}: field 'confidence' must be one of {list(CONFIDENCE_KINDS)}, got {kind!r}")
    return manifest


def _check_numbers(path: Path, name: str, value: Any, count: int, allow_scalar: bool = False) -> None:
    """A list of ``count`` numbers (JSON numbers, not strings or booleans), or one number."""
    if allow_scalar and _is_number(value):
        return
    if not isinstance(value, list) or len(value) != count or not all(_is_number(v) for v in value):
        raise ValueError(f"{path}: field '{name}' must be a list of {count} numbers, got {value!r:.60}")


def saved_target(directory: Path, record: Any) -> Any:
    """``cascade.json``'s ``target`` as a :class:`tango.tuning.Target` (None when absent)."""
    if record is None:
        return None
    from tango.tuning import Target

    try:
        return Target(**record)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{directory / MANIFEST}: field 'target' is not a target: {error}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def tier_dir(directory: Path, k: int, relative: str, allow_external: bool) -> Path:
    """Tier k's directory: inside the cascade directory unless external tiers are allowed."""
    where = f"{directory / MANIFEST}: field 'tiers[{k}].path'"
    if allow_external:
        candidate = directory / relative
        return candidate if candidate.exists() else Path(relative)  # a name: resolved as tango resolves names
    root = directory.resolve()
    target = (directory / relative).resolve()
    if Path(relative).is_absolute() or not target.is_relative_to(root):
        raise ValueError(
            f"{where} is {relative!r}, outside the cascade directory; a cascade loads only its own "
            "tiers. Pass allow_external_tiers=True (--allow-external-tiers) if you trust it"
        )
    if not target.is_dir():
        raise ValueError(f"{where} is {relative!r}, but {target} is not a directory")
    return target
