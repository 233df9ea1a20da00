"""Each ``link:`` approver gets their own approval link by Slack direct message; the shared message never holds a
link that approves in someone's name. Against the Slack Web API stand-in (tests/support/slack.py)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from executors.notify.slack import SlackChannel
from streams.notify.links import ApprovalLinkSigner
from streams.notify.notifier import Notifier, NotifyStageError
from tests.support.slack import BOT_TOKEN, SlackApiStandIn
from tests.unit.executors.notify.notify_helpers import NOW, actions, rca

SIGNER = ApprovalLinkSigner(SecretStr("a-link-signing-secret-of-at-least-32-bytes"))
BASE = "https://rcaflow.example"
APPROVERS = {"acme": ["slack:U1", "link:alice@acme.example", "link:carol@acme.example"]}
_LINK = re.compile(re.escape(BASE) + r"/approvals/link/([A-Za-z0-9._-]+)")


def notifier(standin: SlackApiStandIn, dms: dict[str, str], store: dict[str, Any] | None = None) -> Notifier:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=standin.app()), base_url="https://slack.com")
    channel = SlackChannel(client, token=SecretStr(BOT_TOKEN), channel="C0123", approver_dms=dms)
    return Notifier({"acme": {"slack": channel}}, store if store is not None else {}, link_signer=SIGNER,
                    public_base_url=BASE, clock=lambda: NOW, approvers=APPROVERS)


def link_approvers(body: dict[str, Any]) -> list[str | None]:
    """Whom each approval link in a message body decides for (None: anonymous)."""
    return [SIGNER.read(token, now=NOW).approver for token in _LINK.findall(json.dumps(body))]


def test_each_approver_gets_their_own_link_by_direct_message_and_the_channel_none() -> None:
    standin = SlackApiStandIn()
    store: dict[str, Any] = {}

    asyncio.run(notifier(standin, {"link:alice@acme.example": "U0ALICE"}, store).handle(rca(), actions()))

    (shared,) = [body for name, body in standin.calls if name == "chat.postMessage" and body["channel"] == "C0123"]
    assert link_approvers(shared) == [None]  # the shared message: only the anonymous link
    assert ("conversations.open", {"users": "U0ALICE"}) in standin.calls
    (dm,) = standin.direct_messages("U0ALICE")
    assert link_approvers(dm) == ["alice@acme.example"]  # her link decides as her, and only she got it
    assert "restart etcd member" in json.dumps(dm)
    # carol has no Slack user configured: no private path, so no link of hers anywhere.
    assert "carol@acme.example" not in [a for _, body in standin.calls for a in link_approvers(body)]

    asyncio.run(notifier(standin, {"link:alice@acme.example": "U0ALICE"}, store).handle(rca(), actions()))
    assert len(standin.direct_messages("U0ALICE")) == 1  # a redelivered result sends no second link


def test_an_approver_slack_does_not_know_is_a_failure_and_the_shared_message_still_goes_out() -> None:
    standin = SlackApiStandIn()
    with pytest.raises(NotifyStageError, match="user_not_found"):
        asyncio.run(notifier(standin, {"link:alice@acme.example": "U0GONE"}).handle(rca(), actions()))
    assert [b["channel"] for n, b in standin.calls if n == "chat.postMessage"] == ["C0123"]
    assert standin.dms == {}


def test_a_wrong_bot_token_sends_no_direct_message() -> None:
    standin = SlackApiStandIn(token="another-token")
    with pytest.raises(NotifyStageError, match="invalid_auth"):
        asyncio.run(notifier(standin, {"link:alice@acme.example": "U0ALICE"}).handle(rca(), actions()))
    assert standin.calls == [] and standin.dms == {}


def test_the_settings_name_each_approvers_slack_user() -> None:
    from streams.notify.channels import build_channels
    from streams.settings import NotifySettings

    settings = NotifySettings.model_validate({"tenants": {"acme": {"slack": {
        "token": BOT_TOKEN, "channel": "C0123", "approver_dms": {"link:alice@acme.example": "U0ALICE"}}}}})
    (channel,) = build_channels(settings, httpx.AsyncClient())["acme"].values()
    assert isinstance(channel, SlackChannel)
    assert channel.reaches("link:alice@acme.example") and not channel.reaches("link:carol@acme.example")
    with pytest.raises(ValueError, match="approver_dms"):
        NotifySettings.model_validate({"tenants": {"acme": {"slack": {
            "token": BOT_TOKEN, "channel": "C0123", "approver_dms": {"alice": "not a user id"}}}}})
