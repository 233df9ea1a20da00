"""Keep one Graph subscription alive per mailbox: find or create, renew before expiry, recreate on 404.

Stateless on purpose: the subscription is found again by listing the app's subscriptions
(resource + notificationUrl), so any replica or a cron job can renew it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from producers.msgraph.client import GraphClient, Subscription
from producers.msgraph.config import MailboxConfig, MsgraphConfig
from producers.msgraph.errors import GraphNotFoundError

logger = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SubscriptionManager:
    """Creates and renews the ``created`` subscription of each configured mailbox folder."""

    def __init__(
        self, config: MsgraphConfig, client: GraphClient, *, now: Callable[[], datetime] = _utcnow
    ) -> None:
        self._config = config
        self._client = client
        self._now = now
        #: Per mailbox id, the expiry Graph last confirmed (created, renewed or found): the metrics read it.
        self.expiries: dict[str, datetime] = {}

    def expiration(self) -> datetime:
        return self._now() + timedelta(minutes=self._config.subscription_minutes)

    def needs_renewal(self, subscription: Subscription) -> bool:
        left = subscription.expiration - self._now()
        return left < timedelta(minutes=self._config.renew_before_minutes)

    async def find(self, mailbox: MailboxConfig) -> Subscription | None:
        """Our subscription for ``mailbox`` (Graph may change the resource's case, so compare folded)."""
        wanted = mailbox.resource.casefold()
        for sub in await self._client.list_subscriptions():
            if sub.resource.casefold() == wanted and sub.notification_url == self._config.notification_url:
                return sub
        return None

    async def create(self, mailbox: MailboxConfig) -> Subscription:
        sub = await self._client.create_subscription(
            resource=mailbox.resource,
            notification_url=self._config.notification_url,
            lifecycle_url=self._config.lifecycle_url,
            client_state=mailbox.client_state.get_secret_value(),
            expiration=self.expiration(),
        )
        logger.info("created Graph subscription %s for %s until %s", sub.id, mailbox.mailbox_id, sub.expiration)
        self.expiries[mailbox.mailbox_id] = sub.expiration
        return sub

    async def renew(self, mailbox: MailboxConfig, subscription_id: str) -> Subscription:
        """PATCH a new expiry; a 404 means Graph deleted it (expired, removed): create a new one."""
        try:
            sub = await self._client.renew_subscription(subscription_id, self.expiration())
        except GraphNotFoundError:
            logger.warning("subscription %s of %s is gone; creating a new one", subscription_id, mailbox.mailbox_id)
            return await self.create(mailbox)
        logger.info("renewed Graph subscription %s for %s until %s", sub.id, mailbox.mailbox_id, sub.expiration)
        self.expiries[mailbox.mailbox_id] = sub.expiration
        return sub

    async def ensure(self, mailbox: MailboxConfig) -> Subscription:
        """A live subscription for ``mailbox`` with more than ``renew_before_minutes`` left."""
        sub = await self.find(mailbox)
        if sub is None:
            return await self.create(mailbox)
        self.expiries[mailbox.mailbox_id] = sub.expiration  # what Graph says now, also when renewing fails
        if self.needs_renewal(sub):
            return await self.renew(mailbox, sub.id)
        return sub

    async def ensure_all(self) -> dict[str, Subscription]:
        return {m.mailbox_id: await self.ensure(m) for m in self._config.mailboxes}

    async def reauthorize(self, mailbox: MailboxConfig, subscription_id: str) -> None:
        """Answer reauthorizationRequired; a subscription already gone is recreated instead."""
        try:
            await self._client.reauthorize_subscription(subscription_id)
        except GraphNotFoundError:
            await self.create(mailbox)
            return
        logger.info("reauthorized Graph subscription %s for %s", subscription_id, mailbox.mailbox_id)
