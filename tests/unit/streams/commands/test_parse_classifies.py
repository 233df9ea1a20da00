"""`rcaflow parse` classifies each alert with the policy file, as the normalize stage does (`--policy`)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from policies import DEFAULT_POLICY_FILE
from streams.cli import cli
from streams.commands.parse import parse

ROOT = Path(__file__).resolve().parents[4]
SAMPLES = ROOT / "samples"


def _classes(output: str) -> dict[str, str]:
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {Path(e["source"]["mailbox"]).stem: e["alert_class"] for e in events}


def test_each_sample_is_classified_like_the_pipeline_would() -> None:
    mails = sorted(p for p in SAMPLES.glob("*.eml") if p.stem != "alertmanager-default-remote-write")
    result = CliRunner().invoke(parse, [str(p) for p in mails])
    assert result.exit_code == 0, result.output
    # Every sample is named after its class.
    assert _classes(result.stdout) == {p.stem: p.stem for p in mails}


def test_policy_chooses_the_policy_file(tmp_path: Path) -> None:
    document = yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))
    for cls in document["classes"]:
        if cls["id"] == "etcd_latency":
            cls["id"] = "etcd_slow_disk"
    custom = tmp_path / "policies.yaml"
    custom.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    mail = str(SAMPLES / "etcd_latency.eml")
    assert _classes(CliRunner().invoke(parse, [mail]).stdout) == {"etcd_latency": "etcd_latency"}
    assert _classes(CliRunner().invoke(parse, ["--policy", str(custom), mail]).stdout) == {
        "etcd_latency": "etcd_slow_disk"}


def test_the_configured_policy_is_the_default_and_a_broken_one_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nclasses: []\n", encoding="utf-8")
    config = tmp_path / "rcaflow.yaml"
    config.write_text(yaml.safe_dump({"policies_file": str(broken)}), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "parse", str(SAMPLES / "etcd_latency.eml")])
    assert result.exit_code == 1
    assert "broken.yaml" in result.output and "defaults" in result.output
