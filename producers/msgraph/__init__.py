"""Microsoft Graph mail producer: subscriptions, webhook notifications, delta catch-up, raw-mail publishing."""

from producers.msgraph.client import DeltaItem, DeltaPage, GraphClient, Subscription, graph_id
from producers.msgraph.config import MAX_SUBSCRIPTION_MINUTES, MailboxConfig, MsgraphConfig
from producers.msgraph.errors import (
    GraphAuthError,
    GraphError,
    GraphNotFoundError,
    GraphProtocolError,
    GraphThrottledError,
    NotificationRejected,
    SpoolError,
)
from producers.msgraph.ingest import CheckpointSource, GraphIngest, mail_headers
from producers.msgraph.retry import RetryPolicy, backoff_delay, parse_retry_after
from producers.msgraph.spool import FileSpool, MemorySpool, Spool
from producers.msgraph.subscriptions import SubscriptionManager
from producers.msgraph.tokens import MsalTokenProvider, StaticTokenProvider, TokenProvider
from producers.recent_ids import RecentIds

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
