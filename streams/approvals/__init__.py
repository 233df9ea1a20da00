"""Approvals: the HTTP callbacks (Slack, DingTalk, signed links) and the pure state changes they lead to."""

from streams.approvals.claims import ClaimStore, InMemoryClaims
from streams.approvals.decisions import (
    DECIDED_OUTCOMES,
    REFUSALS_STAGE,
    UNAUTHENTICATED_TENANT,
    Rejection,
    RejectionReason,
    apply_approval,
    audit_rejection,
    expire,
    forget_decisions,
    is_expired,
    refusal_letter,
    refuse_decision,
    remember_decision,
)
from streams.approvals.errors import ApprovalsError, RefusedError
from streams.approvals.pending import ActionsFeed, InMemoryPendingActions, PendingActions
from streams.approvals.router import ApprovalsConfig, approval_links, build_approvals_router

__all__ = [
    "DECIDED_OUTCOMES",
    "REFUSALS_STAGE",
    "UNAUTHENTICATED_TENANT",
    "ActionsFeed",
    "ApprovalsConfig",
    "ApprovalsError",
    "ClaimStore",
    "InMemoryClaims",
    "InMemoryPendingActions",
    "PendingActions",
    "RefusedError",
    "Rejection",
    "RejectionReason",
    "apply_approval",
    "approval_links",
    "audit_rejection",
    "build_approvals_router",
    "expire",
    "forget_decisions",
    "is_expired",
    "refusal_letter",
    "refuse_decision",
    "remember_decision",
]
