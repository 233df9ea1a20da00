"""Reconnect delays: capped exponential backoff with full jitter, as a pure schedule."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from producers.imap.config import BackoffConfig


def backoff_ceiling(attempt: int, policy: BackoffConfig) -> float:
    """Upper bound of the delay before reconnect ``attempt`` (0-based): ``min(cap, base * 2**attempt)``."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    # 2**attempt overflows float only past ~1024; the cap is reached long before.
    exponent = min(attempt, 1000)
    return float(min(policy.cap_seconds, policy.base_seconds * (2.0**exponent)))


def backoff_delay(attempt: int, policy: BackoffConfig, rand: Callable[[], float]) -> float:
    """Delay before reconnect ``attempt``; full jitter spreads many clients after a shared outage.

    ``rand`` returns a float in [0, 1) (``random.Random().random``), injected so tests are exact.
    """
    ceiling = backoff_ceiling(attempt, policy)
    return ceiling * rand() if policy.jitter else ceiling


def backoff_schedule(policy: BackoffConfig, rand: Callable[[], float] | None = None) -> Iterator[float]:
    """The endless sequence of delays for consecutive failed attempts."""
    draw = rand if rand is not None else random.Random().random
    attempt = 0
    while True:
        yield backoff_delay(attempt, policy, draw)
        attempt += 1
