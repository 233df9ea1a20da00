"""Single-use decisions: one decision per action, whichever channel or replica it comes through first.

``claim`` before publishing, ``release`` if the publish failed so the approver
can click again. :class:`InMemoryClaims` serves one API replica; several need a
shared store (a Faust table, or Redis ``SET NX PX``) behind the same two methods.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Protocol


class ClaimStore(Protocol):
    def claim(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        """Take ``key``; False if it is taken and not yet past its ``expires_at``."""
        ...

    def release(self, key: str) -> None:
        """Give ``key`` back (only after a failed publish)."""
        ...


class InMemoryClaims:
    """A process-local :class:`ClaimStore`; also satisfies ``executors.approvals.NonceStore``."""

    def __init__(self) -> None:
        self._taken: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def claim(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        with self._lock:
            for old in [k for k, exp in self._taken.items() if exp <= now]:
                del self._taken[old]
            if key in self._taken:
                return False
            self._taken[key] = expires_at
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._taken.pop(key, None)
