"""``rcaflow_msgraph_subscription_expiry_timestamp_seconds``: the expiry Graph last confirmed, per mailbox, moving
forward when the maintenance renews a subscription near its end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from producers.msgraph import GraphError, SubscriptionManager
from producers.msgraph.metrics import SubscriptionExpiryCollector
from tests.unit.producers.msgraph.conftest import Sleeps, asgi_http, graph_client, make_config
from tests.unit.producers.msgraph.standin import GraphStandIn

EXPIRY = "rcaflow_msgraph_subscription_expiry_timestamp_seconds"


def test_expiry_gauge_follows_creation_and_renewal(standin: GraphStandIn, sleeps: Sleeps) -> None:
    config = make_config()
    mailbox = config.mailboxes[0]
    registry = CollectorRegistry()
    labels = {"mailbox": mailbox.mailbox_id}
    seen: list[float | None] = []

    async def go() -> None:
        async with asgi_http(standin) as http:
            subs = SubscriptionManager(config, graph_client(standin, sleeps, http))
            registry.register(SubscriptionExpiryCollector(subs))
            seen.append(registry.get_sample_value(EXPIRY, labels))  # nothing confirmed yet: no sample
            created = await subs.ensure(mailbox)
            seen.append(registry.get_sample_value(EXPIRY, labels))
            # Graph's clock moved on: 3 h left, below renew_before (24 h); the next round renews it.
            standin.subscriptions[created.id]["expirationDateTime"] = (datetime.now(UTC)
                                                                       + timedelta(hours=3)).isoformat()
            standin.fail_next("PATCH", f"/subscriptions/{created.id}", 503, times=4)  # every attempt of one round
            with pytest.raises(GraphError):
                await subs.ensure(mailbox)
            seen.append(registry.get_sample_value(EXPIRY, labels))  # renewal failing: Graph's 3 h show
            await subs.ensure(mailbox)
            seen.append(registry.get_sample_value(EXPIRY, labels))

    asyncio.run(go())
    missing, created_at, failing_at, renewed_at = seen
    assert missing is None
    assert created_at is not None and renewed_at is not None
    now = datetime.now(UTC).timestamp()
    assert timedelta(days=2).total_seconds() < created_at - now < timedelta(minutes=4230).total_seconds()
    assert failing_at is not None and failing_at - now < timedelta(hours=3).total_seconds()
    assert renewed_at - now > timedelta(days=2).total_seconds()
