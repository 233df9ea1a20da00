"""Signed one-time approval links for the actions of a notification (served by the API's /approvals/link)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from executors.approvals import LinkSigner
from schemas.records import ActionEvent, ActionState


def approval_links(signer: LinkSigner, base_url: str, actions: Iterable[ActionEvent], now: datetime) -> dict[str, str]:
    """Signed link URLs (``{base_url}/approvals/link/{token}``) for the actions awaiting approval."""
    base = base_url.rstrip("/")
    return {
        a.action_id: f"{base}/approvals/link/{signer.issue(a.tenant, a.action_id, now=now)}"
        for a in actions
        if a.state is ActionState.AWAITING_APPROVAL
    }
