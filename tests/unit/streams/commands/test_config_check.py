"""Unknown keys are refused with the nearest name, and `rcaflow config check` shows the effective settings masked."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.cli import main

KEY = "k" * 40


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No config file and no stray RCAFLOW_* from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("RCAFLOW_") or name in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "QWEN_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RCAFLOW_LOG_LEVEL", "WARNING")
    yield


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``main()`` as the console script does; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["rcaflow", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    code = exited.value.code
    captured = capsys.readouterr()
    return (code if isinstance(code, int) else (0 if code is None else 1)), captured.out, captured.err


def test_unknown_yaml_keys_at_every_level_are_one_line_each_with_the_nearest_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "rcaflow.yaml"
    config.write_text("evidance:\n  prometheus_url: http://prom:9090\n"
                      "kafka:\n  security:\n    pasword: x\n"
                      "tenants:\n  acme:\n    namespace: ['*']\n"
                      "executor:\n  reload_endpoints:\n    vmalert: {url: 'http://v:8880', knd: vmalert}\n")
    code, _out, err = _main(monkeypatch, capsys, "--config", str(config), "config", "check")
    assert code == 2, err
    assert err.splitlines() == [
        f"rcaflow: {config}: evidance: unknown setting; did you mean evidence?",
        f"rcaflow: {config}: kafka.security.pasword: unknown setting; did you mean kafka.security.password?",
        f"rcaflow: {config}: tenants.acme.namespace: unknown setting; did you mean tenants.acme.namespaces?",
        f"rcaflow: {config}: executor.reload_endpoints.vmalert.knd: unknown setting; "
        "did you mean executor.reload_endpoints.vmalert.kind?",
    ]
    assert "Traceback" not in err


def test_unknown_environment_variables_are_refused_with_the_nearest_name(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RCAFLOW_EVIDANCE__PROMETHEUS_URL", "http://prom:9090")
    monkeypatch.setenv("RCAFLOW_SECURITY__DECISON_KEY", KEY)
    monkeypatch.setenv("RCAFLOW_TENANTS", '{"acme": {"namspaces": ["*"]}}')
    monkeypatch.setenv("RCAFLOW_API__PORT__X", "1")
    code, _out, err = _main(monkeypatch, capsys, "stats")
    assert code == 2, err
    assert err.splitlines() == [
        "rcaflow: RCAFLOW_API__PORT__X: unknown setting; RCAFLOW_API__PORT is a single value, not a section",
        "rcaflow: RCAFLOW_EVIDANCE__PROMETHEUS_URL: unknown setting; did you mean RCAFLOW_EVIDENCE__PROMETHEUS_URL?",
        "rcaflow: RCAFLOW_SECURITY__DECISON_KEY: unknown setting; did you mean RCAFLOW_SECURITY__DECISION_KEY?",
        "rcaflow: RCAFLOW_TENANTS: acme.namspaces: unknown setting; did you mean acme.namespaces?",
    ]
    assert KEY not in err


def test_variables_that_are_not_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RCAFLOW_TEST_BROKER", "kafka")
    monkeypatch.setenv("RCAFLOW_DECISION_KEY", KEY)  # docker-compose.yml's .env variable
    monkeypatch.setenv("RCAFLOW_TENANTS__ACME__NAMESPACES", '["*"]')  # a map of any names
    monkeypatch.setenv("RCAFLOW_KAFKA__CLIENT__SOCKET_TIMEOUT_MS", "1000")
    code, out, err = _main(monkeypatch, capsys, "config", "check")
    assert code == 0, err
    assert "acme:" in out


def test_config_check_masks_every_secret_and_says_where_each_value_came_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "approvals").mkdir(parents=True)
    link_secret = "l" * 40
    (secrets / "approvals" / "link_secret").write_text(link_secret)
    config = tmp_path / "rcaflow.yaml"
    config.write_text("api:\n  port: 9000\nkafka:\n  client:\n    sasl.password: hunter2-hunter2\n"
                      "approvals:\n  dingtalk_owner_key: ding-owner-app-key\n")
    monkeypatch.setenv("RCAFLOW_TENANTS__ACME__TOKEN", "tenant-token-123")
    monkeypatch.setenv("RCAFLOW_SECURITY__DECISION_KEY", KEY)
    monkeypatch.setenv("RCAFLOW_APPROVALS__DINGTALK_CALLBACK_TOKEN", "callback-token-1")
    monkeypatch.setenv("RCAFLOW_APPROVALS__DINGTALK_AES_KEY", "a" * 43)
    code, out, err = _main(monkeypatch, capsys, "--config", str(config), "--secrets-dir", str(secrets),
                           "config", "check")
    assert code == 0, err
    for secret in (link_secret, "hunter2-hunter2", "tenant-token-123", KEY, "ding-owner-app-key", "a" * 43):
        assert secret not in out, f"{secret} printed"
    lines = [line.strip() for line in out.splitlines()]
    assert "port: 9000  # file" in lines
    assert "sasl.password: '***'  # file" in lines
    assert "link_secret: '***'  # secrets-dir" in lines
    assert "token: '***'  # env RCAFLOW_TENANTS__ACME__TOKEN" in lines
    assert "decision_key: '***'  # env RCAFLOW_SECURITY__DECISION_KEY" in lines
    assert "dingtalk_owner_key: '***'  # file" in lines  # masked by its name, though not a SecretStr
    assert "host: 127.0.0.1" in lines  # a default: no origin


def test_config_check_with_its_own_file_exits_2_on_an_invalid_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "rcaflow.yaml"
    config.write_text("api:\n  port: notanumber\n")
    code, _out, err = _main(monkeypatch, capsys, "config", "check", "--config", str(config))
    assert code == 2, err
    assert err.count("\n") == 1 and "api.port" in err and "valid integer" in err, err
