"""docker-compose.yml and the Kubernetes manifests cannot run here; check what they promise instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from streams.cli import cli

ROOT = Path(__file__).resolve().parents[3]
ROLES = {"api", "worker", "executor"}


def _commands() -> set[str]:
    ctx = click.Context(cli)
    return set(cli.list_commands(ctx))  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_kafka_in_kraft_mode_from_the_official_image(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert "healthcheck" in kafka


def test_compose_roles_are_real_commands_built_from_our_dockerfile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= ROLES
    commands = _commands()
    kafka_port = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].rsplit(":", 1)[1]
    for role in ROLES:
        service = services[role]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["command"][0] in commands
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == f"kafka:{kafka_port}"
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_holds_no_secret_values(compose: dict[str, Any]) -> None:
    env = compose["services"]["api"]["environment"]
    for name, value in env.items():
        if "TOKEN" in name or "KEY" in name:
            assert str(value).startswith("${"), f"{name} must come from the environment"


def test_dockerfile_runs_as_non_root_with_the_rcaflow_entrypoint() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and not users[-1].startswith(("0", "root"))
    assert 'ENTRYPOINT ["rcaflow"]' in text
    for package in ("schemas", "producers", "streams", "executors", "policies"):
        assert f"COPY {package} " in text


def test_kubernetes_manifests_run_every_role_as_non_root_with_secrets_from_a_secret() -> None:
    docs = [d for f in sorted((ROOT / "deploy" / "kubernetes").rglob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    commands = _commands()
    seen = set()
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            role = container["args"][0]
            assert role in commands
            seen.add(role)
            refs = [e.get("secretRef", {}).get("name") for e in container.get("envFrom", [])]
            # An IMAP producer gets its mailbox's Secret only (deploy/kubernetes/ingest-imap), not the keys.
            assert ("rcaflow-mailbox" if role == "ingest" else "rcaflow-secrets") in refs
            assert not any("TOKEN" in e["name"] or "KEY" in e["name"] for e in container.get("env", []))
    assert seen == ROLES | {"ingest"}
