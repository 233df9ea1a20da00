"""Build the worker's notifier from settings: the tenants' chat channels and the approval links."""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any

from streams.notify.notifier import Notifier
from streams.settings import Settings
from streams.wiring.http_clients import make_async_client


def build_notifier(settings: Settings, store: MutableMapping[str, Any]) -> Notifier | None:
    """First-response notifications, or None when no tenant has a channel configured."""
    from executors.approvals import LinkSigner
    from streams.notify.channels import build_channels

    channels = build_channels(settings.notify, make_async_client(settings.http))
    if not channels:
        return None
    secret = settings.approvals.link_secret
    signer = LinkSigner(secret, ttl=timedelta(minutes=settings.approvals.link_ttl_minutes)) if secret else None
    return Notifier(channels, store, link_signer=signer, public_base_url=settings.approvals.public_base_url)
