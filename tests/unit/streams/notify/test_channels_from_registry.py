"""Chat channels are built through the channel registry from each tenant's settings: one path for every channel."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from executors.notify import CHANNELS, NotifyError, channel_class
from executors.notify.dingtalk import DingTalkChannel
from executors.notify.slack import SlackChannel
from streams.notify.channels import build_channels
from streams.settings import DingTalkTarget, NotifySettings, SlackTarget, TenantNotifySettings


class RecordingChannel:
    """Stands where a registered channel class would, to show which class the registry named."""

    def __init__(self, client: httpx.AsyncClient, **target: object) -> None:
        self.target = target


def _settings() -> NotifySettings:
    return NotifySettings(tenants={
        "acme": TenantNotifySettings(slack=SlackTarget(token=SecretStr("xoxb-test"), channel="#sre")),
        "beta": TenantNotifySettings(dingtalk=DingTalkTarget(webhook_url=SecretStr("https://oapi.dingtalk.com/x"),
                                                             secret=SecretStr("SEC1"))),
        "quiet": TenantNotifySettings(),
    })


def test_every_configured_channel_is_the_class_its_registry_entry_names() -> None:
    channels = build_channels(_settings(), httpx.AsyncClient())
    assert sorted(channels) == ["acme", "beta"]  # a tenant with no channel is not notified
    assert isinstance(channels["acme"]["slack"], SlackChannel)
    assert isinstance(channels["beta"]["dingtalk"], DingTalkChannel)


def test_the_registry_is_the_path_used_and_hands_the_settings_over_as_they_are() -> None:
    registry = {**CHANNELS, "slack": f"{__name__}:RecordingChannel"}
    channels = build_channels(_settings(), httpx.AsyncClient(), registry)
    slack = channels["acme"]["slack"]
    assert isinstance(slack, RecordingChannel)
    token = slack.target["token"]
    assert isinstance(token, SecretStr) and token.get_secret_value() == "xoxb-test"  # never unwrapped on the way


def test_every_settings_section_has_a_registered_channel() -> None:
    for name in TenantNotifySettings.model_fields:
        assert isinstance(channel_class(name), type), name
    with pytest.raises(NotifyError, match="no approval channel"):
        build_channels(_settings(), httpx.AsyncClient(), {"dingtalk": CHANNELS["dingtalk"]})
