"""Approvals: the HTTP callbacks (Slack, DingTalk, signed links) and the pure state changes they lead to."""

from streams.approvals.claims import ClaimStore, InMemoryClaims
from streams.approvals.decisions import (
    UNAUTHENTICATED_TENANT,
    Rejection,
    RejectionReason,
    apply_approval,
    audit_rejection,
    expire,
    is_expired,
)
from streams.approvals.errors import ApprovalsError, RefusedError
from streams.approvals.pending import ActionsFeed, InMemoryPendingActions, PendingActions
from streams.approvals.router import ApprovalsConfig, approval_links, build_approvals_router

__all__ = [
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
    "is_expired",
]
