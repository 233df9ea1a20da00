"""The approval key of the tests, and the one helper that writes an ApprovalDecision as the API does: signed.

The worker applies no decision without the API's approval signature (``security.approval_key``), so a test that
publishes a decision itself, or hands one to the approval stage, builds it here. Test stacks get
:data:`APPROVAL_KEY` in their environment (tests/integration/flow/conftest.py ``stack_for``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from policies.decision_signature import ApprovalKeys
from schemas.records import ApprovalDecision, Decision

#: The approval key of every test worker and API (made up; at least 32 bytes, unlike any decision key).
APPROVAL_KEY = "rcaflow-tests-approval-key-0123456789abcdefgh"
APPROVAL_KEYS = ApprovalKeys.from_text(APPROVAL_KEY)


def signed_decision(
    tenant: str,
    action_id: str,
    decision: Decision = Decision.APPROVE,
    *,
    approver: str = "slack:U1",
    channel: str = "slack",
    decided_at: datetime | None = None,
    keys: ApprovalKeys = APPROVAL_KEYS,
    **extra: Any,
) -> ApprovalDecision:
    """The decision the API publishes after it verified ``approver``: signed with the tests' approval key."""
    return keys.sign(ApprovalDecision(tenant=tenant, action_id=action_id, decision=decision, approver=approver,
                                      channel=channel, decided_at=decided_at or datetime.now(UTC), **extra))
