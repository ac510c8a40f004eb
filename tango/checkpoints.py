"""A training run's resumable state: what :func:`tango.training.fit` saves every
``checkpoint_every`` steps and a killed run resumes from.

A checkpoint holds the model, optimizer and schedule states, the torch RNG state, the step and
the seconds spent, and the fingerprint of the data and settings it was made with, as canonical
JSON text: a resume with other data or settings is refused. It is written atomically (a kill
mid-save keeps the last one) and loaded with ``weights_only=True``, so a file planted in
``checkpoint/`` cannot run code when loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass(frozen=True)
class Checkpoint:
    """Where one stage of training keeps its resumable state, and what must match to resume it."""

    path: Path
    fingerprint: dict = field(default_factory=dict)  # the data and settings (training.fingerprint)
    keep: bool = False  # save once more at the end, so that a later stage can resume past this one

    def save(self, step: int, seconds: float, model, optimizer, scheduler) -> None:
        state = {
            "step": step,
            "seconds": seconds,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "fingerprint": _fingerprint_text(self.fingerprint),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, self.path.with_suffix(".tmp"))
        self.path.with_suffix(".tmp").replace(self.path)  # atomic: a kill mid-save keeps the last checkpoint

    def load(self, model, optimizer, scheduler) -> tuple[int, float]:
        """Restore the state; returns (step, training seconds spent so far).

        Loaded with ``weights_only=True``: a checkpoint holds tensors, numbers and strings (the
        fingerprint as JSON text), so a file planted in ``checkpoint/`` cannot run code when loaded.
        """
        path = self.path
        try:
            state = torch.load(path, weights_only=True)
        except Exception as error:  # an unpickler refusal, a torn or foreign file
            raise ValueError(
                f"cannot resume from {path}: not a checkpoint tango can load safely "
                f"({type(error).__name__}); delete it or pass resume=False (--no-resume) to start afresh"
            ) from None
        if state.get("fingerprint") != _fingerprint_text(self.fingerprint):
            raise ValueError(
                f"the checkpoint in {path.parent} was made with other data or settings; "
                "delete it or pass resume=False (--no-resume) to start afresh"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        return state["step"], state["seconds"]


def _fingerprint_text(fingerprint: dict) -> str:
    """The fingerprint as canonical JSON text: what a checkpoint stores and compares."""
    return json.dumps(fingerprint, sort_keys=True, default=str)
