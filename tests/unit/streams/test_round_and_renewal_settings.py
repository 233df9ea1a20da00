"""``worker.round_size``, ``worker.max_held`` and ``executor.producer_renew_after_s``: read from the environment
or the YAML file, refused in one line naming the setting when they cannot work, and handed to what uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from schemas.codec import make_codec
from streams.errors import ConfigurationError
from streams.executor.process import build_publisher
from streams.settings import ExecutorSettings, Settings, WorkerSettings, client_config, load_settings

KNOBS = ("RCAFLOW_WORKER__ROUND_SIZE", "RCAFLOW_WORKER__MAX_HELD", "RCAFLOW_EXECUTOR__PRODUCER_RENEW_AFTER_S")


@pytest.fixture(autouse=True)
def _no_knobs_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KNOBS:
        monkeypatch.delenv(name, raising=False)


def test_the_defaults_are_the_measured_ones() -> None:
    settings = Settings()
    assert (settings.worker.round_size, settings.worker.max_held) == (512, 2048)
    assert settings.executor.producer_renew_after_s == 60.0


def test_the_environment_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCAFLOW_WORKER__ROUND_SIZE", "64")
    monkeypatch.setenv("RCAFLOW_WORKER__MAX_HELD", "256")
    monkeypatch.setenv("RCAFLOW_EXECUTOR__PRODUCER_RENEW_AFTER_S", "15")
    settings = load_settings()
    assert (settings.worker.round_size, settings.worker.max_held) == (64, 256)
    assert settings.executor.producer_renew_after_s == 15.0


def test_the_yaml_file_sets_them_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "rcaflow.yaml"
    config.write_text(yaml.safe_dump({"worker": {"round_size": 1000, "max_held": 4000},
                                      "executor": {"producer_renew_after_s": 120}}))
    settings = load_settings(config)
    assert (settings.worker.round_size, settings.worker.max_held) == (1000, 4000)
    assert settings.executor.producer_renew_after_s == 120.0
    monkeypatch.setenv("RCAFLOW_WORKER__ROUND_SIZE", "8")
    assert load_settings(config).worker.round_size == 8


@pytest.mark.parametrize(("env", "named"), [
    ({"RCAFLOW_WORKER__ROUND_SIZE": "0"}, "worker.round_size"),
    ({"RCAFLOW_WORKER__MAX_HELD": "0"}, "worker.max_held"),
    ({"RCAFLOW_WORKER__ROUND_SIZE": "many"}, "worker.round_size"),
    ({"RCAFLOW_EXECUTOR__PRODUCER_RENEW_AFTER_S": "0"}, "executor.producer_renew_after_s"),
    ({"RCAFLOW_EXECUTOR__PRODUCER_RENEW_AFTER_S": "-5"}, "executor.producer_renew_after_s"),
    ({"RCAFLOW_EXECUTOR__PRODUCER_RENEW_AFTER_S": "86400"}, "executor.producer_renew_after_s"),
])
def test_a_value_that_cannot_work_is_refused_in_one_line_naming_the_setting(
    env: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    message = str(refused.value)
    assert named in message and "\n" not in message


def test_a_round_larger_than_the_inputs_held_is_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "rcaflow.yaml"
    config.write_text(yaml.safe_dump({"worker": {"round_size": 4096}}))  # max_held left at 2048
    with pytest.raises(ConfigurationError) as refused:
        load_settings(config)
    message = str(refused.value)
    assert "worker" in message and "max_held (2048) must be at least round_size (4096)" in message
    assert str(config) in message


def test_the_executor_producer_is_renewed_after_the_configured_time() -> None:
    settings = Settings(executor=ExecutorSettings(producer_renew_after_s=7.5))
    bootstrap = "127.0.0.1:9"  # nothing listens there, and nothing is sent
    publisher = build_publisher(settings, bootstrap, make_codec(None), client_config(settings.kafka, bootstrap))
    try:
        assert publisher.stuck_after_s == 7.5
    finally:
        publisher.close_sync(0.1)


def test_worker_settings_keep_their_own_defaults_when_built_directly() -> None:
    assert WorkerSettings(round_size=2048).max_held == 2048
