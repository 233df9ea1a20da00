"""The executor error tree: every failure an action can meet, each saying whether a retry can help."""

from __future__ import annotations

from schemas.errors import RcaflowError


class ExecutorError(RcaflowError):
    """Base of every error raised by ``executors``; ``retriable`` tells the consumer whether to retry.

    Messages are written for the on-call reader and end up in ``ActionEvent.result``,
    so they never contain secrets (tokens, signing keys, authorization headers).
    """


class UnknownToolError(ExecutorError):
    """No tool is registered under the action's ``tool.operation`` name."""


class InvalidParamsError(ExecutorError):
    """The action's parameters failed validation; retrying the same record cannot help."""


class NotExecutableError(ExecutorError):
    """The action is not approved, or declares less risk than the operation carries."""


class ToolNotConfiguredError(ExecutorError):
    """The tool needs a backend (cluster, endpoint) that this deployment did not configure."""


class NotConfirmedError(ExecutorError):
    """The operation was accepted but its effect did not show in time (a rollout that never finished)."""


class UpstreamError(ExecutorError):
    """The remote system answered with an error; ``status`` is its HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, retriable: bool | None = None) -> None:
        super().__init__(message, retriable=retriable)
        self.status = status


class ForbiddenError(UpstreamError):
    """The remote system refused our credentials (401/403): a configuration problem, not transient."""


class NotFoundError(UpstreamError):
    """The target object does not exist (404)."""


class ConflictError(UpstreamError):
    """The object changed under us (409); a retry re-reads and usually succeeds."""

    retriable = True


class UnavailableError(UpstreamError):
    """Network failure, timeout, 429 or 5xx: worth retrying later."""

    retriable = True


def error_for_status(status: int, message: str) -> UpstreamError:
    """Map an HTTP status to the error class the consumer's retry logic expects."""
    if status in (401, 403):
        return ForbiddenError(message, status=status)
    if status == 404:
        return NotFoundError(message, status=status)
    if status == 409:
        return ConflictError(message, status=status)
    if status == 429 or status >= 500:
        return UnavailableError(message, status=status)
    return UpstreamError(message, status=status)
