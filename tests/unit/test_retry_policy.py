"""One retry policy: transient errors only, bounded, honouring Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import tenacity

from refundbridge.connectors.base import RetryPolicy, retry_after_seconds
from refundbridge.core.errors import ConnectorError, PermanentProviderError, TransientProviderError

NO_WAIT = RetryPolicy(attempts=4, initial_wait=0.0, max_wait=0.0, max_retry_after=0.0)


class FlakyProvider:
    """Raises the given errors in turn, then answers; records each call."""

    def __init__(self, *errors: Exception, answer: str = "re_1") -> None:
        self.errors = list(errors)
        self.answer = answer
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.answer


def _transient(retry_after: float | None = None) -> TransientProviderError:
    return TransientProviderError("stripe", "HTTP 503", retry_after=retry_after)


def _state_after(error: BaseException, attempt_number: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    state.attempt_number = attempt_number
    state.set_exception((type(error), error, None))
    return state


# ------------------------------------------------------------------ call


def test_a_first_success_is_returned_without_retry() -> None:
    provider = FlakyProvider()
    assert NO_WAIT.call(provider) == "re_1"
    assert provider.calls == 1


def test_transient_errors_are_retried_until_success() -> None:
    provider = FlakyProvider(_transient(), _transient(retry_after=0.0), _transient())
    assert NO_WAIT.call(provider) == "re_1"
    assert provider.calls == 4


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_retrying_stops_after_attempts_and_reraises_the_last_error(attempts: int) -> None:
    errors = [TransientProviderError("stripe", f"HTTP 503 #{i}") for i in range(10)]
    provider = FlakyProvider(*errors)
    policy = RetryPolicy(attempts=attempts, initial_wait=0.0, max_wait=0.0)
    with pytest.raises(TransientProviderError) as caught:
        policy.call(provider)
    assert provider.calls == attempts
    assert caught.value.message == f"HTTP 503 #{attempts - 1}"


def test_permanent_errors_are_never_retried() -> None:
    provider = FlakyProvider(PermanentProviderError("stripe", "HTTP 402", code="402"))
    with pytest.raises(PermanentProviderError):
        NO_WAIT.call(provider)
    assert provider.calls == 1


def test_a_permanent_error_after_transient_ones_stops_the_retries() -> None:
    provider = FlakyProvider(_transient(), PermanentProviderError("stripe", "HTTP 400"))
    with pytest.raises(PermanentProviderError):
        NO_WAIT.call(provider)
    assert provider.calls == 2


@pytest.mark.parametrize(
    "error",
    [ConnectorError("stripe", "odd"), ValueError("bug"), KeyError("id"),
     httpx.ConnectError("refused")],
    ids=["connector-error", "value-error", "key-error", "raw-httpx"],
)
def test_other_errors_are_not_retried(error: Exception) -> None:
    provider = FlakyProvider(error)
    with pytest.raises(type(error)):
        NO_WAIT.call(provider)
    assert provider.calls == 1


# ------------------------------------------------------------------ wait


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(0.0, 0.0), (2.5, 2.5), (30.0, 30.0), (31.0, 30.0), (3600.0, 30.0),
     (float("inf"), 30.0)],
)
def test_wait_honours_retry_after_capped_at_max_retry_after(
    retry_after: float, expected: float
) -> None:
    policy = RetryPolicy(initial_wait=0.25, max_wait=8.0, max_retry_after=30.0)
    assert policy.wait(_state_after(_transient(retry_after), 1)) == expected
    assert policy.wait(_state_after(_transient(retry_after), 7)) == expected


@pytest.mark.parametrize("attempt", range(1, 16))
def test_backoff_doubles_with_jitter_and_is_bounded_by_max_wait(attempt: int) -> None:
    policy = RetryPolicy(initial_wait=0.25, max_wait=8.0)
    ceiling = min(8.0, 0.25 * 2 ** (attempt - 1))
    for _ in range(20):
        wait = policy.wait(_state_after(_transient(), attempt))
        assert ceiling / 2 <= wait <= ceiling
        assert wait <= policy.max_wait


def test_backoff_with_zero_initial_wait_is_zero() -> None:
    assert NO_WAIT.wait(_state_after(_transient(), 3)) == 0.0


# ------------------------------------------------------------------ Retry-After header

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)


def _response(value: str | None) -> httpx.Response:
    headers = {} if value is None else {"Retry-After": value}
    return httpx.Response(503, headers=headers)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("0", 0.0),
        ("120", 120.0),
        ("1.5", 1.5),
        (" 7 ", 7.0),
        ("-5", 0.0),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_in_seconds(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(_response(value), now=NOW) == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("Wed, 21 Oct 2015 07:29:30 GMT", 90.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),
        ("Wednesday, 21-Oct-15 07:29:00 GMT", 60.0),
        # RFC 9110 5.6.7: recipients MUST accept the asctime form too; it has no zone and
        # means GMT.
        ("Wed Oct 21 07:30:00 2015", 120.0),
    ],
    ids=["imf-fixdate", "now", "past", "rfc850", "asctime"],
)
def test_retry_after_as_an_http_date(value: str, seconds: float) -> None:
    assert retry_after_seconds(_response(value), now=NOW) == seconds
