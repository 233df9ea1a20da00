"""Approval channels as pure functions: verify who signed a callback, sign what we send, mint approval links."""

from executors.approvals.dingtalk import dingtalk_sign, dingtalk_signed_url, verify_dingtalk_callback
from executors.approvals.errors import SignatureError, SignatureFailure
from executors.approvals.links import InMemoryNonceStore, LinkClaims, LinkSigner, NonceStore
from executors.approvals.slack import slack_signature, verify_slack_signature

__all__ = [
    "InMemoryNonceStore",
    "LinkClaims",
    "LinkSigner",
    "NonceStore",
    "SignatureError",
    "SignatureFailure",
    "dingtalk_sign",
    "dingtalk_signed_url",
    "slack_signature",
    "verify_dingtalk_callback",
    "verify_slack_signature",
]
