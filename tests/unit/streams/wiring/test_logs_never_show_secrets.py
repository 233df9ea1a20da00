"""Whatever ends up in a log line, a configured secret does not: the formatter blanks it."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import pytest

from streams.settings import Settings, secret_values
from streams.wiring.logging_setup import setup_logging

#: Made up per run: the values only need to be recognisable in the output, and none belongs in the repository.
TOKEN = "bot-" + secrets.token_hex(12)
LINK_SECRET = secrets.token_urlsafe(32)
KAFKA_PASSWORD = secrets.token_hex(8)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _settings() -> Settings:
    return Settings.model_validate({
        "approvals": {"link_secret": LINK_SECRET},
        "notify": {"tenants": {"acme": {"slack": {"token": TOKEN, "channel": "#ops"}}}},
        "kafka": {"client": {"sasl.password": KAFKA_PASSWORD, "client.id": "rcaflow"}},
    })


def test_every_configured_secret_is_known_to_the_formatter() -> None:
    values = secret_values(_settings())
    assert {TOKEN, LINK_SECRET, KAFKA_PASSWORD} <= set(values) and "rcaflow" not in values


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_secret_in_a_message_or_a_traceback_is_blanked(capsys: pytest.CaptureFixture[str],
                                                         restore_logging: None, json_lines: bool) -> None:
    setup_logging("INFO", json_lines, secret_values(_settings()))
    log = logging.getLogger("rcaflow.test")

    log.warning("posting to https://hooks.example/robot/send?access_token=%s failed", TOKEN)
    try:
        raise RuntimeError(f"link signing with {LINK_SECRET} and {KAFKA_PASSWORD}")
    except RuntimeError:
        log.exception("while signing")

    err = capsys.readouterr().err
    assert "access_token=[redacted]" in err and "while signing" in err
    for secret in (TOKEN, LINK_SECRET, KAFKA_PASSWORD, TOKEN[:12]):
        assert secret not in err
