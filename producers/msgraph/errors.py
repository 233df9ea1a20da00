"""Errors of the Microsoft Graph producer; ``retriable`` tells callers whether trying later can help."""

from __future__ import annotations

from producers.errors import ProducerError


class GraphError(ProducerError):
    """Base of the Graph producer's errors; ``status`` is Graph's HTTP status when there was one."""

    retriable = True

    def __init__(self, message: str, *, retriable: bool | None = None, status: int | None = None) -> None:
        super().__init__(message, retriable=retriable)
        self.status = status


class GraphAuthError(GraphError):
    """The token endpoint refused the app credentials (or Graph refused a fresh token): fix config, not retry."""

    retriable = False


class GraphNotFoundError(GraphError):
    """Graph answered 404: the subscription or message is gone (renew falls back to create)."""

    retriable = False


class GraphThrottledError(GraphError):
    """429/503 persisted past the retry budget; ``retry_after`` is the server's last hint in seconds."""

    retriable = True

    def __init__(self, message: str, *, status: int, retry_after: float | None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class MailTooLargeError(GraphError):
    """A mail above the mail size limit: never published (raw-mail cannot hold it), dead-lettered instead.

    Carries what the dead letter needs: the sizes, the Graph id and the mail's header block (so the
    reader sees which mail it was; the mail itself stays in the mailbox).
    """

    retriable = False

    def __init__(self, message: str, *, graph_id: str, size: int, limit: int, head: bytes, sha256: str) -> None:
        super().__init__(message)
        self.graph_id = graph_id
        self.size = size
        self.limit = limit
        self.head = head
        self.sha256 = sha256


class GraphProtocolError(GraphError):
    """Graph (or a notification sender) answered something outside the documented protocol."""

    retriable = False


class NotificationRejected(GraphError):  # noqa: N818 - a verdict, not a failure of ours
    """A notification failed validation (clientState, shape): answered 4xx, never processed."""

    retriable = False


class SpoolError(GraphError):
    """The local notification spool cannot be written: do not acknowledge the notification."""

    retriable = True


class TenantDeferredError(ProducerError):
    """A mail's tenant may not take its alerts now (ingest quota, fair share of the intake budget).

    Control flow, not a failure: the mail is not published, its spool entry stays or the catch-up stops before
    it, and a later round takes it. Raised before fetching the mail when its tenant could not take even a
    one-alert mail, else after counting the mail's alerts, which needs its MIME.
    """

    retriable = True

    def __init__(self, tenant: str) -> None:
        super().__init__(f"tenant {tenant} has to wait for its ingest quota or fair share")
        self.tenant = tenant
