"""GraphClient against the stand-in: retries as Graph documents them, token refresh, URL safety."""

from __future__ import annotations

import asyncio

import pytest

from producers.msgraph import (
    GraphAuthError,
    GraphNotFoundError,
    GraphProtocolError,
    GraphThrottledError,
    MailTooLargeError,
    RetryPolicy,
)
from tests.unit.producers.msgraph.conftest import GRAPH, USER, Sleeps, StandInTokens, asgi_http, graph_client, mail
from tests.unit.producers.msgraph.standin import GraphStandIn


def test_429_waits_exactly_retry_after_then_succeeds(standin: GraphStandIn, sleeps: Sleeps) -> None:
    mid = standin.add_message(USER, mail("<a@x>"), "<a@x>")
    standin.fail_next("GET", f"/users/{USER}/messages/{mid}/$value", 429, times=2, **{"Retry-After": "7"})

    async def go() -> bytes:
        async with asgi_http(standin) as http:
            return await graph_client(standin, sleeps, http).message_mime(USER, mid, 1 << 20)

    assert asyncio.run(go()) == mail("<a@x>")
    assert sleeps.delays == [7.0, 7.0]


def test_503_without_hint_backs_off_exponentially_then_gives_up(standin: GraphStandIn, sleeps: Sleeps) -> None:
    mid = standin.add_message(USER, mail("<a@x>"), "<a@x>")
    standin.fail_next("GET", f"/users/{USER}/messages/{mid}/$value", 503, times=10)

    async def go() -> None:
        async with asgi_http(standin) as http:
            await graph_client(standin, sleeps, http).message_mime(USER, mid, 1 << 20)

    with pytest.raises(GraphThrottledError) as info:
        asyncio.run(go())
    assert info.value.retriable and info.value.status == 503
    # rand=0.5 (full jitter at half the ceiling): ceilings 0.5, 1, 2 → 0.25, 0.5, 1.0; 4 attempts in all.
    assert sleeps.delays == [0.25, 0.5, 1.0]


def test_backoff_is_capped(standin: GraphStandIn, sleeps: Sleeps) -> None:
    standin.fail_next("GET", "/subscriptions", 500, times=6)

    async def go() -> None:
        async with asgi_http(standin) as http:
            retry = RetryPolicy(max_attempts=7, base_seconds=1.0, cap_seconds=3.0, jitter=False)
            await graph_client(standin, sleeps, http, retry).list_subscriptions()

    asyncio.run(go())
    assert sleeps.delays == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]


def test_retry_after_beyond_the_limit_is_not_waited_in_line(standin: GraphStandIn, sleeps: Sleeps) -> None:
    standin.fail_next("GET", "/subscriptions", 429, **{"Retry-After": "3600"})

    async def go() -> None:
        async with asgi_http(standin) as http:
            await graph_client(standin, sleeps, http).list_subscriptions()

    with pytest.raises(GraphThrottledError) as info:
        asyncio.run(go())
    assert info.value.retry_after == 3600.0
    assert sleeps.delays == []


def test_expired_token_is_refreshed_once(standin: GraphStandIn, sleeps: Sleeps) -> None:
    mid = standin.add_message(USER, mail("<a@x>"), "<a@x>")

    async def go() -> tuple[bytes, int]:
        async with asgi_http(standin) as http:
            client = graph_client(standin, sleeps, http)
            await client.list_subscriptions()
            standin.expire_tokens()
            body = await client.message_mime(USER, mid, 1 << 20)
            tokens = client._tokens
            assert isinstance(tokens, StandInTokens)
            return body, tokens.refreshes

    body, refreshes = asyncio.run(go())
    assert body == mail("<a@x>")
    assert refreshes == 1


def test_401_with_a_fresh_token_is_an_auth_error(standin: GraphStandIn, sleeps: Sleeps) -> None:
    standin.fail_next("GET", "/subscriptions", 401, times=2)

    async def go() -> None:
        async with asgi_http(standin) as http:
            await graph_client(standin, sleeps, http).list_subscriptions()

    with pytest.raises(GraphAuthError) as info:
        asyncio.run(go())
    assert not info.value.retriable


def test_deleted_message_is_not_found(standin: GraphStandIn, sleeps: Sleeps) -> None:
    async def go() -> None:
        async with asgi_http(standin) as http:
            await graph_client(standin, sleeps, http).message_mime(USER, "AAMkgone=", 1 << 20)

    with pytest.raises(GraphNotFoundError):
        asyncio.run(go())


@pytest.mark.parametrize("bad", ["../../me/sendMail", "id?$select=body", "a b", "", "x" * 600])
def test_untrusted_ids_never_reach_the_url(standin: GraphStandIn, sleeps: Sleeps, bad: str) -> None:
    async def go() -> None:
        async with asgi_http(standin) as http:
            await graph_client(standin, sleeps, http).message_mime(USER, bad, 1 << 20)

    with pytest.raises(GraphProtocolError):
        asyncio.run(go())
    assert standin.requests == []


def test_paging_links_off_the_graph_base_are_refused(standin: GraphStandIn, sleeps: Sleeps) -> None:
    async def go() -> None:
        async with asgi_http(standin) as http:
            await graph_client(standin, sleeps, http).delta_page("https://evil.example/v1.0/steal?token=1")

    with pytest.raises(GraphProtocolError):
        asyncio.run(go())
    assert standin.requests == []


def test_delta_pages_until_delta_link(standin: GraphStandIn, sleeps: Sleeps) -> None:
    ids = [standin.add_message(USER, mail(f"<{i}@x>"), f"<{i}@x>") for i in range(5)]

    async def go() -> tuple[list[str], str | None]:
        async with asgi_http(standin) as http:
            client = graph_client(standin, sleeps, http)
            seen: list[str] = []
            link = client.delta_start(USER, "inbox")
            while True:
                page = await client.delta_page(link)
                seen.extend(item.id for item in page.items)
                if page.next_link is None:
                    return seen, page.delta_link
                assert page.next_link.startswith(GRAPH)
                link = page.next_link

    seen, delta = asyncio.run(go())
    assert seen == ids
    assert delta is not None and "$deltatoken=" in delta


def test_oversized_message_is_refused(standin: GraphStandIn, sleeps: Sleeps) -> None:
    mid = standin.add_message(USER, mail("<a@x>") + b"x" * 5000, "<a@x>")

    async def go() -> None:
        async with asgi_http(standin) as http:
            await graph_client(standin, sleeps, http).message_mime(USER, mid, 1000)

    with pytest.raises(MailTooLargeError, match="above the 1000-byte mail limit") as info:
        asyncio.run(go())
    assert info.value.retriable is False
    assert (info.value.size, info.value.limit, info.value.graph_id) == (len(mail("<a@x>")) + 5000, 1000, mid)
    assert info.value.head.startswith(b"Message-ID: <a@x>") and b"xxxx" not in info.value.head
