"""What a user can and cannot configure for one mailbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from producers.imap import AfterIngest, ImapConfig, TlsMode

BASE: dict[str, Any] = {"host": "imap.example.com", "username": "alerts", "password": "s3cret", "tenant": "acme"}


def make(**overrides: Any) -> ImapConfig:
    return ImapConfig.model_validate({**BASE, **overrides})


def test_defaults_are_tls_on_993_and_inbox() -> None:
    cfg = make()
    assert cfg.tls is TlsMode.TLS
    assert cfg.effective_port == 993
    assert cfg.mailbox_id == "imap://alerts@imap.example.com:993/INBOX"
    assert make(tls="starttls").effective_port == 143


def test_plain_text_needs_an_explicit_opt_in() -> None:
    with pytest.raises(ValidationError, match="allow_plain"):
        make(tls="plain")
    assert make(tls="plain", allow_plain=True).effective_port == 143


def test_exactly_one_credential(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc")
    with pytest.raises(ValidationError, match="exactly one"):
        make(xoauth2_token_file=str(token))
    with pytest.raises(ValidationError, match="exactly one"):
        ImapConfig.model_validate({k: v for k, v in BASE.items() if k != "password"})
    cfg = ImapConfig.model_validate({**{k: v for k, v in BASE.items() if k != "password"}, "xoauth2_token_file": token})
    assert cfg.xoauth2_token_file == token


def test_idle_is_renewed_before_the_29_minute_limit() -> None:
    with pytest.raises(ValidationError):
        make(idle_renew_seconds=29 * 60)
    assert make(idle_renew_seconds=28 * 60).idle_renew_seconds == 1680


@pytest.mark.parametrize(
    ("value", "action", "target"),
    [
        ("none", AfterIngest.NONE, None),
        ("seen", AfterIngest.SEEN, None),
        ("move:Archive/Alerts", AfterIngest.MOVE, "Archive/Alerts"),
    ],
)
def test_after_ingest_actions(value: str, action: AfterIngest, target: str | None) -> None:
    cfg = make(after_ingest=value)
    assert cfg.after_ingest_action is action
    assert cfg.move_target == target


@pytest.mark.parametrize("value", ["delete", "move:", "move:  ", "Seen"])
def test_unknown_after_ingest_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="after_ingest"):
        make(after_ingest=value)


def test_password_never_shows_in_repr_or_dumps() -> None:
    cfg = make()
    assert "s3cret" not in repr(cfg)
    assert "s3cret" not in cfg.model_dump_json()


def test_sender_allow_list_is_case_insensitive() -> None:
    assert make(allowed_senders=[" Insight@DCE.example.com ", "@Example.org", ""]).allowed_senders == (
        "insight@dce.example.com",
        "@example.org",
    )


def test_backoff_cap_below_base_is_refused() -> None:
    with pytest.raises(ValidationError, match="cap_seconds"):
        make(backoff={"base_seconds": 10, "cap_seconds": 1})
