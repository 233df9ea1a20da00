"""Subscriptions: created under Graph's 4230-minute cap, found again, renewed early, recreated on 404."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from producers.msgraph import SubscriptionManager
from tests.unit.producers.msgraph.conftest import STATE, USER, Sleeps, asgi_http, graph_client, make_config
from tests.unit.producers.msgraph.standin import GraphStandIn


def manager(standin: GraphStandIn, sleeps: Sleeps, http: object, now: datetime | None = None) -> SubscriptionManager:
    config = make_config()
    client = graph_client(standin, sleeps, http)  # type: ignore[arg-type]
    if now is None:
        return SubscriptionManager(config, client)
    return SubscriptionManager(config, client, now=lambda: now)


def test_ensure_creates_one_subscription_with_the_documented_fields(standin: GraphStandIn, sleeps: Sleeps) -> None:
    async def go() -> None:
        async with asgi_http(standin) as http:
            subs = manager(standin, sleeps, http)
            config = make_config()
            first = await subs.ensure(config.mailboxes[0])
            again = await subs.ensure(config.mailboxes[0])
            assert again.id == first.id

    asyncio.run(go())
    assert len(standin.subscriptions) == 1
    sub = next(iter(standin.subscriptions.values()))
    assert sub["resource"] == f"users/{USER}/mailFolders/inbox/messages"
    assert sub["changeType"] == "created"
    assert sub["notificationUrl"] == "https://rcaflow.example/msgraph/webhook"
    assert sub["lifecycleNotificationUrl"] == "https://rcaflow.example/msgraph/webhook"
    assert sub["_clientState"] == STATE
    left = datetime.fromisoformat(sub["expirationDateTime"].replace("Z", "+00:00")) - datetime.now(UTC)
    assert timedelta(days=2) < left < timedelta(minutes=4230)


def test_subscription_near_expiry_is_renewed_by_patch(standin: GraphStandIn, sleeps: Sleeps) -> None:
    async def go() -> None:
        async with asgi_http(standin) as http:
            config = make_config()
            created = await manager(standin, sleeps, http).ensure(config.mailboxes[0])
            # As if two and a half days had passed: 3 h left, below renew_before (24 h).
            soon = datetime.now(UTC) + timedelta(hours=3)
            standin.subscriptions[created.id]["expirationDateTime"] = soon.isoformat()
            renewed = await manager(standin, sleeps, http).ensure(config.mailboxes[0])
            assert renewed.id == created.id
            assert renewed.expiration > soon + timedelta(days=2)

    asyncio.run(go())
    assert ("PATCH", f"/subscriptions/{next(iter(standin.subscriptions))}") in standin.requests
    assert len(standin.subscriptions) == 1


def test_renew_of_a_deleted_subscription_recreates_it(standin: GraphStandIn, sleeps: Sleeps) -> None:
    async def go() -> str:
        async with asgi_http(standin) as http:
            config = make_config()
            subs = manager(standin, sleeps, http)
            created = await subs.ensure(config.mailboxes[0])
            standin.expire_subscription(created.id)
            renewed = await subs.renew(config.mailboxes[0], created.id)
            assert renewed.id != created.id
            return renewed.id

    new_id = asyncio.run(go())
    assert list(standin.subscriptions) == [new_id]


def test_reauthorize_calls_the_endpoint(standin: GraphStandIn, sleeps: Sleeps) -> None:
    async def go() -> str:
        async with asgi_http(standin) as http:
            config = make_config()
            subs = manager(standin, sleeps, http)
            created = await subs.ensure(config.mailboxes[0])
            await subs.reauthorize(config.mailboxes[0], created.id)
            return created.id

    sub_id = asyncio.run(go())
    assert standin.reauthorized == [sub_id]


def test_configuration_refuses_what_graph_would_refuse() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 4229"):
        make_config(subscription_minutes=4230)
    with pytest.raises(ValidationError, match="https"):
        make_config(notification_url="http://rcaflow.example/msgraph/webhook")
    with pytest.raises(ValidationError, match="own client_state"):
        make_config(mailboxes=[
            {"user": "a@contoso.com", "tenant": "acme", "client_state": STATE},
            {"user": "b@contoso.com", "tenant": "acme", "client_state": STATE},
        ])
    with pytest.raises(ValidationError, match="Graph id"):
        make_config(mailboxes=[{"user": "../me", "tenant": "acme", "client_state": STATE}])
    with pytest.raises(ValidationError, match=r"16\.\.128"):
        make_config(mailboxes=[{"user": "a@contoso.com", "tenant": "acme", "client_state": "short"}])
