"""Retry-After parsing and the backoff schedule, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from producers.msgraph import RetryPolicy, backoff_delay, parse_retry_after


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("17") == 17.0
    assert parse_retry_after("Wed, 25 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 25 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_backoff_doubles_up_to_the_cap_and_jitters_below_it() -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=10.0)
    assert [backoff_delay(a, policy, lambda: 1.0) for a in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_delay(3, policy, lambda: 0.25) == 2.0
    assert backoff_delay(5000, policy, lambda: 1.0) == 10.0
    with pytest.raises(ValueError):
        backoff_delay(-1, policy, lambda: 1.0)


def test_cap_below_base_is_refused() -> None:
    with pytest.raises(ValueError, match="cap_seconds"):
        RetryPolicy(base_seconds=5.0, cap_seconds=1.0)
