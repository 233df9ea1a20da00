"""`rcaflow explain` without services: the seed JSON, a mail, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from streams.cli import cli

SAMPLES = Path(__file__).resolve().parents[4] / "samples"


def _run(*args: str) -> tuple[int, str]:
    # The tenant owns every namespace, so actions can go ahead (an unscoped tenant is read-only).
    env = {"QWEN_API_KEY": "", "RCAFLOW_TENANTS__DEFAULT__NAMESPACES": '["*"]'}
    result = CliRunner().invoke(cli, ["explain", *args], env=env)
    return result.exit_code, result.output


def test_explain_a_seed_event(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({
        "alert": "ConfigurationReloadFailure", "severity": "P3",
        "labels": {"cluster": "HK-DCE5-PLATFORM", "namespace": "insight-system", "workload": "vmalert-insight-0",
                   "component": "vmalert"},
    }))
    code, out = _run("--json", str(event))
    assert code == 0, out
    report = json.loads(out.splitlines()[0])
    assert report["alert_class"] == "vmalert_config_reload_failure"
    assert report["llm"].startswith("off")
    by_name = {a["name"]: a["would"] for a in report["actions"]}
    assert by_name["reload_vmalert"] == "would run"
    assert by_name["restart_vmalert"] == "would wait for approval"


def test_explain_a_mail_prints_one_block_per_alert() -> None:
    code, out = _run(str(SAMPLES / "vminsert_write_errors.eml"))
    assert code == 0, out
    assert out.count("→ vminsert_write_errors") == 2


def test_bad_event_json_names_the_field(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"alert": "X", "severity": "P7"}))
    code, out = _run(str(event))
    assert code != 0
    assert "severity" in out


def test_a_mail_without_alerts_says_why(tmp_path: Path) -> None:
    mail = tmp_path / "empty.eml"
    mail.write_bytes(b"Subject: hello\r\n\r\njust text, no alert here\r\n")
    code, out = _run(str(mail))
    assert code != 0
    assert "no alert found" in out


def test_a_refused_action_says_why() -> None:
    # As a new user runs it: the default tenant has no namespaces yet, so it is read-only.
    result = CliRunner().invoke(cli, ["explain", str(SAMPLES / "etcd_latency.eml")],
                                env={"QWEN_API_KEY": "", "RCAFLOW_TENANTS__DEFAULT__NAMESPACES": "[]"})
    assert result.exit_code == 0, result.output
    assert "restart_etcd_member" in result.output
    assert "refused by the policy (outside tenant scope: tenant default has no namespaces" in result.output
