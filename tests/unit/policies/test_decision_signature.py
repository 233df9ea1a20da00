"""The decision signature: what a decider signed verifies; any change, another key, or a late start does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from policies.decision_signature import (
    SIGNED_FIELDS,
    DecisionKeyError,
    DecisionKeys,
    DecisionSignatureError,
    SignatureProblem,
    key_id,
)
from schemas.codec import AvroSingleObjectCodec
from schemas.records import ActionEvent, ActionState, Risk

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
KEY = DecisionKeys.from_text("k" * 40)
OLD = DecisionKeys.from_text("o" * 40)


def _action(**changes: Any) -> ActionEvent:
    fields: dict[str, Any] = {
        "tenant": "acme", "action_id": "a-1", "incident_id": "inc-1", "alert_class": "vmalert_reload_failure",
        "name": "restart_vmalert", "tool": "k8s", "operation": "rollout_restart",
        "params": {"namespace": "insight-system", "kind": "deployment", "name": "vmalert"}, "risk": Risk.HIGH,
        "state": ActionState.APPROVED, "at": T0, "on_failure": "undo", "approver": "slack:U1",
    }
    return ActionEvent(**{**fields, **changes})


def _signed(keys: DecisionKeys = KEY, **changes: Any) -> ActionEvent:
    return keys.sign(_action(**changes), decided_at=T0, valid_for=timedelta(hours=1))


def _problem(action: ActionEvent, keys: DecisionKeys = KEY, now: datetime = T0) -> SignatureProblem:
    with pytest.raises(DecisionSignatureError) as caught:
        keys.verify(action, now)
    return caught.value.problem


def test_a_signed_record_verifies_after_a_trip_through_the_topic() -> None:
    signed = _signed()
    codec = AvroSingleObjectCodec()

    read = codec.decode(codec.encode(signed), ActionEvent, topic="actions")

    KEY.verify(read, T0 + timedelta(minutes=59))
    assert read.signature is not None and read.signature.startswith(f"rcf1.{KEY.current_id}.")
    assert read.not_after == read.decided_at + timedelta(hours=1)  # type: ignore[operator]


def test_state_result_and_dry_run_may_change_as_the_action_moves_on() -> None:
    running = _signed().model_copy(update={"state": ActionState.RUNNING, "result": "started", "dry_run": False,
                                           "at": T0 + timedelta(seconds=3)})
    KEY.verify(running, T0)


ALTERED: dict[str, Any] = {
    "tenant": "other", "action_id": "a-2", "incident_id": "inc-2", "alert_class": "etcd_latency",
    "name": "restart_etcd", "tool": "k8s2", "operation": "scale",
    "params": {"namespace": "kube-system", "kind": "deployment", "name": "vmalert"}, "risk": Risk.LOW,
    "on_failure": "keep", "approver": "slack:U2", "decided_at": T0 - timedelta(hours=3),
    "not_after": T0 + timedelta(days=30), "rollback_of": "a-0", "undo_action": "k8s.scale",
    "undo_params": {"replicas": "9"},
}


def test_every_signed_field_is_covered() -> None:
    assert set(ALTERED) == set(SIGNED_FIELDS)


@pytest.mark.parametrize("field", sorted(ALTERED))
def test_altering_any_signed_field_breaks_the_signature(field: str) -> None:
    altered = _signed().model_copy(update={field: ALTERED[field]})

    assert _problem(altered) is SignatureProblem.BAD_SIGNATURE


def test_an_added_parameter_breaks_the_signature() -> None:
    signed = _signed()
    altered = signed.model_copy(update={"params": {**signed.params, "extra": "x"}})
    assert _problem(altered) is SignatureProblem.BAD_SIGNATURE


def test_a_record_without_a_signature_is_unsigned() -> None:
    assert _problem(_action()) is SignatureProblem.UNSIGNED
    assert _problem(_signed().model_copy(update={"not_after": None})) is SignatureProblem.UNSIGNED


def test_a_record_signed_with_another_key_names_an_unknown_key() -> None:
    assert _problem(_signed(DecisionKeys.from_text("w" * 40))) is SignatureProblem.UNKNOWN_KEY


def test_a_forged_mac_under_the_right_key_id_is_a_bad_signature() -> None:
    signed = _signed()
    assert signed.signature is not None
    forged = signed.model_copy(update={"signature": signed.signature[:-4] + "0000"})
    assert _problem(forged) is SignatureProblem.BAD_SIGNATURE
    assert _problem(signed.model_copy(update={"signature": "garbage"})) is SignatureProblem.BAD_SIGNATURE


def test_a_previous_key_still_verifies_during_a_rotation_and_not_after_it() -> None:
    rotating = DecisionKeys(KEY.current, (OLD.current,))
    old_record = _signed(OLD)

    rotating.verify(old_record, T0)
    assert rotating.sign(_action(), decided_at=T0, valid_for=timedelta(hours=1)).signature.startswith(  # type: ignore[union-attr]
        f"rcf1.{key_id(KEY.current)}.")
    assert _problem(old_record, KEY) is SignatureProblem.UNKNOWN_KEY


def test_a_record_past_its_not_after_is_expired() -> None:
    signed = _signed()
    KEY.verify(signed, T0 + timedelta(hours=1))
    assert _problem(signed, now=T0 + timedelta(hours=1, seconds=1)) is SignatureProblem.EXPIRED


def test_short_keys_are_refused_and_keys_never_show() -> None:
    with pytest.raises(DecisionKeyError, match="at least 32 bytes"):
        DecisionKeys.from_text("short")
    with pytest.raises(DecisionKeyError):
        DecisionKeys(KEY.current, (b"short",))
    assert "kkkk" not in repr(KEY)
