"""What a mail costs at the intake: the alerts the worker will read from it, at least one; never a refusal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from producers.mail import bundled_templates_dir, load_templates, parse_mail
from producers.mail.alert_count import MailCost
from schemas.records import EventSource

ROOT = Path(__file__).resolve().parents[4]
SAMPLES = sorted((ROOT / "samples").glob("*.eml"))
DIGEST = ROOT / "tests" / "fixtures" / "mail" / "dce5_control_cluster_details" / "rowspan-cluster-digest.eml"
DIGEST_GBK = DIGEST.with_name("rowspan-cluster-digest-gbk.eml")


def worker_count(raw: bytes) -> int:
    """The alerts the worker's normalize stage gets from the mail (the same parser, the bundled templates)."""
    return len(parse_mail(raw, tenant="acme", received_at=datetime.now(UTC), source=EventSource()).events)


@pytest.mark.parametrize("path", [DIGEST, DIGEST_GBK], ids=lambda p: p.name)
def test_a_digest_costs_its_rows(path: Path) -> None:
    raw = path.read_bytes()
    assert MailCost()(raw) == worker_count(raw) == 6


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_costs_what_the_worker_gets_from_it(path: Path) -> None:
    raw = path.read_bytes()
    assert MailCost()(raw) == worker_count(raw) >= 1


@pytest.mark.parametrize("raw", [
    b"",
    b"\xff\xfe garbage \x00 bytes",
    b"From: a@example.com\r\nSubject: lunch?\r\n\r\nnoon at the usual place\r\n",
    b"From: a@example.com\r\nSubject: Control Cluster Details\r\nContent-Type: text/html\r\n\r\n<table></table>\r\n",
], ids=["empty", "garbage", "not-an-alert", "claimed-but-unreadable"])
def test_a_mail_the_parser_refuses_costs_one(raw: bytes) -> None:
    assert MailCost()(raw) == 1  # taken at the intake all the same; the worker dead-letters it


def test_the_count_uses_the_deployments_templates() -> None:
    """With templates that do not read the digest it costs one, as the worker (same templates) gets none."""
    only_alertmanager = load_templates([bundled_templates_dir() / "alertmanager.yaml"])
    assert MailCost(only_alertmanager)(DIGEST.read_bytes()) == 1
    assert MailCost()(DIGEST.read_bytes()) == 6
