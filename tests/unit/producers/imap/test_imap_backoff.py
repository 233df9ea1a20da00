"""Reconnect backoff: capped, exponential, fully jittered; an hour-long outage on a simulated clock."""

from __future__ import annotations

import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from producers.imap import BackoffConfig, backoff_ceiling, backoff_delay, backoff_schedule

POLICY = BackoffConfig(base_seconds=1.0, cap_seconds=300.0)


def test_ceiling_doubles_from_base_until_the_cap() -> None:
    assert [backoff_ceiling(n, POLICY) for n in range(11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]


def test_without_jitter_the_delay_is_the_ceiling() -> None:
    policy = BackoffConfig(base_seconds=0.5, cap_seconds=10, jitter=False)
    assert list(itertools.islice(backoff_schedule(policy), 6)) == [0.5, 1, 2, 4, 8, 10]


def test_full_jitter_draws_between_zero_and_the_ceiling() -> None:
    assert backoff_delay(3, POLICY, lambda: 0.0) == 0.0
    assert backoff_delay(3, POLICY, lambda: 0.5) == 4.0
    assert backoff_delay(30, POLICY, lambda: 0.999) < 300


@given(
    attempt=st.integers(min_value=0, max_value=100_000),
    base=st.floats(min_value=0.001, max_value=60),
    extra=st.floats(min_value=0, max_value=3600),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_delay_never_exceeds_the_cap_nor_goes_negative(attempt: int, base: float, extra: float, draw: float) -> None:
    policy = BackoffConfig(base_seconds=base, cap_seconds=base + extra)
    delay = backoff_delay(attempt, policy, lambda: draw)
    assert 0 <= delay <= policy.cap_seconds


def test_a_one_hour_outage_costs_tens_of_attempts_not_thousands() -> None:
    """Simulated clock: sum the delays until the server is back after 3600 s."""
    rng = random.Random(2026)
    clock = 0.0
    attempts = 0
    for delay in backoff_schedule(POLICY, rng.random):
        clock += delay
        attempts += 1
        if clock >= 3600:
            break
    # Mean delay at the cap is cap/2 = 150 s, so ~24 attempts after the first ~9 ramp-up steps.
    assert 15 <= attempts <= 60
    # The first attempt after the server returns comes within one cap.
    assert clock - 3600 <= POLICY.cap_seconds


def test_many_clients_spread_out_after_a_shared_outage() -> None:
    """Full jitter: 100 producers failing at once do not all retry at the same instant."""
    firsts = {round(backoff_delay(8, POLICY, random.Random(seed).random), 1) for seed in range(100)}
    assert len(firsts) > 80
