"""RetryPolicy backoff and CircuitBreaker states (no sleeping: injected sleep and clock)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import remotemedia_ray as rm
from remotemedia_ray._runtime.retry import (
    CircuitBreaker,
    CircuitState,
    RetryPolicy,
    is_retryable,
)
from remotemedia_ray.errors import MarshalingError, PythonError, RetryableError


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _failing(times: int, error: Callable[[], BaseException], result: str = "ok"):
    """A callable that raises ``error()`` ``times`` times, then returns ``result``."""
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error()
        return result

    return fn, calls


# -- RetryPolicy -------------------------------------------------------------------------


def test_default_policy_is_three_retries_from_100ms_doubling() -> None:
    policy = RetryPolicy()
    assert policy.max_retries == 3
    assert policy.max_attempts == 4
    assert policy.initial_backoff_s == pytest.approx(0.1)
    assert policy.multiplier == 2.0
    assert [policy.backoff(n) for n in (1, 2, 3)] == pytest.approx([0.1, 0.2, 0.4])


def test_backoff_is_capped_by_max_backoff() -> None:
    policy = RetryPolicy(max_retries=10, initial_backoff_s=0.1, max_backoff_s=0.5)
    delays = [policy.backoff(n) for n in range(1, 8)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5])
    assert RetryPolicy().backoff(30) == RetryPolicy().max_backoff_s


@pytest.mark.parametrize(
    "kwargs",
    [{"max_retries": -1}, {"initial_backoff_s": -0.1}, {"max_backoff_s": -1}, {"multiplier": 0.5}],
)
def test_invalid_policy_is_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_call_retries_a_retryable_error_and_succeeds() -> None:
    fn, calls = _failing(2, lambda: RetryableError("flaky", node_id="n"))
    delays: list[float] = []
    assert RetryPolicy().call(fn, sleep=delays.append) == "ok"
    assert len(calls) == 3
    assert delays == pytest.approx([0.1, 0.2])


def test_call_sleeps_100_200_400_ms_between_attempts() -> None:
    fn, calls = _failing(3, lambda: RetryableError("flaky"))
    delays: list[float] = []
    assert RetryPolicy().call(fn, sleep=delays.append) == "ok"
    assert len(calls) == 4
    assert delays == pytest.approx([0.1, 0.2, 0.4])


def test_call_retries_a_python_error_that_mentions_timeout() -> None:
    fn, calls = _failing(1, lambda: PythonError("TimeoutError: read timed out"))
    delays: list[float] = []
    assert RetryPolicy().call(fn, sleep=delays.append) == "ok"
    assert len(calls) == 2
    assert delays == pytest.approx([0.1])


def test_call_gives_up_after_max_retries_with_the_last_error() -> None:
    raised: list[RetryableError] = []

    def fn() -> None:
        err = RetryableError(f"flaky #{len(raised) + 1}", node_id="n")
        raised.append(err)
        raise err

    delays: list[float] = []
    with pytest.raises(RetryableError) as info:
        RetryPolicy().call(fn, sleep=delays.append)
    assert len(raised) == 4  # first attempt + 3 retries
    assert info.value is raised[-1]
    assert info.value.message == "flaky #4"
    assert info.value.attempt == 4
    assert info.value.max_attempts == 4
    assert delays == pytest.approx([0.1, 0.2, 0.4])


def test_call_with_custom_retries_fills_attempts() -> None:
    fn, calls = _failing(100, lambda: RetryableError("flaky"))
    with pytest.raises(RetryableError) as info:
        RetryPolicy(max_retries=1).call(fn, sleep=lambda _s: None)
    assert len(calls) == 2
    assert (info.value.attempt, info.value.max_attempts) == (2, 2)


def test_zero_retries_calls_once() -> None:
    fn, calls = _failing(1, lambda: RetryableError("flaky"))
    delays: list[float] = []
    with pytest.raises(RetryableError):
        RetryPolicy(max_retries=0).call(fn, sleep=delays.append)
    assert len(calls) == 1
    assert delays == []


@pytest.mark.parametrize(
    "error",
    [
        lambda: MarshalingError("not numeric", node_id="n"),
        lambda: ValueError("plain"),
        lambda: PythonError("ValueError: bad value"),
        lambda: KeyError("k"),
    ],
)
def test_non_retryable_error_is_not_retried(error: Callable[[], BaseException]) -> None:
    fn, calls = _failing(1, error)
    delays: list[float] = []
    retries: list[int] = []
    with pytest.raises(type(error())):
        RetryPolicy().call(fn, sleep=delays.append, on_retry=lambda n, e: retries.append(n))
    assert len(calls) == 1
    assert delays == []
    assert retries == []


def test_error_that_turns_non_retryable_stops_retrying() -> None:
    errors = [RetryableError("flaky"), MarshalingError("broken")]
    calls: list[int] = []

    def fn() -> None:
        calls.append(1)
        raise errors[len(calls) - 1]

    with pytest.raises(MarshalingError):
        RetryPolicy().call(fn, sleep=lambda _s: None)
    assert len(calls) == 2


def test_on_retry_is_called_with_retry_numbers_and_errors() -> None:
    made: list[RetryableError] = []

    def make() -> RetryableError:
        made.append(RetryableError(f"e{len(made)}"))
        return made[-1]

    fn, _calls = _failing(3, make)
    seen: list[tuple[int, BaseException]] = []
    order: list[str] = []

    def on_retry(n: int, err: BaseException) -> None:
        seen.append((n, err))
        order.append(f"retry{n}")

    def sleep(s: float) -> None:
        order.append(f"sleep{s:.1f}")

    assert RetryPolicy().call(fn, on_retry=on_retry, sleep=sleep) == "ok"
    assert [n for n, _ in seen] == [1, 2, 3]
    assert [e for _, e in seen] == made
    assert order == ["retry1", "sleep0.1", "retry2", "sleep0.2", "retry3", "sleep0.4"]


def test_success_first_time_neither_sleeps_nor_calls_on_retry() -> None:
    delays: list[float] = []
    retries: list[int] = []
    result = RetryPolicy().call(
        lambda: 42, sleep=delays.append, on_retry=lambda n, e: retries.append(n)
    )
    assert result == 42
    assert delays == [] and retries == []


def test_module_is_retryable_only_for_remote_media_errors_that_say_so() -> None:
    assert is_retryable(RetryableError("x"))
    assert is_retryable(PythonError("RuntimeError: CUDA out of memory"))
    assert not is_retryable(PythonError("ValueError: nope"))
    assert not is_retryable(TimeoutError("timed out"))  # builtin, not ours
    assert not is_retryable(MarshalingError("timeout"))


# -- CircuitBreaker ----------------------------------------------------------------------


def _state(breaker: CircuitBreaker) -> CircuitState:
    """The breaker's state (a call, so type checkers do not narrow it between reads)."""
    return breaker.state


