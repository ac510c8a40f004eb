"""Early exit: one transformer with a classifier on several layers, batched per-row exits.

See docs/early-exit.md. ``MultiExitModel`` is the network, ``EarlyExitClassifier`` the estimator
(``predict`` / ``predict_proba`` / ``predict_detailed``), ``train_early_exit`` fine-tunes one.
"""

from tango.early_exit.classifier import EarlyExitClassifier, EarlyExitResult
from tango.early_exit.model import MultiExitModel
from tango.early_exit.policy import ExitPolicy
from tango.early_exit.training import train_early_exit

__all__ = [
    "EarlyExitClassifier",
    "EarlyExitResult",
    "ExitPolicy",
    "MultiExitModel",
    "train_early_exit",
]
