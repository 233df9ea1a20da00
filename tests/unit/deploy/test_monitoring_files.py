"""deploy/monitoring: the rules pass promtool (syntax and their own unit tests), the dashboard is a Grafana model
whose every query is valid PromQL, and every alert carries its annotations and a runbook section that exists."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.monitoring import (
    MONITORING,
    ROOT,
    RULES,
    RULES_TEST,
    dashboard,
    dashboard_exprs,
    dashboard_panels,
    metric_names,
    rules,
)

OBSERVABILITY_DOC = ROOT / "docs" / "observability.md"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (Debian: apt-get install -y prometheus; see .ci/system-deps.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_checks_the_rules() -> None:
    done = run_promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    done = run_promtool("test", "rules", RULES_TEST.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_unit_tested_firing() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case["exp_alerts"]}
    assert {rule["alert"] for rule in rules()} <= fired


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_alert_says_what_and_where_to_read_on(rule: dict[str, Any]) -> None:
    notes = rule["annotations"]
    assert notes["summary"].strip() and notes["description"].strip()
    assert rule["labels"]["severity"] in {"warning", "critical"}
    path, _, anchor = notes["runbook_url"].partition("#")
    assert path == "docs/observability.md" and anchor == rule["alert"].lower()
    headings = {_anchor(line) for line in OBSERVABILITY_DOC.read_text().splitlines() if line.startswith("#")}
    assert anchor in headings, f"docs/observability.md has no section for {rule['alert']}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_the_dashboard_is_a_grafana_model_with_unique_ids_and_queries() -> None:
    dash = dashboard()
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    panels = list(dashboard_panels(dash))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert "datasource" in variables
    for panel in panels:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= grid.keys() and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        targets = panel["targets"]
        assert targets, f"{panel['title']} queries nothing"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids))
        for target in targets:
            assert target["expr"].strip() and metric_names(target["expr"]), panel["title"]
            assert target["datasource"] == panel["datasource"]


def test_the_dashboard_shows_what_the_on_call_engineer_asked_for() -> None:
    titles = " | ".join(p["title"].lower() for p in dashboard_panels(dashboard()))
    for wanted in ("stage latency", "failure rate", "mtta", "dead letters by reason", "consumer lag per group",
                   "llm latency", "llm tokens", "llm errors", "pending approvals", "actions by state",
                   "adoption rate", "imap", "graph", "per tenant"):
        assert wanted in titles, wanted


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (Grafana's ``$tenant`` sits inside a string there)."""
    exprs = dashboard_exprs(dashboard())
    group = {"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": expr.replace("$", "")}
                                            for i, expr in enumerate(exprs)]}
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump({"groups": [group]}))
    done = run_promtool("check", "rules", "dashboard-rules.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (stage, le) (rate(rcaflow_stage_latency_seconds_bucket{stage=~"a|b"}[5m]))',
     {"rcaflow_stage_latency_seconds_bucket"}),
    ("a / clamp_min(b, 1e-9) > 0 and on () (c offset 15m) or vector(0)", {"a", "b", "c"}),
    ('time() - max by (group) (x_ts{group!~".*-kb"}) > 300', {"x_ts"}),
    ("histogram_quantile(0.95, sum without (instance) (rate(h_bucket[1h])))", {"h_bucket"}),
])
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
