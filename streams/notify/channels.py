"""The chat channels each tenant's notifications go to, built from the notify settings through the registry.

A channel is found by name in :data:`executors.notify.CHANNELS` ("module:Class",
imported on use) and built from its settings section: the tenant's
``notify.tenants.<tenant>.<channel name>`` fields become the class's keyword
arguments. Adding a channel is one module with the class, one registry entry and
its settings section (typed there so its secrets stay ``SecretStr``).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from executors.notify import CHANNELS, ApprovalChannel, channel_class
from streams.settings import NotifySettings


def build_channels(
    settings: NotifySettings, client: httpx.AsyncClient, registry: Mapping[str, str] = CHANNELS
) -> dict[str, dict[str, ApprovalChannel]]:
    """tenant → channel name → sender, all over one injected client (one rate limiter per robot)."""
    out: dict[str, dict[str, ApprovalChannel]] = {}
    for tenant, targets in settings.tenants.items():
        channels: dict[str, ApprovalChannel] = {}
        for name, target in targets:
            if target is None:
                continue
            cls = channel_class(name, registry)
            channels[name] = cls(client, **dict(target))
        if channels:
            out[tenant] = channels
    return out
