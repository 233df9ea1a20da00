"""Slack request signing (v0): HMAC-SHA256 over ``v0:{timestamp}:{raw body}`` with the app's signing secret.

See https://api.slack.com/authentication/verifying-requests-from-slack — the
body must be the raw bytes as received, before any form or JSON parsing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from pydantic import SecretStr

from executors.approvals.errors import SignatureError, SignatureFailure

#: Slack's recommended replay window.
TOLERANCE_S = 300


def _secret(secret: SecretStr | str) -> bytes:
    return (secret.get_secret_value() if isinstance(secret, SecretStr) else secret).encode("utf-8")


def slack_signature(signing_secret: SecretStr | str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` value Slack would send for this timestamp and body."""
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(_secret(signing_secret), base, hashlib.sha256).hexdigest()


def verify_slack_signature(
    *,
    signing_secret: SecretStr | str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> None:
    """Return if the request is Slack's and fresh; else raise :class:`SignatureError` saying why.

    ``timestamp`` and ``signature`` are the ``X-Slack-Request-Timestamp`` and
    ``X-Slack-Signature`` headers. Freshness is checked before the MAC so an old
    captured request is refused as ``stale`` whatever its signature.
    """
    if not timestamp or not signature:
        raise SignatureError(SignatureFailure.MISSING, "Slack signature or timestamp header is missing")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        raise SignatureError(SignatureFailure.MALFORMED, "X-Slack-Request-Timestamp is not a Unix time")
    if not signature.startswith("v0="):
        raise SignatureError(SignatureFailure.MALFORMED, "X-Slack-Signature does not use the v0 scheme")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        raise SignatureError(
            SignatureFailure.STALE, f"Slack request timestamp is more than {tolerance_s} s away from now"
        )
    expected = slack_signature(signing_secret, timestamp, body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        raise SignatureError(SignatureFailure.MISMATCH, "X-Slack-Signature does not match the request body")
