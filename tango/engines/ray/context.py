"""Ray Data settings for the executions of one run, set while their datasets are built and run.

Ray Data reads its ``DataContext`` when a dataset is created and when it executes, so each
setting is changed around both and restored after: a run leaves the caller's context as it
found it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The end-of-run check and --merge shuffle with Ray Data's sort-based pull shuffle: plain
# tasks, no long-lived aggregator actors reserving memory and CPUs beside the run (on a 2-CPU
# local Ray a small group-by also finished several times sooner than with the default shuffle).
SHUFFLE = "sort_shuffle_pull_based"


@contextmanager
def data_context(preserve_order: bool | None = None, **changes: Any) -> Iterator[Any]:
    """``DataContext`` attributes (and ``execution_options.preserve_order``) set for a block."""
    from ray.data import DataContext

    context = DataContext.get_current()
    previous = {name: getattr(context, name) for name in changes}
    order = context.execution_options.preserve_order
    for name, value in changes.items():
        setattr(context, name, value)
    if preserve_order is not None:
        context.execution_options.preserve_order = preserve_order
    try:
        yield context
    finally:
        for name, value in previous.items():
            setattr(context, name, value)
        context.execution_options.preserve_order = order


@contextmanager
def shuffling(preserve_order: bool = False) -> Iterator[Any]:
    """The shuffle the check and the merge use (see ``SHUFFLE``)."""
    from ray.data.context import ShuffleStrategy

    with data_context(preserve_order, shuffle_strategy=ShuffleStrategy(SHUFFLE)) as context:
        yield context
