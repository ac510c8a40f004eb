"""A time limit for tests that start Ray: a run that would hang fails instead (SIGALRM)."""

from __future__ import annotations

import signal
from typing import Any


class Deadline:
    """Fail a test that would otherwise hang: ``TimeoutError`` after ``seconds``."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __enter__(self) -> Deadline:
        def expired(*_: Any) -> None:
            raise TimeoutError(f"no answer within {self.seconds} s: the run hung")

        self.previous = signal.signal(signal.SIGALRM, expired)
        signal.alarm(self.seconds)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)
