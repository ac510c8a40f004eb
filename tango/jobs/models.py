"""What every job shares: how it reports (``log`` for results, ``warn`` for notes a person should
see, on stderr in the CLI) and the model a command names."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tango.modeldir import EARLY_EXIT_FILE

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def load_cascade(
    cascade_dir: str | Path | None,
    names: list[str],
    thresholds: tuple[float, ...] = (),
    confidence: str | None = None,
    allow_external_tiers: bool = False,
    **tier_options: Any,
) -> Any:
    """A saved cascade (``cascade_dir``), else one of the tiers ``names``, cheapest first.

    ``thresholds``: none (the cascade's calibrated ones, else 0.9), one for every boundary, or one
    per boundary. ``tier_options`` (runtime, threads, batch_size) go to every tier. A saved
    cascade loads only the tiers inside its directory unless ``allow_external_tiers``.
    """
    from tango.cascade import Cascade
    from tango.tiers import load_tiers

    chosen: Any = list(thresholds) if thresholds else None
    if chosen and len(chosen) == 1:
        chosen = chosen[0]
    if cascade_dir:
        cascade = Cascade.from_pretrained(
            cascade_dir, thresholds=chosen, allow_external_tiers=allow_external_tiers, **tier_options
        )
        if confidence:
            cascade.confidence = confidence
        return cascade
    tiers = load_tiers(names, **tier_options)  # aliases all from the hub or all local
    return Cascade(tiers, thresholds=chosen, confidence=confidence or "maxprob")


def load_early_exit(
    name: str,
    threshold: float | None = None,
    policy: str | None = None,
    patience: int | None = None,
    device: str = "cpu",
    threads: int | None = None,
    batch_size: int = 32,
) -> Any:
    """The early-exit model ``name`` (a directory or registered name); bf16 where the hardware has it."""
    from tango.early_exit import EarlyExitClassifier
    from tango.hardware import set_torch_threads
    from tango.registry import resolve

    if threads:
        set_torch_threads(threads)
    return EarlyExitClassifier.from_pretrained(
        resolve(name),
        device=device,
        policy=policy,
        threshold=threshold,
        patience=patience,
        precision="auto",
        batch_size=batch_size,
    )


def early_exit_dir(name: str) -> Path | None:
    """``name`` as an early-exit model: a directory holding ``early_exit.json``, or the registered
    name of one (``tango early-exit train --name``); None when it is neither (a cascade)."""
    from tango.registry import registered_dir

    path = Path(name).expanduser()
    if not path.exists():
        path = registered_dir(name) or path
    return path if (path / EARLY_EXIT_FILE).is_file() else None
