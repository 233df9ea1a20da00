"""Notification verification: the clientState names the mailbox; anything unverified is refused."""

from __future__ import annotations

import json

import pytest

from producers.msgraph import NotificationRejected
from producers.msgraph.notifications import match_mailbox, parse_body, verify
from tests.unit.producers.msgraph.conftest import STATE, make_config

OTHER = "another-mailbox-secret-0002"


def mailboxes() -> tuple:  # type: ignore[type-arg]
    return make_config(mailboxes=[
        {"user": "a@contoso.com", "tenant": "acme", "client_state": STATE},
        {"user": "b@contoso.com", "tenant": "globex", "client_state": OTHER},
    ]).mailboxes


def item(state: str, **extra: object) -> dict[str, object]:
    base: dict[str, object] = {"subscriptionId": "0f7c", "clientState": state, "changeType": "created",
                               "resourceData": {"id": "AAMkAGI2=="}}
    base.update(extra)
    return base


def test_client_state_selects_the_mailbox() -> None:
    boxes = mailboxes()
    assert match_mailbox(OTHER, boxes) is boxes[1]
    assert match_mailbox(STATE, boxes) is boxes[0]
    assert match_mailbox(STATE[:-1], boxes) is None
    assert match_mailbox("", boxes) is None


def test_verify_keeps_good_items_and_counts_the_rest() -> None:
    verdict = verify(
        [
            item(OTHER),
            item("forged-forged-forged"),
            item(STATE, resourceData={"id": "../../me/sendMail"}),
            item(STATE, changeType="deleted"),
            item(STATE, lifecycleEvent="missed"),
            item(STATE, lifecycleEvent="somethingElse"),
        ],
        mailboxes(),
    )
    assert verdict.rejected == 4
    assert verdict.entries == (
        {"kind": "created", "mailbox": "msgraph://b@contoso.com/inbox", "subscription_id": "0f7c",
         "message_id": "AAMkAGI2=="},
        {"kind": "lifecycle", "mailbox": "msgraph://a@contoso.com/inbox", "subscription_id": "0f7c",
         "event": "missed"},
    )


@pytest.mark.parametrize("body", [b"", b"[]", b'{"value": 3}', b"x" * (1024 * 1024 + 1)])
def test_malformed_bodies_are_rejected(body: bytes) -> None:
    with pytest.raises(NotificationRejected):
        parse_body(body)


def test_spool_entries_never_carry_the_secret() -> None:
    verdict = verify([item(STATE)], mailboxes())
    assert STATE not in json.dumps(verdict.entries)
