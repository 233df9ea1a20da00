"""The Kubernetes monitoring objects (deploy/kubernetes/components/monitoring) carry deploy/monitoring's rules and
dashboard unchanged: regenerate them with `python deploy/kubernetes/render_monitoring.py` after editing those."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "deploy" / "kubernetes" / "render_monitoring.py"


def _render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_monitoring", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_checked_in_objects_are_what_the_script_renders_now() -> None:
    stale = [str(path.relative_to(ROOT)) for path, text in _render().rendered().items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    assert stale == [], f"stale: {stale}; run `python {SCRIPT.relative_to(ROOT)}`"


def test_the_prometheusrule_holds_the_rule_files_groups() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "monitoring" / "rcaflow-rules.yml").read_text())
    rule = yaml.safe_load((SCRIPT.parent / "components" / "monitoring" / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == rules["groups"]


def test_the_dashboard_config_map_holds_the_dashboard_for_grafanas_sidecar() -> None:
    dashboard = json.loads((ROOT / "deploy" / "monitoring" / "grafana-dashboard.json").read_text())
    config_map = yaml.safe_load((SCRIPT.parent / "components" / "monitoring" / "grafana-dashboard.yaml").read_text())
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["rcaflow.json"]) == dashboard


def test_check_mode_names_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--check exits 1 when a generated file differs, and writes nothing."""
    module = _render()
    target = tmp_path / "components" / "monitoring"
    target.mkdir(parents=True)
    module.COMPONENT = target  # render into a scratch folder, not the checkout
    assert module.main(["--check"]) == 1
    assert "stale:" in capsys.readouterr().err
    assert list(target.iterdir()) == []
    assert module.main([]) == 0
    assert module.main(["--check"]) == 0
