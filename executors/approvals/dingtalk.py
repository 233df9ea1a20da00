"""DingTalk robot signing: base64(HMAC-SHA256(secret, f"{timestamp_ms}\\n{secret}")).

Outbound (custom robot webhook): the signature goes url-encoded into the
webhook URL with the timestamp. Inbound (outgoing robot / card callbacks):
DingTalk sends ``timestamp`` and ``sign`` headers computed the same way with
the app secret, valid for one hour.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

from executors.approvals.errors import SignatureError, SignatureFailure

#: DingTalk's documented validity of a signed timestamp.
TOLERANCE_MS = 3600 * 1000


def _raw_sign(secret: SecretStr | str, timestamp_ms: int | str) -> str:
    key = (secret.get_secret_value() if isinstance(secret, SecretStr) else secret).encode("utf-8")
    message = f"{timestamp_ms}\n".encode() + key
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def dingtalk_sign(secret: SecretStr | str, timestamp_ms: int) -> str:
    """The url-encoded ``sign`` query value for a custom robot webhook call at ``timestamp_ms``."""
    return quote_plus(_raw_sign(secret, timestamp_ms))


def dingtalk_signed_url(webhook_url: str, secret: SecretStr | str, timestamp_ms: int | None = None) -> str:
    """``webhook_url`` (``…/robot/send?access_token=…``) with ``timestamp`` and ``sign`` added."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    parts = urlsplit(webhook_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("timestamp", "sign")]
    query += [("timestamp", str(ts)), ("sign", _raw_sign(secret, ts))]
    return urlunsplit(parts._replace(query=urlencode(query)))


def verify_dingtalk_callback(
    *,
    app_secret: SecretStr | str,
    timestamp: str | None,
    sign: str | None,
    now_ms: int | None = None,
    tolerance_ms: int = TOLERANCE_MS,
) -> None:
    """Return if the ``timestamp``/``sign`` headers of a DingTalk callback verify; else raise SignatureError."""
    if not timestamp or not sign:
        raise SignatureError(SignatureFailure.MISSING, "DingTalk timestamp or sign header is missing")
    if not re.fullmatch(r"[0-9]{1,15}", timestamp):
        raise SignatureError(SignatureFailure.MALFORMED, "DingTalk timestamp is not epoch milliseconds")
    current = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(current - int(timestamp)) > tolerance_ms:
        raise SignatureError(SignatureFailure.STALE, "DingTalk timestamp is more than an hour away from now")
    expected = _raw_sign(app_secret, timestamp)
    if not hmac.compare_digest(expected.encode("ascii"), sign.encode("utf-8", "replace")):
        raise SignatureError(SignatureFailure.MISMATCH, "DingTalk sign does not match")
