"""The totals of one ``tango run``: rows in and out, errors, and where rows were answered.

A cascade's result counts rows per tier (answered, scored, seconds); an early-exit result counts
rows per exit layer. The summary is also the content of the run's progress file, so a resumed
run continues its totals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tango.cascade import CascadeResult


@dataclass
class RunSummary:
    """Totals of a scoring run (across resumes); also the content of the progress file."""

    rows_in: int = 0  # input rows consumed (good + bad)
    rows_out: int = 0  # rows scored and written
    errors: int = 0  # bad rows written to the errors file
    skipped: int = 0  # bad rows dropped by on_error="skip" (each one reported on stderr)
    truncated: int = 0  # rows whose answering tier read them cut to its max length
    seconds: float = 0.0  # wall clock, including reading and writing
    tier_rows: list[int] = field(default_factory=list)  # rows scored by each tier
    tier_answered: list[int] = field(default_factory=list)  # final answers from each tier
    tier_seconds: list[float] = field(default_factory=list)  # tokenize + infer per tier
    exit_rows: dict[str, int] = field(default_factory=dict)  # early exit: rows leaving at each layer
    num_layers: int = 0  # early exit: the encoder's depth (the last exit)
    output_bytes: int = 0  # committed length of the output file
    errors_bytes: int = 0  # committed length of the errors file
    output_sha256: str = ""  # SHA-256 of the committed bytes of the output file
    errors_sha256: str = ""  # SHA-256 of the committed bytes of the errors file
    failed_line: int = 0  # on_error="fail" stopped at this input line (0: it did not)
    input_prefix: dict[str, Any] = field(default_factory=dict)  # the lines before failed_line

    @property
    def rows_per_s(self) -> float:
        return self.rows_out / self.seconds if self.seconds else 0.0

    @property
    def mean_exit_layer(self) -> float | None:
        """Early exit: encoder layers run per row, on average."""
        rows = sum(self.exit_rows.values())
        return sum(int(k) * n for k, n in self.exit_rows.items()) / rows if rows else None

    @property
    def estimated_speedup(self) -> float | None:
        """Cascade: tier-last-alone time over cascade time, from measured per-row tier costs.

        Early exit: encoder depth over the mean exit layer (layers saved; heads not counted).
        """
        if self.exit_rows:
            mean = self.mean_exit_layer
            return self.num_layers / mean if mean else None
        if not self.tier_rows or not self.tier_rows[-1] or not sum(self.tier_seconds):
            return None
        last_cost = self.tier_seconds[-1] / self.tier_rows[-1]
        return last_cost * self.rows_out / sum(self.tier_seconds)

    def add(self, result: Any) -> None:
        """Count a chunk's result: a CascadeResult, or an early-exit result (``exit_layer``)."""
        if not isinstance(result, CascadeResult):
            for layer, count in zip(*np.unique(result.exit_layer, return_counts=True), strict=True):
                self.exit_rows[str(layer)] = self.exit_rows.get(str(layer), 0) + int(count)
            self.rows_out += len(result.labels)
            return
        tiers = result.stats.tiers
        if not self.tier_rows:
            self.tier_rows, self.tier_answered, self.tier_seconds = (
                [0] * len(tiers),
                [0] * len(tiers),
                [0.0] * len(tiers),
            )
        for k, stats in enumerate(tiers):
            self.tier_rows[k] += stats.rows
            self.tier_answered[k] += stats.answered
            self.tier_seconds[k] += stats.seconds
        self.truncated += int(np.count_nonzero(result.truncated))
        self.rows_out += len(result)

    def report(self) -> str:
        """The end-of-run summary a person reads."""
        lines = [
            f"rows in: {self.rows_in:,}   scored: {self.rows_out:,}   errors: {self.errors:,}"
            f"   skipped: {self.skipped:,}   truncated: {self.truncated:,}",
            f"time: {self.seconds:.1f} s   {self.rows_per_s:,.1f} rows/s",
        ]
        if self.exit_rows:
            return "\n".join(lines + self._exit_report())
        for k, (answered, seconds) in enumerate(zip(self.tier_answered, self.tier_seconds, strict=True)):
            share = answered / self.rows_out if self.rows_out else 0.0
            lines.append(
                f"tier {k + 1}: answered {share:6.1%} of rows, scored {self.tier_rows[k]:,} rows"
                f" in {seconds:.1f} s"
            )
        speedup = self.estimated_speedup
        lines.append(
            "estimated speedup over the last tier alone: "
            + (f"{speedup:.2f}x" if speedup else "n/a (no row reached it, its cost is unmeasured)")
        )
        return "\n".join(lines)

    def _exit_report(self) -> list[str]:
        lines = [
            f"exit at layer {layer:>2}: {count / self.rows_out:6.1%} of rows"
            for layer, count in sorted((int(k), n) for k, n in self.exit_rows.items())
        ]
        speedup = self.estimated_speedup
        lines.append(
            f"mean exit layer: {self.mean_exit_layer:.2f} of {self.num_layers}"
            + (f"   estimated speedup over the full model: {speedup:.2f}x (in layers)" if speedup else "")
        )
        return lines

    def progress(self) -> dict[str, str]:
        """The progress bar's live figures."""
        if self.exit_rows:
            return {"mean_exit_layer": f"{self.mean_exit_layer or 0:.2f}"}
        answered = self.tier_answered[0] if self.tier_answered else self.rows_out
        escalated = 1 - answered / self.rows_out if self.rows_out else 0.0
        return {"escalated": f"{escalated:.1%}"}
