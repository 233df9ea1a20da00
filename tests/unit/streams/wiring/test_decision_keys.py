"""Where the decision key comes from: configured, or made once for a one-machine run; without one, no executor."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from streams.errors import ConfigurationError
from streams.executor.process import build_verifier
from streams.settings import SecuritySettings, Settings
from streams.wiring.decision_keys import (
    APPROVAL_KEY_ENV,
    DECISION_KEY_ENV,
    build_approval_keys,
    optional_approval_keys,
    optional_decision_keys,
    with_decision_key,
)

KEY = "c" * 40


def test_the_executor_refuses_to_start_without_a_decision_key() -> None:
    with pytest.raises(ConfigurationError, match=r"security\.decision_key is not set: the executor needs it"):
        build_verifier(Settings())


def test_a_configured_key_is_handed_on_unchanged() -> None:
    settings = Settings(security=SecuritySettings(decision_key=SecretStr(KEY), approval_key=SecretStr(KEY[::-1])))

    same, env = with_decision_key(settings, {"PATH": "/bin"})

    assert same is settings and env == {"PATH": "/bin"}


def test_a_run_without_a_key_makes_one_for_its_children_and_never_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        settings, env = with_decision_key(Settings(), {"PATH": "/bin"})

    key = env[DECISION_KEY_ENV]
    assert len(key) >= 32
    keys = optional_decision_keys(settings)
    assert keys is not None and keys.current == key.encode()  # the parent signs and verifies like its children
    assert key not in caplog.text and "random key" in caplog.text
    assert with_decision_key(Settings(), {})[1][DECISION_KEY_ENV] != key  # one per run


def test_a_run_without_an_approval_key_makes_one_for_api_and_worker(caplog: pytest.LogCaptureFixture) -> None:
    configured = Settings(security=SecuritySettings(decision_key=SecretStr(KEY)))
    with caplog.at_level(logging.DEBUG):
        settings, env = with_decision_key(configured, {"PATH": "/bin"})

    assert DECISION_KEY_ENV not in env  # the configured decision key is the settings' own
    key = env[APPROVAL_KEY_ENV]
    keys = optional_approval_keys(settings)
    assert keys is not None and keys.current == key.encode() and key != KEY
    assert key not in caplog.text and "approval decisions with a random key" in caplog.text


def test_the_api_and_worker_name_the_missing_approval_key() -> None:
    with pytest.raises(ConfigurationError, match=r"security\.approval_key is not set: the api needs it"):
        build_approval_keys(Settings(), role="api")
