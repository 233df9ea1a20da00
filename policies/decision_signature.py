"""The decision signature: the deciding component's HMAC over what an approved action runs and why.

The actions topic is writable by more than the components that decide, so an
``approved`` record proves nothing by itself. The worker (policy auto-approvals,
human approvals), the executor (its own automatic rollbacks) and ``rcaflow
rollback`` sign the record with a key they share with the executor; the
executor runs nothing whose signature does not verify with a key it knows, or
whose ``not_after`` has passed.

The signed content is a canonical JSON of every field that says what runs and
why (:data:`SIGNED_FIELDS`), times as epoch milliseconds (what Avro keeps) and
maps sorted, so a record decoded from the topic verifies exactly like the one
that was signed. Fields that change as the action moves on (state, result, the
executor's dry-run flag, timings) are not signed: the signature travels with
the run's records unchanged. The signature names its key by an id derived from
the key (``rcf1.<key id>.<hex>``), so keys rotate without configuring ids: the
verifier holds the current key and the previous ones.

The same scheme, with its own tag (``rca1``) and its own key, signs the API's
:class:`~schemas.records.ApprovalDecision`: the API verified the human (Slack
HMAC, DingTalk's encrypted callback, a signed link and identity) and signs what
it verified; the worker applies no decision whose approval signature does not
verify (:class:`ApprovalKeys`). The approval key is not the decision key: the API
may say "this person decided this pending action", never "run this".
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Self

from policies.errors import PolicyError
from schemas.records import ActionEvent, ApprovalDecision

#: Version tag of the canonical encoding; a new encoding gets a new tag and verifiers learn both.
SCHEME: Final = "rcf1"
#: Version tag of the approval decisions' canonical encoding: never valid as a decision signature, and back.
APPROVAL_SCHEME: Final = "rca1"
#: The fields of an ApprovalDecision the approval signature covers (all but the signature).
APPROVAL_FIELDS: Final = (
    "tenant", "action_id", "decision", "approver", "channel", "decided_at", "reason", "claim_id",
)
#: How long a human approval of an action without an approval window stays valid for the executor.
DEFAULT_APPROVAL_VALID_FOR: Final = timedelta(hours=1)
#: Shortest key accepted (HMAC-SHA256: 32 bytes is the hash size; a shorter key is easier to guess).
MIN_KEY_BYTES: Final = 32
#: The fields whose values define what runs and why; the canonical encoding holds exactly these.
SIGNED_FIELDS: Final = (
    "tenant", "action_id", "incident_id", "alert_class", "name", "tool", "operation", "params", "risk",
    "on_failure", "approver", "decided_at", "not_after", "rollback_of", "undo_action", "undo_params",
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


class SignatureProblem(StrEnum):
    """Why a record's signature does not authorise it (a closed set: metric labels and dead-letter reasons)."""

    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"


class DecisionKeyError(PolicyError):
    """A decision key is unusable (too short); the message never holds the key."""


class DecisionSignatureError(PolicyError):
    """A record is not authorised by a decision signature; ``problem`` says which way, for labels and routing."""

    def __init__(self, problem: SignatureProblem, message: str) -> None:
        self.problem = problem
        super().__init__(message)


def key_id(key: bytes) -> str:
    """A short public name of ``key``: lets a verifier pick the key, reveals nothing usable about it."""
    return hashlib.sha256(b"rcaflow decision key id\x00" + key).hexdigest()[:12]


def _millis(moment: datetime) -> int:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MS


def _optional_millis(moment: datetime | None) -> int | None:
    return None if moment is None else _millis(moment)


def _to_millis(moment: datetime) -> datetime:
    """``moment`` cut to whole milliseconds (what the topic keeps), so the signer signs what the verifier reads."""
    return _EPOCH + _millis(moment) * _MS


