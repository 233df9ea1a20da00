"""A client library repeating one connection error is heard once per interval, in our format (JSON when on)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from streams.wiring.logging_setup import OncePer, setup_logging


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging("INFO", json_lines=True)
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_the_same_client_error_is_logged_once_as_json(captured: io.StringIO) -> None:
    client = logging.getLogger("aiokafka.conn")
    for _ in range(200):
        client.error("Unable connect to node with id %s: %s", 1, "Connect call failed ('127.0.0.1', 1)")
    client.error("another problem")
    logging.getLogger("streams.stages").error("ours is never held back")
    logging.getLogger("streams.stages").error("ours is never held back")
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == [
        "Unable connect to node with id 1: Connect call failed ('127.0.0.1', 1)", "another problem",
        "ours is never held back", "ours is never held back"]
    assert lines[0]["logger"] == "aiokafka.conn"


def test_the_same_message_passes_again_after_the_interval() -> None:
    once = OncePer(seconds=30)
    record = logging.LogRecord("librdkafka", logging.WARNING, __file__, 1, "down", None, None)
    assert once.filter(record)
    assert not once.filter(record)
    later = logging.LogRecord("librdkafka", logging.WARNING, __file__, 1, "down", None, None)
    later.created = record.created + 31
    assert once.filter(later)


def test_librdkafka_lines_of_a_publisher_go_through_logging_not_raw_to_stderr(
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    import socket
    import time

    from producers.publisher import KafkaPublisher
    from schemas.codec import make_codec

    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.INFO, logger="librdkafka")
    publisher = KafkaPublisher(f"127.0.0.1:{port}", make_codec(None))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(r.name == "librdkafka" for r in caplog.records):
            time.sleep(0.1)
    finally:
        publisher.close_sync()
    said = [r.getMessage() for r in caplog.records if r.name == "librdkafka"]
    assert said and any("Connection refused" in line for line in said), said
    assert "|FAIL|" not in capfd.readouterr().err  # librdkafka's raw "%3|...|FAIL|..." lines


def test_repeats_of_one_librdkafka_failure_count_as_one_line() -> None:
    """librdkafka stamps each repeat with its client instance and timing; they are still the same line."""
    once = OncePer(seconds=30)
    where = ("[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: "
             "Connection refused")
    said = [f"FAIL [rdkafka#consumer-1] {where} (after 0ms in state CONNECT)",
            f"FAIL [rdkafka#consumer-7] {where} (after 12ms in state CONNECT, 4 identical error(s) suppressed)",
            f"FAIL [rdkafka#producer-3] {where} (after 1ms in state CONNECT)"]
    passed = [once.filter(logging.LogRecord("librdkafka", logging.ERROR, __file__, 1, "%s", (line,), None))
              for line in said]
    assert passed == [True, False, False]
    other = "FAIL [rdkafka#consumer-1] [thrd:b/bootstrap]: b/bootstrap: Connect to ipv4#10.0.0.2:9 failed: timed out"
    assert once.filter(logging.LogRecord("librdkafka", logging.ERROR, __file__, 1, "%s", (other,), None))
