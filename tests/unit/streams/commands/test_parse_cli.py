"""`rcaflow parse`: JSON lines per event, an error line per mail without alerts, exit 1 if any failed."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from streams.commands.parse import parse

ROOT = Path(__file__).resolve().parents[4]
SAMPLES = sorted((ROOT / "samples").glob("*.eml"))
EMPTY = ROOT / "tests" / "fixtures" / "mail" / "errors" / "empty.eml"
UUID_MAIL = ROOT / "tests" / "fixtures" / "mail" / "dce5_control_cluster_details" / "class-jenkins_restart.eml"


def test_every_sample_yields_events_and_exit_code_zero() -> None:
    result = CliRunner().invoke(parse, ["--tenant", "acme", *map(str, SAMPLES)])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    assert len(SAMPLES) >= 10
    assert {e["source"]["mailbox"] for e in events} == {str(p) for p in SAMPLES}
    assert all(e["tenant"] == "acme" and e["labels"]["workload"] for e in events)


def test_a_mail_without_alerts_prints_its_reason_and_exits_one() -> None:
    result = CliRunner().invoke(parse, [str(SAMPLES[0]), str(EMPTY)])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-1] == {"file": str(EMPTY), "error": lines[-1]["error"]}
    assert "no text/html or text/plain body" in lines[-1]["error"]
    assert lines[0]["alert"]


def test_cluster_names_are_applied() -> None:
    result = CliRunner().invoke(parse, ["--cluster-name", "HK-DCE5-PLATFORM=hk-prod", str(UUID_MAIL)])
    event = json.loads(result.stdout.splitlines()[0])
    assert event["labels"]["cluster"] == "hk-prod"
    assert event["labels"]["cluster_id"] == "HK-DCE5-PLATFORM"
    bad = CliRunner().invoke(parse, ["--cluster-name", "nonsense", str(UUID_MAIL)])
    assert bad.exit_code == 2
