"""Every mail in tests/fixtures/mail/<template>/ parses to the events (or the error) beside it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from producers.mail import MailParseError, parse_mail
from schemas.records import AlertEvent, EventSource, SourceKind

CORPUS = Path(__file__).resolve().parents[3] / "fixtures" / "mail"
CASES = sorted(p for p in CORPUS.glob("*/*.eml") if p.with_suffix(".expected.json").exists())
RECEIVED = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def _project(event: AlertEvent, keys: list[str]) -> dict[str, Any]:
    dumped = json.loads(event.model_dump_json())
    return {k: dumped[k] for k in keys}


def test_corpus_is_broad() -> None:
    templates = {p.parent.name for p in CASES}
    assert {
        "dce5_control_cluster_details",
        "alertmanager_default",
        "dce5_insight_text",
        "grafana_default",
        "generic",
        "errors",
    } <= templates
    assert len(CASES) >= 60


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_mail_parses_to_expected_events(path: Path) -> None:
    expected = json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))
    source = EventSource(kind=SourceKind.FILE, mailbox="fixtures")
    if isinstance(expected, dict):
        with pytest.raises(MailParseError) as info:
            parse_mail(path.read_bytes(), tenant="acme", received_at=RECEIVED, source=source)
        assert expected["error_contains"] in info.value.message
        return
    parsed = parse_mail(path.read_bytes(), tenant="acme", received_at=RECEIVED, source=source)
    got = [_project(e, list(want)) for e, want in zip(parsed.events, expected, strict=False)]
    assert got == expected
    assert len(parsed.events) == len(expected)
    assert all(e.source == source and e.received_at == RECEIVED and e.tenant == "acme" for e in parsed.events)
