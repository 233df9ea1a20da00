"""docker-compose.yml against the Compose Specification's JSON schema (tests/support/compose, vendored) and
against rcaflow itself: every command is a real subcommand, every variable lands on a setting, every volume is
declared or a file in the checkout, Kafka keeps its data on its volume, Prometheus scrapes every role where it
listens. No Docker here, so what Compose and the images would do is checked from their documented rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from streams.settings import ExecutorSettings, WorkerSettings
from tests.unit.deploy.deploy_checks import command_problem, env_problem

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "support" / "compose" / "compose-spec.json"
#: Where the apache/kafka image keeps its log segments unless KAFKA_LOG_DIRS says otherwise (its
#: /etc/kafka/docker/server.properties: log.dirs=/tmp/kafka-logs).
KAFKA_IMAGE_DEFAULT_LOG_DIRS = "/tmp/kafka-logs"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run rcaflow (built from deploy/Dockerfile)."""
    return {name: s for name, s in compose["services"].items()
            if s.get("build", {}).get("dockerfile") == "deploy/Dockerfile"}


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume in short syntax (``source:target[:mode]``) or long syntax."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out.append((str(volume.get("source", "")), str(volume["target"])))
        else:
            source, target = str(volume).split(":")[:2]
            out.append((source, target))
    return out


def test_the_file_is_valid_against_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors] == []


def test_the_schema_check_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    """The vendored schema forbids unknown service keys, so the test above can fail."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["enviroment"] = {"X": "1"}
    assert not jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).is_valid(broken)


def test_kafka_keeps_its_data_on_the_mounted_volume(compose: dict[str, Any]) -> None:
    """The image turns KAFKA_<NAME> into <name> with dots (KAFKA_LOG_DIRS -> log.dirs); without it the segments go
    to /tmp/kafka-logs inside the container and vanish with it, whatever volume is mounted."""
    kafka = compose["services"]["kafka"]
    log_dirs = str(kafka["environment"].get("KAFKA_LOG_DIRS", KAFKA_IMAGE_DEFAULT_LOG_DIRS)).split(",")
    volumes = set(compose.get("volumes") or {})
    mounted = [PurePosixPath(target) for source, target in _mounts(kafka) if source in volumes]
    for log_dir in map(PurePosixPath, log_dirs):
        assert any(log_dir == m or m in log_dir.parents for m in mounted), (
            f"Kafka writes to {log_dir}, which is on no named volume (mounted: {[str(m) for m in mounted]})")


def test_every_rcaflow_service_runs_a_real_command(compose: dict[str, Any]) -> None:
    ours = _ours(compose)
    assert {"api", "worker", "executor", "ingest-imap"} <= set(ours)
    assert [p for s in ours.values() if (p := command_problem(list(s["command"])))] == []


def test_every_variable_given_to_rcaflow_is_a_setting(compose: dict[str, Any]) -> None:
    names = {name for s in _ours(compose).values() for name in s.get("environment", {})}
    assert "KAFKA_BOOTSTRAP_SERVERS" in names
    assert [p for name in sorted(names) if (p := env_problem(name))] == []


def test_secrets_come_from_the_environment(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for name, value in (service.get("environment") or {}).items():
            if any(word in name for word in ("TOKEN", "KEY", "PASSWORD", "SECRET")):
                assert str(value).startswith("${"), f"{name} must come from the environment (.env)"


def test_every_volume_is_declared_or_a_file_in_the_checkout(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, target in _mounts(service):
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} (for {target}) is not in the checkout"
            else:
                assert source in declared, f"{name}: volume {source} is not declared under volumes:"


def test_monitoring_and_schema_registry_are_optional_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    assert services["schema-registry"]["profiles"] == ["schema-registry"]
    # Compose interpolates every service, active or not: a variable only an optional service requires
    # (${VAR:?}) would stop a plain `docker compose up`.
    def required(names: list[str]) -> set[str]:
        return {m for n in names for m in re.findall(r"\$\{(\w+):\?", json.dumps(services[n]))}

    optional = [n for n, s in services.items() if s.get("profiles")]
    assert {"ingest-imap", "schema-registry", "prometheus", "grafana"} <= set(optional)
    assert required(optional) - required([n for n in services if n not in optional]) == set()


def _listen_port(name: str, service: dict[str, Any]) -> int:
    """Where the role serves /metrics: the API's port, the worker's and executor's settings, ingest's option."""
    command = list(service["command"])
    env = service.get("environment", {})
    if command[0] == "api":
        return 8080
    if command[0] == "worker":
        assert env.get("RCAFLOW_WORKER__METRICS_HOST") == "0.0.0.0"
        return int(env.get("RCAFLOW_WORKER__METRICS_PORT", WorkerSettings().metrics_port))
    if command[0] == "executor":
        assert env.get("RCAFLOW_EXECUTOR__METRICS_HOST") == "0.0.0.0"
        return int(env.get("RCAFLOW_EXECUTOR__METRICS_PORT", ExecutorSettings().metrics_port))
    assert command[:2] == ["ingest", "imap"], name
    assert command[command.index("--metrics-host") + 1] == "0.0.0.0"
    return int(command[command.index("--metrics-port") + 1])


def test_prometheus_scrapes_every_role_where_it_listens(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    config_file = next(s for s, t in _mounts(prometheus) if t == "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load((COMPOSE.parent / config_file).read_text())
    targets = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            targets.update((name, int(sd["port"])) for name in sd["names"])
        for static in job.get("static_configs", []):
            targets.update((t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in static["targets"])
    wanted = {(name, _listen_port(name, service)) for name, service in _ours(compose).items()}
    assert wanted - targets == set()
    rule_mounts = {t for _, t in _mounts(prometheus)}
    assert set(config["rule_files"]) <= rule_mounts


def test_prometheus_accepts_its_configuration_and_rcaflows_rules(compose: dict[str, Any], tmp_path: Path) -> None:
    """promtool reads the configuration as the container would: rule files at their mounted paths."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: prometheus)")
    prometheus = compose["services"]["prometheus"]
    sources = {t: COMPOSE.parent / s for s, t in _mounts(prometheus) if s.startswith(".")}
    config = yaml.safe_load(sources["/etc/prometheus/prometheus.yml"].read_text())
    config["rule_files"] = [str(sources[r]) for r in config["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict((t, COMPOSE.parent / s) for s, t in _mounts(grafana) if s.startswith("."))
    provisioning = mounts["/etc/grafana/provisioning"]
    providers = yaml.safe_load((provisioning / "dashboards" / "rcaflow.yml").read_text())["providers"]
    folder = PurePosixPath(providers[0]["options"]["path"])
    dashboards = [source for target, source in mounts.items() if PurePosixPath(target).parent == folder]
    assert [d.relative_to(ROOT).as_posix() for d in dashboards] == ["deploy/monitoring/grafana-dashboard.json"]
    json.loads(dashboards[0].read_text())
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert sources[0]["type"] == "prometheus"
    assert sources[0]["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]


def test_the_executor_gets_longer_to_stop_than_its_own_stop_grace(compose: dict[str, Any]) -> None:
    """On ``docker compose stop``/``up`` the executor lets running actions finish for ``executor.stop_grace_s``;
    Compose must not kill it first (its default is 10 s)."""
    from streams.settings import ExecutorSettings

    grace = compose["services"]["executor"].get("stop_grace_period", "10s")
    assert grace.endswith("s") and float(grace[:-1]) > ExecutorSettings().stop_grace_s
