"""Slack and DingTalk senders against local stand-ins speaking each documented API."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr

from executors.notify import MessageRef, NotifyError, RateLimitedError, RateLimiter, channel_class
from executors.notify import slack as slack_messages
from executors.notify.dingtalk import DingTalkChannel
from executors.notify.slack import SlackChannel
from tests.unit.executors.notify.notify_helpers import (
    BOT_TOKEN,
    NOW,
    ROBOT_SECRET,
    ROBOT_TOKEN,
    DingTalkRobotStandIn,
    SlackApiStandIn,
    actions,
    rca,
)


def client_for(app: object, base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)  # type: ignore[arg-type]


def slack_channel(standin: SlackApiStandIn, token: str = BOT_TOKEN) -> SlackChannel:
    return SlackChannel(client_for(standin.app(), "https://slack.com"), token=SecretStr(token), channel="C0123",
                        api_base="https://slack.com/api")


def test_slack_post_returns_the_ts_and_update_uses_it() -> None:
    standin = SlackApiStandIn()

    async def go() -> MessageRef:
        channel = slack_channel(standin)
        ref = await channel.notify_first_response(rca(), actions())
        await channel.update(ref, rca(), actions())
        return ref

    ref = asyncio.run(go())
    assert ref == MessageRef("slack", "C0123", "1764072000.000100")
    [(first, posted), (second, updated)] = standin.calls
    assert (first, second) == ("chat.postMessage", "chat.update")
    assert posted["channel"] == "C0123" and updated["ts"] == "1764072000.000100"


def test_slack_api_errors_are_reported_without_the_token() -> None:
    standin = SlackApiStandIn(error="channel_not_found")
    with pytest.raises(NotifyError, match="channel_not_found") as caught:
        asyncio.run(slack_channel(standin).notify_first_response(rca(), actions()))
    assert BOT_TOKEN not in str(caught.value) and not caught.value.retriable


def test_slack_rejects_a_wrong_token() -> None:
    with pytest.raises(NotifyError, match="invalid_auth"):
        asyncio.run(slack_channel(SlackApiStandIn(), token="wrong-bot-token").notify_first_response(rca(), actions()))


def test_slack_429_is_retriable_with_retry_after() -> None:
    with pytest.raises(RateLimitedError) as caught:
        asyncio.run(slack_channel(SlackApiStandIn(throttled=True)).notify_first_response(rca(), actions()))
    assert caught.value.retriable and caught.value.retry_after == 3.0


def test_response_url_is_posted_only_to_slack() -> None:
    standin = SlackApiStandIn()
    client = client_for(standin.app(), "https://hooks.slack.com")
    body = slack_messages.ephemeral("hello")
    asyncio.run(slack_messages.respond(client, "https://hooks.slack.com/actions/T1/2/xyz", body))
    assert standin.calls == [("response_url", body)]
    for url in ("https://evil.example/actions/x", "http://hooks.slack.com/actions/x",
                "https://user:pw@hooks.slack.com/actions/x"):
        with pytest.raises(NotifyError):
            asyncio.run(slack_messages.respond(client, url, body))
    assert len(standin.calls) == 1


@dataclass
class FakeTime:
    """Seconds since the epoch; sleeping advances it, so the limiter's waits cost no real time."""

    now: float = NOW.timestamp()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def dingtalk(standin: DingTalkRobotStandIn, time: FakeTime, limiter: RateLimiter | None = None) -> DingTalkChannel:
    return DingTalkChannel(
        client_for(standin.app(), "https://oapi.dingtalk.com"),
        webhook_url=SecretStr(f"https://oapi.dingtalk.com/robot/send?access_token={ROBOT_TOKEN}"),
        secret=SecretStr(ROBOT_SECRET),
        limiter=limiter or RateLimiter(20, 60.0, clock=time, sleep=time.sleep),
        clock_ms=lambda: int(time() * 1000),
    )


def test_dingtalk_messages_are_signed_and_accepted() -> None:
    time = FakeTime()
    standin = DingTalkRobotStandIn(clock=time)
    links = {"act-1": "https://rcaflow.example/approvals/link/v1.a.b"}
    ref = asyncio.run(dingtalk(standin, time).notify_first_response(rca(), actions(), links))
    assert ref == MessageRef("dingtalk")
    [card] = standin.received
    assert card["msgtype"] == "actionCard" and card["actionCard"]["btns"][0]["actionURL"] == links["act-1"]


def test_dingtalk_wrong_secret_is_a_clear_error() -> None:
    time = FakeTime()
    standin = DingTalkRobotStandIn(clock=time, secret="SECother")
    with pytest.raises(NotifyError, match="310000"):
        asyncio.run(dingtalk(standin, time).notify_first_response(rca(), actions()))


def test_dingtalk_burst_is_spread_to_20_a_minute_and_nothing_is_dropped() -> None:
    time = FakeTime()
    standin = DingTalkRobotStandIn(clock=time)

    async def burst() -> None:
        channel = dingtalk(standin, time)
        for _ in range(45):
            await channel.update(MessageRef("dingtalk"), rca(), actions())

    asyncio.run(burst())
    assert len(standin.received) == 45 and standin.refused == 0
    sent = standin.sent_at
    assert max(sum(1 for t in sent if first <= t < first + 60) for first in sent) == 20


def test_dingtalk_rate_limit_answer_is_retriable() -> None:
    time = FakeTime()
    standin = DingTalkRobotStandIn(clock=time, limit=1)
    channel = dingtalk(standin, time, limiter=RateLimiter(100, 60.0, clock=time, sleep=time.sleep))

    async def twice() -> None:
        await channel.update(MessageRef("dingtalk"), rca(), actions())
        await channel.update(MessageRef("dingtalk"), rca(), actions())

    with pytest.raises(RateLimitedError, match="130101") as caught:
        asyncio.run(twice())
    assert caught.value.retriable


def test_channels_are_found_by_name() -> None:
    assert channel_class("slack") is SlackChannel and channel_class("dingtalk") is DingTalkChannel
    with pytest.raises(NotifyError, match="known: dingtalk, slack"):
        channel_class("teams")
