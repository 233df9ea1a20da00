"""Renders deploy/monitoring's Prometheus rule file and Grafana dashboard into the Kubernetes objects that carry
them (a PrometheusRule, a dashboard ConfigMap) in components/monitoring.

Kustomize reads no file outside a kustomization's own folder, and a PrometheusRule wraps the rule file's
groups rather than including the file, so the objects are generated and checked in: one source of truth
(deploy/monitoring), and tests/unit/deploy/test_monitoring_manifests.py fails when the two drift apart.

    python deploy/kubernetes/render_monitoring.py          # write components/monitoring/*.yaml
    python deploy/kubernetes/render_monitoring.py --check  # exit 1 naming the stale file
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RULES = ROOT / "deploy" / "monitoring" / "rcaflow-rules.yml"
DASHBOARD = ROOT / "deploy" / "monitoring" / "grafana-dashboard.json"
COMPONENT = HERE / "components" / "monitoring"
NAMESPACE = "rcaflow"
LABELS = {"app.kubernetes.io/name": "rcaflow", "app.kubernetes.io/component": "monitoring"}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions, the dashboard) as literal blocks, so a diff stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _header(source: Path) -> str:
    return (f"# Generated from {source.relative_to(ROOT)} by deploy/kubernetes/render_monitoring.py: edit that file\n"
            f"# and run the script; tests/unit/deploy/test_monitoring_manifests.py fails when this one is stale.\n")


def prometheus_rule(rules_text: str) -> dict[str, Any]:
    """The rule file's groups as a PrometheusRule (monitoring.coreos.com/v1): the same schema under spec."""
    loaded = yaml.safe_load(rules_text)
    if not isinstance(loaded, dict) or not isinstance(loaded.get("groups"), list):
        raise ValueError(f"{RULES}: a Prometheus rule file needs a top-level 'groups' list")
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "rcaflow", "namespace": NAMESPACE, "labels": dict(LABELS)},
            "spec": {"groups": loaded["groups"]}}


def dashboard_config_map(dashboard_text: str) -> dict[str, Any]:
    """The dashboard as a ConfigMap that Grafana's dashboard sidecar (kube-prometheus-stack) picks up by label."""
    json.loads(dashboard_text)  # a broken dashboard fails here, not in Grafana
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "rcaflow-grafana-dashboard", "namespace": NAMESPACE,
                         "labels": {**LABELS, "grafana_dashboard": "1"}},
            "data": {"rcaflow.json": dashboard_text}}


def rendered() -> dict[Path, str]:
    """Each generated file and its content."""
    def dump(obj: dict[str, Any], source: Path) -> str:
        return _header(source) + yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)

    return {COMPONENT / "prometheusrule.yaml": dump(prometheus_rule(RULES.read_text(encoding="utf-8")), RULES),
            COMPONENT / "grafana-dashboard.yaml":
                dump(dashboard_config_map(DASHBOARD.read_text(encoding="utf-8")), DASHBOARD)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    for path in stale:
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        sys.stderr.write(f"{'stale' if args.check else 'wrote'}: {shown}\n")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
