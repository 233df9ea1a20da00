"""Graph change and lifecycle notifications: parse, verify clientState, reduce to small spool entries.

Anyone on the internet can POST to the webhook; only the clientState secret (unique per
mailbox) proves a notification came from our subscription. It is compared in constant
time against every configured mailbox, so the comparison also tells which mailbox it is.
The message to fetch is taken from ``resourceData.id`` and validated as a Graph id; the
user is always the configured one, never the one named in the notification.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from producers.msgraph.client import graph_id
from producers.msgraph.config import MailboxConfig
from producers.msgraph.errors import GraphProtocolError, NotificationRejected

logger = logging.getLogger(__name__)

#: A notification POST is a few KB per item; Graph batches at most a few hundred.
MAX_BODY_BYTES = 1024 * 1024


class LifecycleEvent(StrEnum):
    REAUTHORIZATION_REQUIRED = "reauthorizationRequired"
    SUBSCRIPTION_REMOVED = "subscriptionRemoved"
    MISSED = "missed"


class EntryKind(StrEnum):
    CREATED = "created"
    LIFECYCLE = "lifecycle"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one POST contained: spool entries for verified items, a count of refused ones."""

    entries: tuple[dict[str, Any], ...]
    rejected: int


def match_mailbox(client_state: str, mailboxes: tuple[MailboxConfig, ...]) -> MailboxConfig | None:
    """The mailbox whose secret equals ``client_state``; every secret is compared, in constant time."""
    offered = client_state.encode("utf-8")
    found: MailboxConfig | None = None
    for mailbox in mailboxes:
        if hmac.compare_digest(offered, mailbox.client_state.get_secret_value().encode("utf-8")):
            found = mailbox
    return found


def parse_body(body: bytes) -> list[dict[str, Any]]:
    """The ``value`` array of a notification POST, or NotificationRejected."""
    if len(body) > MAX_BODY_BYTES:
        raise NotificationRejected(f"notification body of {len(body)} bytes is too large")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise NotificationRejected("notification body is not JSON") from exc
    items = data.get("value") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise NotificationRejected("notification body has no 'value' array")
    return [item for item in items if isinstance(item, dict)]


def verify(items: list[dict[str, Any]], mailboxes: tuple[MailboxConfig, ...]) -> Verdict:
    """Keep the items whose clientState names a mailbox and whose shape we understand."""
    entries: list[dict[str, Any]] = []
    rejected = 0
    for item in items:
        try:
            entries.append(_entry(item, mailboxes))
        except (NotificationRejected, GraphProtocolError) as exc:
            rejected += 1
            logger.warning(
                "notification refused: %s", exc, extra={"subscription_id": str(item.get("subscriptionId", ""))[:64]}
            )
    return Verdict(tuple(entries), rejected)


def _entry(item: dict[str, Any], mailboxes: tuple[MailboxConfig, ...]) -> dict[str, Any]:
    state = item.get("clientState")
    mailbox = match_mailbox(state, mailboxes) if isinstance(state, str) else None
    if mailbox is None:
        raise NotificationRejected("clientState matches no configured mailbox")
    subscription_id = item.get("subscriptionId")
    if not isinstance(subscription_id, str):
        raise NotificationRejected("notification without subscriptionId")
    graph_id(subscription_id)
    lifecycle = item.get("lifecycleEvent")
    if lifecycle is not None:
        try:
            event = LifecycleEvent(lifecycle)
        except ValueError as exc:
            raise NotificationRejected(f"unknown lifecycleEvent {str(lifecycle)[:40]!r}") from exc
        return {
            "kind": EntryKind.LIFECYCLE.value,
            "mailbox": mailbox.mailbox_id,
            "subscription_id": subscription_id,
            "event": event.value,
        }
    if item.get("changeType") != "created":
        raise NotificationRejected(f"unexpected changeType {str(item.get('changeType'))[:20]!r}")
    data = item.get("resourceData")
    message_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(message_id, str):
        raise NotificationRejected("created notification without resourceData.id")
    graph_id(message_id)
    return {
        "kind": EntryKind.CREATED.value,
        "mailbox": mailbox.mailbox_id,
        "subscription_id": subscription_id,
        "message_id": message_id,
    }
