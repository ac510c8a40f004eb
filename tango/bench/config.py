"""`tango bench --config FILE:NAME`: a ``[bench.NAME]`` table of a TOML config as the command's
option defaults, so that a benchmark is a declarative recipe (configs/*.toml) that names its
tiers, rows and settings, and every result it writes names the config in its command.

Keys are the command's option names (``tiers``, ``data``, ``calibration_data``, ``repeats``, ...;
``-`` or ``_``). ``data`` and ``calibration_data`` are paths relative to the file's top-level
``data_root`` (itself relative to the file; default: the file's folder), except
``calibration_data = "held-out"``; ``out`` is relative to where the command runs. Unknown keys
are refused with the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PATH_KEYS = {"data": "data_path", "calibration_data": "calibration_path"}
RENAMED = {"out": "out_dir", **PATH_KEYS}  # config key -> the command's parameter name


def bench_table(value: str, params: set[str]) -> dict[str, Any]:
    """The ``[bench.NAME]`` table of ``FILE:NAME`` as click defaults for a command with ``params``."""
    import tomllib

    file, _, name = value.rpartition(":")
    if not file:
        raise ValueError(f"--config takes FILE:NAME (a [bench.NAME] table), got {value!r}")
    path = Path(file)
    try:
        config = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--config: no file {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"--config: {path} is not valid TOML: {error}") from None
    tables = config.get("bench", {})
    if name not in tables:
        raise ValueError(f"{path} has no [bench.{name}] table; it has {sorted(tables) or 'none'}")
    root = (path.parent / config.get("data_root", ".")).resolve()
    defaults: dict[str, Any] = {}
    for key, item in tables[name].items():
        param = RENAMED.get(key.replace("-", "_"), key.replace("-", "_"))
        if param not in params:
            raise ValueError(f"{path}, [bench.{name}]: {key!r} is not a tango bench option")
        if param in PATH_KEYS.values() and item != "held-out":
            item = str(root / item)
        if param == "tiers" and isinstance(item, list):
            item = ",".join(item)
        defaults[param] = item
    return defaults
