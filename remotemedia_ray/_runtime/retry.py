"""Retry with exponential backoff, and a per-node circuit breaker.

Every executor (local and Ray) runs node calls through :class:`RetryPolicy`:
an error whose ``is_retryable()`` is true is retried up to ``max_retries``
times, sleeping ``initial_backoff_s * multiplier**n`` (capped at
``max_backoff_s``) between attempts; any other error fails at once.

:class:`CircuitBreaker` stops calling a node that keeps failing: after
``failure_threshold`` consecutive failures it opens and refuses calls; after
``cooldown_s`` it half-opens and lets one trial call through, which closes it
on success or re-opens it on failure. An item that is bad itself (an
:class:`~remotemedia_ray.errors.AudioFormatError`: a corrupt file, a NaN
sample; a :class:`~remotemedia_ray.errors.MarshalingError`: an input of a type
the node does not take) says nothing about the node: it fails alone and counts
as an answer, so a run of bad files in a corpus never stops the good ones
after it.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from remotemedia_ray.errors import (
    AudioFormatError,
    MarshalingError,
    NodeExecutionError,
    RemoteMediaError,
)

__all__ = ["CircuitBreaker", "CircuitOpenError", "CircuitState", "RetryPolicy", "is_retryable"]

T = TypeVar("T")


def is_retryable(error: BaseException) -> bool:
    """Whether ``error`` is worth retrying (a RemoteMediaError that says so)."""
    return isinstance(error, RemoteMediaError) and error.is_retryable()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for retryable errors (defaults: 3 retries, 100 ms doubling)."""

    max_retries: int = 3
    initial_backoff_s: float = 0.1
    multiplier: float = 2.0
    max_backoff_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("backoff times must be >= 0 and the multiplier >= 1")

    @property
    def max_attempts(self) -> int:
        """Attempts in all: the first one plus the retries."""
        return self.max_retries + 1

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        delay = self.initial_backoff_s * self.multiplier ** (retry - 1)
        return float(min(delay, self.max_backoff_s))

    def call(
        self,
        fn: Callable[[], T],
        *,
        on_retry: Callable[[int, BaseException], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """Run ``fn``, retrying retryable errors; re-raises the last error.

        ``on_retry(retry, error)`` is called before each retry. A retryable
        :class:`~remotemedia_ray.errors.RetryableError` that is finally given up
        on has ``attempt`` and ``max_attempts`` filled in.
        """
        retry = 0
        while True:
            try:
                return fn()
            except Exception as error:
                if not is_retryable(error) or retry >= self.max_retries:
                    _note_attempts(error, retry + 1, self.max_attempts)
                    raise
                retry += 1
                if on_retry is not None:
                    on_retry(retry, error)
                sleep(self.backoff(retry))


def _note_attempts(error: BaseException, attempt: int, max_attempts: int) -> None:
    if hasattr(error, "attempt") and hasattr(error, "max_attempts"):
        error.attempt = attempt
        error.max_attempts = max_attempts


class CircuitState(str, enum.Enum):
    """States of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(NodeExecutionError):
    """A node's circuit breaker is open: the call was refused without running."""


@dataclass
class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; half-opens after a cool-down."""

    failure_threshold: int = 5
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _state: CircuitState = field(default=CircuitState.CLOSED, init=False)
    _failures: int = field(default=0, init=False)
    _opened_at: float = field(default=0.0, init=False)
    _trial_running: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def state(self) -> CircuitState:
        """The current state (an open breaker past its cool-down reads as half-open)."""
        with self._lock:
            self._advance()
            return self._state

    def _advance(self) -> None:
        if self._state is CircuitState.OPEN and self.clock() - self._opened_at >= self.cooldown_s:
            self._state = CircuitState.HALF_OPEN
            self._trial_running = False

    def allow(self) -> bool:
        """Whether a call may run now (in half-open state: one trial call at a time)."""
        with self._lock:
            self._advance()
            if self._state is CircuitState.CLOSED:
                return True
            if self._state is CircuitState.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        with self._lock:
            self._state = CircuitState.CLOSED
            self._failures = 0
            self._trial_running = False

    def record_outcome(self, error: BaseException) -> None:
        """A call raised ``error``: a failure of the node, or (bad input) an answer."""
        if isinstance(error, (AudioFormatError, MarshalingError)):
            self.record_success()
        else:
            self.record_failure()

    def record_failure(self) -> None:
        """A call failed: count it, and open the breaker at the threshold (or after a trial)."""
        with self._lock:
            self._failures += 1
            if self._state is CircuitState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = CircuitState.OPEN
                self._opened_at = self.clock()
                self._trial_running = False
