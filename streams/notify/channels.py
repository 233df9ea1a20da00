"""The chat channels each tenant's notifications go to, built from the notify settings."""

from __future__ import annotations

import httpx

from executors.notify import ApprovalChannel
from streams.settings import NotifySettings


def build_channels(settings: NotifySettings, client: httpx.AsyncClient) -> dict[str, dict[str, ApprovalChannel]]:
    """tenant → channel name → sender, all over one injected client (one rate limiter per robot)."""
    from executors.notify.dingtalk import DingTalkChannel
    from executors.notify.slack import SlackChannel

    out: dict[str, dict[str, ApprovalChannel]] = {}
    for tenant, target in settings.tenants.items():
        channels: dict[str, ApprovalChannel] = {}
        if target.slack is not None:
            channels["slack"] = SlackChannel(client, token=target.slack.token, channel=target.slack.channel,
                                             api_base=target.slack.api_base)
        if target.dingtalk is not None:
            channels["dingtalk"] = DingTalkChannel(client, webhook_url=target.dingtalk.webhook_url,
                                                   secret=target.dingtalk.secret)
        if channels:
            out[tenant] = channels
    return out
