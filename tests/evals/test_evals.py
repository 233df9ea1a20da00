"""The eval folder as a test: every case passes, and the scoring itself catches what it must."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.evals.harness import case_folders, load_case, run_case

CLASSES = {
    "jenkins_restart",
    "vmalert_config_reload_failure",
    "prometheus_remote_write_behind",
    "prometheus_remote_write_desired_shards",
    "prometheus_remote_storage_failures",
    "log_flood",
    "rule_evaluation_failures",
    "vminsert_write_errors",
    "etcd_latency",
}


def test_at_least_three_cases_per_class() -> None:
    per_class = Counter(load_case(folder)["expected"]["alert_class"] for folder in case_folders())
    assert set(per_class) == CLASSES
    assert min(per_class.values()) >= 3


@pytest.mark.parametrize("folder", case_folders(), ids=lambda p: p.name)
def test_eval_case(folder: Path) -> None:
    score = run_case(folder)
    assert score.class_ok, f"classified as {score.alert_class}"
    assert not score.forbidden, f"forbidden action(s) accepted: {score.forbidden}"
    assert score.cause_ok, f"cause keywords missing ({score.engine}; {score.notes})"
    assert (score.precision, score.recall) == (1.0, 1.0), f"accepted {score.accepted}"


def test_a_forbidden_action_that_the_policy_allows_fails_the_case(tmp_path: Path) -> None:
    source = next(f for f in case_folders() if f.name == "vminsert_write_errors-saturated")
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    case = yaml.safe_load((folder / "case.yaml").read_text(encoding="utf-8"))
    case["expected"]["forbidden_actions"] = ["scale_vminsert"]
    (folder / "case.yaml").write_text(yaml.safe_dump(case, allow_unicode=True), encoding="utf-8")
    score = run_case(folder)
    assert score.forbidden == ["scale_vminsert"] and not score.passed
