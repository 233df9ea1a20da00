"""Signed one-time approval links for the actions of a notification (served by the API's /approvals/link).

Two kinds of token, one secret. A per-approver link (``v2``) names the one approver it was sent
to, so whoever decides with it is on record by name; an anonymous link (``v1``, minted by
:class:`executors.approvals.LinkSigner`) names nobody and may decide only actions whose policy
says ``anonymous_approval: true``. The MACs are domain-separated, so neither kind can be turned
into the other (stripping the name from a v2 token leaves a token whose MAC does not verify).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from executors.approvals import LinkSigner, SignatureError, SignatureFailure
from executors.approvals.links import DEFAULT_TTL
from schemas.records import ActionEvent, ActionState

PER_APPROVER = "v2"
#: Domain separation from v1 link MACs and every other MAC made with the same secret.
_CONTEXT = b"rcaflow-approval-link-v2|"
_FIELD = re.compile(r"^[^|\x00-\x1f\x7f]{1,200}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
#: Link identities as approvers are listed: ``link:<identity>`` (an e-mail address or a login). ``anonymous``
#: is reserved: ``link:anonymous`` is how a link naming nobody decides (and the executor checks it as such).
LINK_IDENTITY = re.compile(r"^(?!anonymous$)[A-Za-z0-9._@+-]{1,128}$")
ANONYMOUS = "link:anonymous"


@dataclass(frozen=True, slots=True)
class ApprovalLink:
    """What a verified link says. ``approver`` is the identity it was sent to (None: anonymous)."""

    tenant: str
    action_id: str
    expires_at: datetime
    nonce: str
    approver: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ApprovalLinkSigner:
    """Mints and checks both kinds of link with one secret (at least 32 bytes)."""

    def __init__(self, secret: SecretStr, *, ttl: timedelta = DEFAULT_TTL) -> None:
        self._anonymous = LinkSigner(secret, ttl=ttl)  # also checks the secret's length
        self._key = secret.get_secret_value().encode("utf-8")
        self.ttl = ttl

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _CONTEXT + payload, hashlib.sha256).digest()

    def issue(self, tenant: str, action_id: str, *, now: datetime, approver: str | None = None,
              nonce: str | None = None) -> str:
        """A token deciding ``action_id`` of ``tenant`` until ``now + ttl``, for ``approver`` (None: anyone)."""
        if approver is None:
            return self._anonymous.issue(tenant, action_id, now=now, nonce=nonce)
        for name, value in (("tenant", tenant), ("action_id", action_id)):
            if not _FIELD.fullmatch(value):
                raise ValueError(f"{name} must be 1-200 characters without '|' or control characters")
        if not LINK_IDENTITY.fullmatch(approver):
            raise ValueError("approver must be a link identity (letters, digits, . _ @ + -)")
        nonce = nonce or secrets.token_urlsafe(18)
        if not _NONCE.fullmatch(nonce):
            raise ValueError("nonce must be 16-64 url-safe characters")
        expiry = int((now + self.ttl).timestamp())
        payload = f"{tenant}|{action_id}|{expiry}|{nonce}|{approver}".encode()
        return f"{PER_APPROVER}.{_b64(payload)}.{_b64(self._mac(payload))}"

    def read(self, token: str, *, now: datetime) -> ApprovalLink:
        """Check MAC and expiry without consuming the token; :class:`SignatureError` says why not."""
        if not token.startswith(PER_APPROVER + "."):
            claims = self._anonymous.read(token, now=now)
            return ApprovalLink(claims.tenant, claims.action_id, claims.expires_at, claims.nonce)
        try:
            _, payload_b64, mac_b64 = token.split(".")
            payload, mac = _unb64(payload_b64), _unb64(mac_b64)
        except (ValueError, binascii.Error) as exc:
            raise SignatureError(SignatureFailure.MALFORMED, "approval link token is malformed") from exc
        if not hmac.compare_digest(self._mac(payload), mac):
            raise SignatureError(SignatureFailure.MISMATCH, "approval link signature does not match")
        try:
            tenant, action_id, expiry, nonce, approver = payload.decode("utf-8").split("|")
            expires_at = datetime.fromtimestamp(int(expiry), UTC)
        except (ValueError, OverflowError) as exc:
            raise SignatureError(SignatureFailure.MALFORMED, "approval link payload is malformed") from exc
        if now >= expires_at:
            raise SignatureError(SignatureFailure.EXPIRED, f"approval link expired at {expires_at.isoformat()}")
        return ApprovalLink(tenant, action_id, expires_at, nonce, approver)


def _waiting(actions: Iterable[ActionEvent]) -> list[ActionEvent]:
    return [a for a in actions if a.state is ActionState.AWAITING_APPROVAL]


def approval_links(signer: LinkSigner | ApprovalLinkSigner, base_url: str, actions: Iterable[ActionEvent],
                   now: datetime) -> dict[str, str]:
    """Anonymous signed link URLs (``{base_url}/approvals/link/{token}``) for the actions awaiting approval.

    An anonymous link decides only what the policy marks ``anonymous_approval``; for anything else it
    shows the action and is refused on POST unless the API sits behind an SSO proxy that names the
    person (``link_identity_header``). Use :func:`approver_links` to send one link per approver.
    """
    base = base_url.rstrip("/")
    return {a.action_id: f"{base}/approvals/link/{signer.issue(a.tenant, a.action_id, now=now)}"
            for a in _waiting(actions)}


def approver_links(signer: ApprovalLinkSigner, base_url: str, actions: Iterable[ActionEvent], now: datetime,
                   approvers: Mapping[str, Iterable[str]]) -> dict[str, dict[str, str]]:
    """Per action awaiting approval, one link per ``link:<identity>`` approver of its tenant.

    ``approvers`` is ``ApprovalSettings.approvers`` (tenant -> identities); identities of other
    channels (``slack:``, ``dingtalk:``) get no link. Each link carries its own nonce, so one
    approver's link used up leaves the others' usable until the action is decided.
    """
    base = base_url.rstrip("/")
    links: dict[str, dict[str, str]] = {}
    for action in _waiting(actions):
        people = sorted({p.removeprefix("link:") for p in approvers.get(action.tenant, ()) if p.startswith("link:")})
        links[action.action_id] = {
            f"link:{person}": f"{base}/approvals/link/"
                              f"{signer.issue(action.tenant, action.action_id, now=now, approver=person)}"
            for person in people if LINK_IDENTITY.fullmatch(person)
        }
    return links
