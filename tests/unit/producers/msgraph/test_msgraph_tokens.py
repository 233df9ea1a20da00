"""msal's client-credentials flow against the identity stand-in over real TLS (msal insists on https)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from producers.msgraph import GraphAuthError, GraphClient, MsalTokenProvider
from tests.unit.producers.msgraph.conftest import USER, mail
from tests.unit.producers.msgraph.standin import (
    CLIENT_ID,
    CLIENT_SECRET,
    DIRECTORY,
    GraphStandIn,
    self_signed,
    serve_tls,
)


@pytest.fixture
def tls_standin(tmp_path: Path) -> Iterator[tuple[GraphStandIn, str, str]]:
    """The stand-in on https://localhost:<port>; yields (stand-in, base URL, CA file)."""
    standin = GraphStandIn()
    certfile, keyfile = self_signed(tmp_path)
    with serve_tls(standin.app(), certfile, keyfile) as port:
        yield standin, f"https://localhost:{port}", certfile


def provider(base: str, ca: str, secret: str = CLIENT_SECRET) -> tuple[MsalTokenProvider, requests.Session]:
    session = requests.Session()
    session.verify = ca
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override our CA
    tokens = MsalTokenProvider(
        client_id=CLIENT_ID, client_secret=secret, authority=f"{base}/{DIRECTORY}",
        http_client=session, validate_authority=False,
    )
    return tokens, session


def test_msal_gets_caches_and_refreshes_a_token(tls_standin: tuple[GraphStandIn, str, str]) -> None:
    standin, base, ca = tls_standin
    tokens, session = provider(base, ca)

    async def go() -> tuple[str, str, str]:
        first = await tokens.token()
        cached = await tokens.token()
        fresh = await tokens.token(refresh=True)
        return first, cached, fresh

    try:
        first, cached, fresh = asyncio.run(go())
    finally:
        session.close()
    assert first in standin.valid_tokens and fresh in standin.valid_tokens
    assert cached == first
    assert fresh != first
    assert standin.token_requests == 2


def test_wrong_client_secret_is_an_auth_error(tls_standin: tuple[GraphStandIn, str, str]) -> None:
    _, base, ca = tls_standin
    tokens, session = provider(base, ca, secret="wrong")
    try:
        with pytest.raises(GraphAuthError, match="invalid_client") as info:
            asyncio.run(tokens.token())
    finally:
        session.close()
    assert not info.value.retriable


def test_graph_client_recovers_from_an_expired_token_through_msal(tls_standin: tuple[GraphStandIn, str, str]) -> None:
    standin, base, ca = tls_standin
    mid = standin.add_message(USER, mail("<a@x>"), "<a@x>")
    tokens, session = provider(base, ca)

    async def go() -> bytes:
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=ca)) as http:
            client = GraphClient(http, tokens, base_url=f"{base}/v1.0")
            await client.list_subscriptions()
            standin.expire_tokens()  # msal still holds the old token as valid
            return await client.message_mime(USER, mid, 1 << 20)

    try:
        assert asyncio.run(go()) == mail("<a@x>")
    finally:
        session.close()
    assert standin.token_requests == 2
