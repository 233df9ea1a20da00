"""Build the worker's notifier from settings: the tenants' chat channels and the approval links."""

from __future__ import annotations

import functools
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any

from policies.runbooks import runbook_link
from streams.notify.notifier import Notifier
from streams.settings import Settings
from streams.wiring.http_clients import make_async_client


def build_notifier(settings: Settings, store: MutableMapping[str, Any]) -> Notifier | None:
    """First-response notifications, or None when no tenant has a channel configured."""
    from streams.notify.channels import build_channels
    from streams.notify.links import ApprovalLinkSigner

    channels = build_channels(settings.notify, make_async_client(settings.http))
    if not channels:
        return None
    secret = settings.approvals.link_secret
    # Anonymous links in the shared message; each link: approver's own link only privately (Slack DM).
    signer = (ApprovalLinkSigner(secret, ttl=timedelta(minutes=settings.approvals.link_ttl_minutes))
              if secret else None)
    from streams.wiring.rca import build_similar_lookup

    similar = build_similar_lookup(settings)  # None without a knowledge base: no history line
    return Notifier(channels, store, link_signer=signer, public_base_url=settings.approvals.public_base_url,
                    approvers=settings.approvals.approvers,
                    history=similar.history_line if similar is not None else None,
                    runbook=functools.partial(runbook_link, base_url=settings.notify.runbook_base_url))
