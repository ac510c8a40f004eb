"""Other libraries' logs, warnings and progress bars, hidden in one place: the ``tango`` command.

transformers prints a LOAD REPORT table whenever a checkpoint's keys differ from the model's (a
fresh classifier head on an encoder) and a "Loading weights" bar per model; the TorchScript ONNX
exporter warns about tracing; ``onnxruntime.quantization`` logs "Please consider to run
pre-processing" on the root logger; huggingface_hub draws download bars; Ray logs its cluster
connection and Ray Data each execution's plan (and, off a terminal, its progress). None of it is for the
person running ``tango``, so the CLI group enters :func:`quiet_libraries` for every command unless
``tango -v`` is given. Library code never calls it: importing or constructing tango changes no
other library's settings, and everything set here is put back when the block exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

# Read by transformers when it first logs, and by Ray and Ray Data when they are imported (all
# may be imported later in the command): Ray otherwise logs its start-up, and Ray Data each
# execution's plan and, off a terminal, its progress, as INFO lines on the console.
_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "RAY_DATA_LOG_LEVEL": "WARNING",
    "RAY_LOGGER_LEVEL": "error",
}
# Named loggers of libraries tango calls, raised to ERROR for the block.
# huggingface_hub resets its own root logger's level during a download, so its retry notes
# ("... thrown while requesting", "Retrying in 8s") are silenced on the child that logs them.
_LOGGERS = (
    "transformers",
    "huggingface_hub",
    "huggingface_hub.utils._http",
    "huggingface_hub.file_download",
    "datasets",
    "onnxruntime",
    "onnx",
    "torch.onnx",
    "nncf",
)
# Packages whose warnings (TracerWarning, exporter notes, deprecations) are not the user's business.
_WARNING_MODULES = r"(torch|transformers|onnx|onnxruntime|onnxscript|huggingface_hub|nncf)(\.|$)"
_PACKAGE_DIRS = tuple(f"{os.sep}{name}{os.sep}" for name in ("onnxruntime", "onnx", "nncf"))


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hide other libraries' logs, warnings and progress bars inside the block; restore them after.

    tango's own output (progress bars, summaries, its warnings) is untouched.

    Example
    -------
    >>> with quiet_libraries():                                    # doctest: +SKIP
    ...     Tier.from_pretrained("path/to/encoder")   # no LOAD REPORT, no "Loading weights" bar
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(_transformers())  # first: it reads the user's environment
        stack.enter_context(_hub_progress_bars())
        stack.enter_context(_environment(_ENVIRONMENT))
        stack.enter_context(_logger_levels(_LOGGERS, logging.ERROR))
        stack.enter_context(_root_filter(_FromPackages(_PACKAGE_DIRS)))
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", module=_WARNING_MODULES)
        warnings.filterwarnings("ignore", message=r"(?s).*TorchScript-based ONNX export")
        yield


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set variables the user has not set; restore the environment after."""
    added = [name for name in values if name not in os.environ]
    os.environ.update({name: values[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextlib.contextmanager
def _hub_progress_bars() -> Iterator[None]:
    """huggingface_hub's bars: download bars, and transformers' "Loading weights" bar, which
    starts off where the hub's are off when transformers is imported (later in the command)."""
    try:
        from huggingface_hub import utils as hub_utils  # light: the hub's heavy parts load lazily
    except ImportError:
        yield
        return
    was_disabled = hub_utils.are_progress_bars_disabled()
    hub_utils.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            hub_utils.enable_progress_bars()


@contextlib.contextmanager
def _transformers() -> Iterator[None]:
    """transformers' verbosity and progress bars, through its own switches.

    Not imported here (it costs most of a second): where it is not loaded yet, the environment
    and the hub's switch quiet it when the command imports it, and its defaults are put back.
    """
    before = sys.modules.get("transformers.utils.logging")
    level = logging.getLevelName(os.environ.get("TRANSFORMERS_VERBOSITY", "warning").upper())
    default = (level if isinstance(level, int) else logging.WARNING, True)
    saved = (before.get_verbosity(), before.is_progress_bar_enabled()) if before else default
    if before:
        before.set_verbosity_error()
        before.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging = sys.modules.get("transformers.utils.logging")
        if hf_logging:
            hf_logging.set_verbosity(saved[0])
            if saved[1]:
                hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _logger_levels(names: tuple[str, ...], level: int) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, old in zip(loggers, saved, strict=True):
            logger.setLevel(old)


class _FromPackages(logging.Filter):
    """Drops records that libraries log on the root logger (``logging.warning(...)``)."""

    def __init__(self, package_dirs: tuple[str, ...]) -> None:
        super().__init__()
        self.package_dirs = package_dirs

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not any(d in record.pathname for d in self.package_dirs)


@contextlib.contextmanager
def _root_filter(log_filter: logging.Filter) -> Iterator[None]:
    root = logging.getLogger()
    root.addFilter(log_filter)
    try:
        yield
    finally:
        root.removeFilter(log_filter)