def canonical(action: ActionEvent, kid: str) -> bytes:
    """The signed bytes: the scheme, the key id and :data:`SIGNED_FIELDS` of ``action``, as canonical JSON."""
    body: dict[str, Any] = {
        "tenant": action.tenant,
        "action_id": action.action_id,
        "incident_id": action.incident_id,
        "alert_class": action.alert_class,
        "name": action.name,
        "tool": action.tool,
        "operation": action.operation,
        "params": dict(sorted(action.params.items())),
        "risk": action.risk.value,
        "on_failure": action.on_failure,
        "approver": action.approver,
        "decided_at": _optional_millis(action.decided_at),
        "not_after": _optional_millis(action.not_after),
        "rollback_of": action.rollback_of,
        "undo_action": action.undo_action,
        "undo_params": dict(sorted(action.undo_params.items())),
    }
    assert tuple(body) == SIGNED_FIELDS
    return json.dumps({"scheme": SCHEME, "kid": kid, "decision": body}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")


def _mac(key: bytes, action: ActionEvent, kid: str) -> str:
    return hmac.new(key, canonical(action, kid), hashlib.sha256).hexdigest()


def approval_canonical(decision: ApprovalDecision, kid: str) -> bytes:
    """The bytes an approval signature covers: the scheme, the key id and :data:`APPROVAL_FIELDS`."""
    body: dict[str, Any] = {
        "tenant": decision.tenant,
        "action_id": decision.action_id,
        "decision": decision.decision.value,
        "approver": decision.approver,
        "channel": decision.channel,
        "decided_at": _millis(decision.decided_at),
        "reason": decision.reason,
        "claim_id": decision.claim_id,
    }
    assert tuple(body) == APPROVAL_FIELDS
    return json.dumps({"scheme": APPROVAL_SCHEME, "kid": kid, "approval": body}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True).encode("ascii")


@dataclass(frozen=True, slots=True)
class _Keyring:
    """The current key (signs and verifies) and the previous ones (verify only, during a rotation).

    Guarantees: every key is at least :data:`MIN_KEY_BYTES` long; ``repr`` never shows a key.
    """

    current: bytes = field(repr=False)
    previous: tuple[bytes, ...] = field(default=(), repr=False)

    #: What the keys are called in messages.
    WHAT = "decision key"

    def __post_init__(self) -> None:
        if any(len(key) < MIN_KEY_BYTES for key in (self.current, *self.previous)):
            raise DecisionKeyError(f"a {self.WHAT} needs at least {MIN_KEY_BYTES} bytes")

    @classmethod
    def from_text(cls, current: str, previous: tuple[str, ...] = ()) -> Self:
        return cls(current.encode("utf-8"), tuple(key.encode("utf-8") for key in previous))

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def _key(self, signature: str | None, scheme: str) -> tuple[bytes, str, str]:
        """The key, key id and MAC a ``<scheme>.<key id>.<hex>`` signature names; else DecisionSignatureError."""
        if not signature:
            raise DecisionSignatureError(SignatureProblem.UNSIGNED, f"the record carries no {self.WHAT} signature")
        tag, _, rest = signature.partition(".")
        kid, _, mac = rest.partition(".")
        if tag != scheme or not kid or not mac:
            raise DecisionSignatureError(SignatureProblem.BAD_SIGNATURE,
                                         f"the signature is not of the form {scheme}.<key id>.<hex>")
        key = next((k for k in (self.current, *self.previous) if hmac.compare_digest(key_id(k), kid)), None)
        if key is None:
            raise DecisionSignatureError(SignatureProblem.UNKNOWN_KEY,
                                         f"signed with key {kid[:12]!r}, which is neither the current {self.WHAT} "
                                         "nor a previous one")
        return key, kid, mac


@dataclass(frozen=True, slots=True)
class ApprovalKeys(_Keyring):
    """The key the API signs the human decisions it verified with, and the worker checks them with."""

    WHAT = "approval key"

    def sign(self, decision: ApprovalDecision) -> ApprovalDecision:
        """``decision`` with its approval signature (``decided_at`` cut to what the topic keeps)."""
        unsigned = decision.model_copy(update={"decided_at": _to_millis(decision.decided_at), "signature": None})
        kid = self.current_id
        mac = hmac.new(self.current, approval_canonical(unsigned, kid), hashlib.sha256).hexdigest()
        return unsigned.model_copy(update={"signature": f"{APPROVAL_SCHEME}.{kid}.{mac}"})

    def verify(self, decision: ApprovalDecision) -> None:
        """Return when ``decision`` carries a valid approval signature by a known key; else raise
        :class:`DecisionSignatureError` (``unsigned``, ``unknown_key`` or ``bad_signature``)."""
        key, kid, mac = self._key(decision.signature, APPROVAL_SCHEME)
        expected = hmac.new(key, approval_canonical(decision, kid), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac):
            raise DecisionSignatureError(SignatureProblem.BAD_SIGNATURE,
                                         "the approval signature does not match the decision: it was forged, or a "
                                         "field was altered after the API signed it")


@dataclass(frozen=True, slots=True)
class DecisionKeys(_Keyring):
    """The key the deciders (worker, executor rollbacks, ``rcaflow rollback``) sign approved actions with."""

    def sign(self, action: ActionEvent, *, decided_at: datetime, valid_for: timedelta) -> ActionEvent:
        """``action`` authorised to run until ``decided_at + valid_for``: decided-at, not-after and signature set."""
        decided = _to_millis(decided_at)
        unsigned = action.model_copy(update={"decided_at": decided, "not_after": _to_millis(decided + valid_for),
                                             "signature": None})
        kid = self.current_id
        return unsigned.model_copy(update={"signature": f"{SCHEME}.{kid}.{_mac(self.current, unsigned, kid)}"})

    def verify(self, action: ActionEvent, now: datetime) -> None:
        """Return when ``action`` carries a valid, unexpired signature by a known key; else raise
        :class:`DecisionSignatureError` naming the problem (the message shows no key and no MAC)."""
        if not action.signature or action.decided_at is None or action.not_after is None:
            raise DecisionSignatureError(SignatureProblem.UNSIGNED,
                                         "the record carries no decision signature (or no decided-at/not-after)")
        key, kid, mac = self._key(action.signature, SCHEME)
        if not hmac.compare_digest(_mac(key, action.model_copy(update={"signature": None}), kid), mac):
            raise DecisionSignatureError(SignatureProblem.BAD_SIGNATURE,
                                         "the signature does not match the record: it was forged, or a signed "
                                         "field was altered after signing")
        if _millis(now) > _millis(action.not_after):
            raise DecisionSignatureError(SignatureProblem.EXPIRED,
                                         f"the decision of {action.decided_at.isoformat()} was valid until "
                                         f"{action.not_after.isoformat()}; it is too late to start it")
