"""docs/runbooks/ must say what the policy file does: same classes, evidence, actions, diagnoses."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from policies.loader import DEFAULT_POLICY_FILE, load_policies, parse_policies
from policies.model import ClassPolicy
from policies.runbooks import DOCS_DIR, GUIDANCE_DIR, RunbookError, main, pages, runbook_link, stale

POLICIES = load_policies()


def test_committed_runbooks_are_what_the_policy_and_guidance_give() -> None:
    assert stale(POLICIES) == [], "docs/runbooks is stale: run `make runbooks` and commit the pages"


@pytest.mark.parametrize("cls", [c.spec for c in POLICIES.classes], ids=lambda c: c.id)
def test_each_runbook_names_every_evidence_action_and_diagnosis_of_its_class(cls: ClassPolicy) -> None:
    page = (DOCS_DIR / f"{cls.id}.md").read_text(encoding="utf-8")
    for step in cls.evidence:
        assert f"| `{step.id}` |" in page, f"evidence {step.id} missing from {cls.id}.md"
    for action in cls.actions:
        assert f"| `{action.name}` |" in page, f"action {action.name} missing from {cls.id}.md"
        assert f"- `{action.name}`:" in page, f"rollback of {action.name} missing from {cls.id}.md"
    for diagnosis in cls.diagnoses:
        assert f"### `{diagnosis.id}`:" in page
    assert re.search(r"[\u4e00-\u9fff]", page.split("## Look first", 1)[1]), "the page has no Chinese guidance"
    index = (DOCS_DIR / "README.md").read_text(encoding="utf-8")
    assert f"]({cls.id}.md)" in index


def test_a_policy_change_makes_the_runbook_stale() -> None:
    text = DEFAULT_POLICY_FILE.read_text(encoding="utf-8")
    changed = text.replace("      - name: restart_controller\n", "      - name: restart_jenkins_controller\n", 1)
    assert changed != text
    assert stale(parse_policies(changed)) == ["jenkins_restart.md"]


def test_a_class_without_guidance_is_refused(tmp_path: Path) -> None:
    guidance = tmp_path / "guidance"
    shutil.copytree(GUIDANCE_DIR, guidance)
    (guidance / "etcd_latency.yaml").unlink()
    with pytest.raises(RunbookError, match=r"etcd_latency\.yaml is missing"):
        pages(POLICIES, guidance)


def test_guidance_must_advise_on_every_diagnosis(tmp_path: Path) -> None:
    guidance = tmp_path / "guidance"
    shutil.copytree(GUIDANCE_DIR, guidance)
    path = guidance / "log_flood.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("  debug_logging:", "  debug_logs:"), encoding="utf-8")
    with pytest.raises(RunbookError) as err:
        pages(POLICIES, guidance)
    assert "['debug_logging']" in str(err.value) and "log_flood" in str(err.value)


def test_check_mode_fails_on_a_hand_edited_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runbooks"
    shutil.copytree(DOCS_DIR, out)
    assert main(["--check", "--out", str(out)]) == 0
    page = out / "log_flood.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nhand edit\n", encoding="utf-8")
    assert main(["--check", "--out", str(out)]) == 1
    assert "log_flood.md is stale" in capsys.readouterr().err


def test_runbook_link_points_at_the_page_or_the_deployments_site() -> None:
    assert runbook_link("etcd_latency") == "docs/runbooks/etcd_latency.md"
    assert runbook_link("etcd_latency", "https://wiki.example.com/rcaflow/") == (
        "https://wiki.example.com/rcaflow/etcd_latency.md"
    )
