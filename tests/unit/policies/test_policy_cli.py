"""``rcaflow policy check FILE``: ok with the class count, or every error and exit 1."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from policies import DEFAULT_POLICY_FILE
from streams.commands.policy import policy


def test_check_shipped_file() -> None:
    result = CliRunner().invoke(policy, ["check", str(DEFAULT_POLICY_FILE)])
    assert result.exit_code == 0
    assert result.output == "ok: 9 classes\n"


def test_check_broken_file_prints_every_error(tmp_path: Path) -> None:
    text = DEFAULT_POLICY_FILE.read_text(encoding="utf-8")
    broken = text.replace("risk: read", "risk: hihg", 1).replace("approval_ttl: 1h", "approval_ttl: later", 1)
    path = tmp_path / "mine.yaml"
    path.write_text(broken, encoding="utf-8")
    result = CliRunner().invoke(policy, ["check", str(path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("mine.yaml:13: defaults.approval_ttl: 'later'")
    assert any(line.startswith("mine.yaml:") and "classes[0].actions[0].risk: 'hihg'" in line for line in lines)


def test_check_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(policy, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "nope.yaml: cannot read" in result.output
