"""Microsoft Graph mail producer: subscriptions, webhook notifications, delta catch-up, raw-mail publishing."""

from typing import TYPE_CHECKING

from schemas.lazy import lazy_exports

if TYPE_CHECKING:
    from producers.msgraph.client import DeltaItem, DeltaPage, GraphClient, Subscription, graph_id
    from producers.msgraph.config import MAX_SUBSCRIPTION_MINUTES, MailboxConfig, MsgraphConfig
    from producers.msgraph.errors import (
        GraphAuthError,
        GraphError,
        GraphNotFoundError,
        GraphProtocolError,
        GraphThrottledError,
        MailTooLargeError,
        NotificationRejected,
        SpoolError,
    )
    from producers.msgraph.ingest import CheckpointSource, GraphIngest, mail_headers
    from producers.msgraph.retry import RetryPolicy, backoff_delay, parse_retry_after
    from producers.msgraph.spool import FileSpool, MemorySpool, Spool
    from producers.msgraph.subscriptions import SubscriptionManager
    from producers.msgraph.tokens import MsalTokenProvider, StaticTokenProvider, TokenProvider
    from producers.recent_ids import RecentIds

_EXPORTS = {
    "DeltaItem": "producers.msgraph.client",
    "DeltaPage": "producers.msgraph.client",
    "GraphClient": "producers.msgraph.client",
    "Subscription": "producers.msgraph.client",
    "graph_id": "producers.msgraph.client",
    "MAX_SUBSCRIPTION_MINUTES": "producers.msgraph.config",
    "MailboxConfig": "producers.msgraph.config",
    "MsgraphConfig": "producers.msgraph.config",
    "GraphAuthError": "producers.msgraph.errors",
    "GraphError": "producers.msgraph.errors",
    "GraphNotFoundError": "producers.msgraph.errors",
    "GraphProtocolError": "producers.msgraph.errors",
    "GraphThrottledError": "producers.msgraph.errors",
    "MailTooLargeError": "producers.msgraph.errors",
    "NotificationRejected": "producers.msgraph.errors",
    "SpoolError": "producers.msgraph.errors",
    "CheckpointSource": "producers.msgraph.ingest",
    "GraphIngest": "producers.msgraph.ingest",
    "mail_headers": "producers.msgraph.ingest",
    "RetryPolicy": "producers.msgraph.retry",
    "backoff_delay": "producers.msgraph.retry",
    "parse_retry_after": "producers.msgraph.retry",
    "FileSpool": "producers.msgraph.spool",
    "MemorySpool": "producers.msgraph.spool",
    "Spool": "producers.msgraph.spool",
    "SubscriptionManager": "producers.msgraph.subscriptions",
    "MsalTokenProvider": "producers.msgraph.tokens",
    "StaticTokenProvider": "producers.msgraph.tokens",
    "TokenProvider": "producers.msgraph.tokens",
    "RecentIds": "producers.recent_ids",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "MAX_SUBSCRIPTION_MINUTES",
    "CheckpointSource",
    "DeltaItem",
    "DeltaPage",
    "FileSpool",
    "GraphAuthError",
    "GraphClient",
    "GraphError",
    "GraphIngest",
    "GraphNotFoundError",
    "GraphProtocolError",
    "GraphThrottledError",
    "MailTooLargeError",
    "MailboxConfig",
    "MemorySpool",
    "MsalTokenProvider",
    "MsgraphConfig",
    "NotificationRejected",
    "RecentIds",
    "RetryPolicy",
    "Spool",
    "SpoolError",
    "StaticTokenProvider",
    "Subscription",
    "SubscriptionManager",
    "TokenProvider",
    "backoff_delay",
    "graph_id",
    "mail_headers",
    "parse_retry_after",
]
