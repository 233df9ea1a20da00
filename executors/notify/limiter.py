"""A sliding-window rate limiter: at most ``limit`` sends per ``per_s`` seconds (DingTalk: 20 per minute)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Waits instead of failing: a burst of notifications is spread out, never dropped.

    Clock and sleep are injectable so tests can drive time without waiting.
    """

    def __init__(
        self,
        limit: int = 20,
        per_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if limit < 1 or per_s <= 0:
            raise ValueError("limit must be >= 1 and per_s > 0")
        self.limit = limit
        self.per_s = per_s
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Return when one more send fits in the window (and count it)."""
        async with self._lock:
            while True:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.per_s:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                await self._sleep(self._sent[0] + self.per_s - now)
