"""When a row may leave the model: one rule, one runtime knob.

- ``maxprob``: exit when the calibrated top probability ``max softmax(logits / T_exit)`` reaches
  ``threshold`` (Schwartz et al. 2020).
- ``entropy``: exit when the entropy of the calibrated distribution, divided by ``log K`` so it
  lies in [0, 1], is at most ``threshold`` (DeeBERT).
- ``patience``: exit when the argmax has not changed for ``patience`` consecutive exits (PABEE).

The last exit always takes every row that is still in the batch; the model enforces that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

POLICIES = ("maxprob", "entropy", "patience")
DEFAULT_THRESHOLDS = {"maxprob": 0.9, "entropy": 0.2}


@dataclass(frozen=True)
class ExitPolicy:
    kind: str = "maxprob"  # one of POLICIES
    threshold: float | None = None  # maxprob / entropy knob; None = DEFAULT_THRESHOLDS[kind]
    patience: int = 2  # patience knob: consecutive exits that must agree with the previous one
    temperatures: tuple[float, ...] | None = None  # one per exit; None = 1.0 everywhere

    def __post_init__(self) -> None:
        if self.kind not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}; got {self.kind!r}")
        if self.kind == "patience" and self.patience < 1:
            raise ValueError(f"patience must be >= 1; got {self.patience}")
        if self.temperatures is not None and min(self.temperatures) <= 0:
            raise ValueError(f"temperatures must be positive; got {self.temperatures}")
        never_early = self.kind == "maxprob" and self.threshold is not None and self.threshold > 1.0
        if self.threshold is not None and not (0.0 <= self.threshold <= 1.0 or never_early):
            raise ValueError(
                f"threshold must lie in [0, 1] (maxprob: above 1 = no row leaves before the last exit); "
                f"got {self.threshold}"
            )

    def probabilities(self, exit_index: int, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities of one exit: (B, K) logits -> (B, K), rows sum to 1."""
        temperature = 1.0 if self.temperatures is None else self.temperatures[exit_index]
        return torch.softmax(logits.float() / temperature, dim=-1)

    def start(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        """Per-row state, (B, 2): previous argmax (-1 = none yet) and how long it has held."""
        state = torch.zeros(batch_size, 2, dtype=torch.long, device=device)
        state[:, 0] = -1
        return state

    def step(
        self, exit_index: int, logits: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Which rows exit here, (B,) bool, and the updated state, (B, 2)."""
        probs = self.probabilities(exit_index, logits)  # (B, K)
        if self.kind == "maxprob":
            threshold = DEFAULT_THRESHOLDS["maxprob"] if self.threshold is None else self.threshold
            return probs.max(dim=-1).values >= threshold, state
        if self.kind == "entropy":
            threshold = DEFAULT_THRESHOLDS["entropy"] if self.threshold is None else self.threshold
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=-1)  # (B,)
            return entropy / math.log(probs.shape[-1]) <= threshold, state
        prediction = probs.argmax(dim=-1)  # (B,)
        same = prediction == state[:, 0]
        streak = torch.where(same, state[:, 1] + 1, torch.zeros_like(state[:, 1]))
        return streak >= self.patience, torch.stack([prediction, streak], dim=1)
