"""The jobs behind the `tango` commands: each loads what a command names, runs it, and reports.

The CLI (:mod:`tango.cli`) parses options and refuses the combinations that make no sense; the
work itself is here, callable from Python: :func:`load_cascade` (``tango run``'s model) /
:func:`load_early_exit` (``tango early-exit run``'s), :func:`score` (either engine), :func:`train`
(a transformer or linear tier, with its calibration and dev rows) / :func:`train_exits` (a
multi-exit model), :func:`calibrate` / :func:`calibrate_exits` and :func:`export`. Reports go
through ``log`` (results) and ``warn`` (notes a person should see, on stderr in the CLI).
"""

from tango.jobs.calibration import (
    CalibrationRows,
    calibrate,
    calibrate_exits,
    calibration_rows,
    read_unlabelled,
)
from tango.jobs.exporting import export
from tango.jobs.models import Log, early_exit_dir, load_cascade, load_early_exit
from tango.jobs.scoring import evaluate, last_tier_accuracy, score
from tango.jobs.training import EARLY_EXIT_LR, train, train_exits

__all__ = [
    "EARLY_EXIT_LR",
    "CalibrationRows",
    "Log",
    "calibrate",
    "calibrate_exits",
    "calibration_rows",
    "early_exit_dir",
    "evaluate",
    "export",
    "last_tier_accuracy",
    "load_cascade",
    "load_early_exit",
    "read_unlabelled",
    "score",
    "train",
    "train_exits",
]