def _breaker(clock: FakeClock | None = None) -> CircuitBreaker:
    return CircuitBreaker(clock=clock or FakeClock())


def test_closed_breaker_allows_calls() -> None:
    breaker = _breaker()
    assert _state(breaker) is CircuitState.CLOSED
    assert all(breaker.allow() for _ in range(10))


def test_breaker_defaults() -> None:
    breaker = CircuitBreaker()
    assert breaker.failure_threshold == 5
    assert breaker.cooldown_s == 30.0


def test_four_failures_keep_the_breaker_closed() -> None:
    breaker = _breaker()
    for _ in range(4):
        breaker.record_failure()
    assert _state(breaker) is CircuitState.CLOSED
    assert breaker.allow()


def test_five_consecutive_failures_open_the_breaker() -> None:
    breaker = _breaker()
    for _ in range(5):
        breaker.record_failure()
    assert _state(breaker) is CircuitState.OPEN
    assert breaker.allow() is False


def test_success_resets_the_failure_count() -> None:
    breaker = _breaker()
    for _ in range(4):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(4):
        breaker.record_failure()
    assert _state(breaker) is CircuitState.CLOSED
    assert breaker.allow()
    breaker.record_failure()
    assert _state(breaker) is CircuitState.OPEN


def test_open_breaker_refuses_until_the_cooldown_ends() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(29.9)
    assert breaker.allow() is False
    assert _state(breaker) is CircuitState.OPEN
    clock.advance(0.1)
    assert _state(breaker) is CircuitState.HALF_OPEN


def test_half_open_allows_exactly_one_trial_at_a_time() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(30.0)
    assert breaker.allow() is True
    assert breaker.allow() is False
    assert breaker.allow() is False
    assert _state(breaker) is CircuitState.HALF_OPEN


def test_trial_success_closes_the_breaker() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(31)
    assert breaker.allow()
    breaker.record_success()
    assert _state(breaker) is CircuitState.CLOSED
    assert breaker.allow() and breaker.allow()
    for _ in range(4):  # the count starts again from zero
        breaker.record_failure()
    assert _state(breaker) is CircuitState.CLOSED


def test_trial_failure_reopens_for_another_cooldown() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(30)
    assert breaker.allow()
    clock.advance(5)  # the trial call takes a while, then fails
    breaker.record_failure()
    assert _state(breaker) is CircuitState.OPEN
    assert breaker.allow() is False
    clock.advance(29.9)
    assert breaker.allow() is False
    clock.advance(0.1)
    assert _state(breaker) is CircuitState.HALF_OPEN
    assert breaker.allow() is True
    assert breaker.allow() is False


def test_custom_threshold_and_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=1.0, clock=clock)
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()


def test_bad_audio_is_an_answer_not_a_node_failure() -> None:
    breaker = _breaker()
    for _ in range(20):  # a run of corrupt files
        breaker.record_outcome(rm.AudioFormatError("cannot decode audio file 'x.mp3'"))
    assert _state(breaker) is CircuitState.CLOSED
    for _ in range(5):
        breaker.record_outcome(rm.NodeExecutionError("model crashed"))
    assert _state(breaker) is CircuitState.OPEN


def test_a_run_of_bad_files_does_not_refuse_the_good_files_after_it(tmp_path: Path) -> None:
    import soundfile as sf

    from remotemedia_ray.dataset import JobConfig, run_job

    root = tmp_path / "in"
    (root / "a").mkdir(parents=True)
    for i in range(8):  # sorted first: eight corrupt files in a row
        (root / "a" / f"bad{i}.wav").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    for i in range(3):
        sf.write(root / f"good{i}.wav", np.zeros((1600, 1), np.int16), 16000)
    manifest = Path(__file__).resolve().parents[2] / "examples" / "speech_prep.json"
    config = JobConfig(
        manifest=manifest, input=str(root), outdir=tmp_path / "out", runtime="local", progress="off"
    )
    result = run_job(config, stream=io.StringIO())
    assert (result.items_done, result.items_failed) == (3, 8)
    errors = (tmp_path / "out" / "errors.jsonl").read_text()
    assert "CircuitOpen" not in errors and errors.count("AudioFormatError") == 8
