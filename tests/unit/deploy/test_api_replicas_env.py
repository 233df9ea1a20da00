"""The API Deployment tells its pods how many replicas share the intake budget: RCAFLOW_INGEST__REPLICAS equals
its replica count, in the file and in the built overlay (kustomize's replacement), also when an overlay changes it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "kubernetes"
ENV = "RCAFLOW_INGEST__REPLICAS"


def _api(docs: list[Any]) -> dict[str, Any]:
    return next(d for d in docs if isinstance(d, dict) and d.get("kind") == "Deployment"
                and d["metadata"]["name"] == "rcaflow-api")


def _replicas_env(api: dict[str, Any]) -> object:
    container = next(c for c in api["spec"]["template"]["spec"]["containers"] if c["name"] == "api")
    return next(e["value"] for e in container.get("env", []) if e["name"] == ENV)


def test_the_base_file_sets_the_replicas_it_runs() -> None:
    api = _api(list(yaml.safe_load_all((K8S / "base" / "rcaflow.yaml").read_text())))
    assert _replicas_env(api) == str(api["spec"]["replicas"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its kustomize) is not installed")
def test_an_overlay_with_another_count_and_the_replacement_passes_it_on(tmp_path: Path) -> None:
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "base", overlay)], "replicas": [{"name": "rcaflow-api", "count": 5}],
        "replacements": base["replacements"],  # what the base's comment tells an overlay to repeat
    }))
    for directory, count in ((K8S / "base", 2), (overlay, 5)):
        built = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True,
                               check=True, timeout=60).stdout
        api = _api(list(yaml.safe_load_all(built)))
        assert api["spec"]["replicas"] == count and _replicas_env(api) == str(count)
