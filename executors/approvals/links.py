"""Signed, expiring, single-use approval links: ``v1.<payload>.<mac>``, HMAC over tenant|action_id|expiry|nonce.

The token says which action of which tenant it approves and until when; it
carries no secret and needs no database lookup to check. Single use needs
state: a :class:`NonceStore` (in memory here; a Faust table in ``streams``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pydantic import SecretStr

from executors.approvals.errors import SignatureError, SignatureFailure

VERSION = "v1"
#: Domain separation: a MAC made for links can never be replayed as another of our MACs.
_CONTEXT = b"rcaflow-approval-link-v1|"
_FIELD_RE = re.compile(r"^[^|\x00-\x1f\x7f]{1,200}$")
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
DEFAULT_TTL = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class LinkClaims:
    tenant: str
    action_id: str
    expires_at: datetime
    nonce: str


class NonceStore(Protocol):
    def claim(self, nonce: str, *, expires_at: datetime, now: datetime) -> bool:
        """Record ``nonce`` as used; False if it was used before.

        An entry may be forgotten once ``now`` passes its ``expires_at``: the
        token is refused as expired before the store is asked again.
        """
        ...


class InMemoryNonceStore:
    """A process-local :class:`NonceStore`; fine for one API replica, not for several."""

    def __init__(self) -> None:
        self._used: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def claim(self, nonce: str, *, expires_at: datetime, now: datetime) -> bool:
        with self._lock:
            for old in [n for n, exp in self._used.items() if exp <= now]:
                del self._used[old]
            if nonce in self._used:
                return False
            self._used[nonce] = expires_at
            return True


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """Mints and checks approval link tokens with one HMAC key (rotate by running two signers)."""

    def __init__(self, secret: SecretStr, *, ttl: timedelta = DEFAULT_TTL) -> None:
        key = secret.get_secret_value().encode("utf-8")
        if len(key) < 32:
            raise ValueError("approval link secret must be at least 32 bytes")
        self._key = key
        self.ttl = ttl

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _CONTEXT + payload, hashlib.sha256).digest()

    def issue(self, tenant: str, action_id: str, *, now: datetime, nonce: str | None = None) -> str:
        """A token approving ``action_id`` of ``tenant`` until ``now + ttl``."""
        for name, value in (("tenant", tenant), ("action_id", action_id)):
            if not _FIELD_RE.fullmatch(value):
                raise ValueError(f"{name} must be 1-200 characters without '|' or control characters")
        nonce = nonce or secrets.token_urlsafe(18)
        if not _NONCE_RE.fullmatch(nonce):
            raise ValueError("nonce must be 16-64 url-safe characters")
        expiry = int((now + self.ttl).timestamp())
        payload = f"{tenant}|{action_id}|{expiry}|{nonce}".encode()
        return f"{VERSION}.{_b64(payload)}.{_b64(self._mac(payload))}"

    def read(self, token: str, *, now: datetime) -> LinkClaims:
        """Check signature and expiry without consuming the token (e.g. to render the confirm page)."""
        try:
            version, payload_b64, mac_b64 = token.split(".")
            payload, mac = _unb64(payload_b64), _unb64(mac_b64)
        except (ValueError, binascii.Error) as exc:
            raise SignatureError(SignatureFailure.MALFORMED, "approval link token is malformed") from exc
        if version != VERSION:
            raise SignatureError(SignatureFailure.MALFORMED, f"approval link token version {version!r} is unknown")
        if not hmac.compare_digest(self._mac(payload), mac):
            raise SignatureError(SignatureFailure.MISMATCH, "approval link signature does not match")
        try:
            tenant, action_id, expiry, nonce = payload.decode("utf-8").split("|")
            expires_at = datetime.fromtimestamp(int(expiry), UTC)
        except (ValueError, OverflowError) as exc:
            raise SignatureError(SignatureFailure.MALFORMED, "approval link payload is malformed") from exc
        if now >= expires_at:
            raise SignatureError(SignatureFailure.EXPIRED, f"approval link expired at {expires_at.isoformat()}")
        return LinkClaims(tenant=tenant, action_id=action_id, expires_at=expires_at, nonce=nonce)

    def redeem(self, token: str, *, now: datetime, store: NonceStore, tenant: str | None = None) -> LinkClaims:
        """Verify ``token`` and use it up; a second redeem raises ``replayed``.

        The nonce is claimed only after every other check passed, so forged or
        expired tokens cannot burn it. ``tenant``, when given, must match.
        """
        claims = self.read(token, now=now)
        if tenant is not None and claims.tenant != tenant:
            raise SignatureError(SignatureFailure.WRONG_TENANT, "approval link belongs to another tenant")
        if not store.claim(claims.nonce, expires_at=claims.expires_at, now=now):
            raise SignatureError(SignatureFailure.REPLAYED, "approval link was already used")
        return claims
