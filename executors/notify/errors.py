"""Why a notification did not reach its channel, and whether trying again can help."""

from __future__ import annotations

from executors.errors import ExecutorError


class NotifyError(ExecutorError):
    """The channel refused or did not answer; the message never contains tokens or signed URLs."""


class RateLimitedError(NotifyError):
    """Slack 429 / DingTalk errcode 130101: send again after ``retry_after`` seconds."""

    retriable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
