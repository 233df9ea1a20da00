"""Issue 12: a long outage is visible on the worker itself, and still loses nothing.

The real worker process on the real broker reads a mail while the Schema Registry (a stand-in
speaking its REST protocol) answers 503: the mail is neither dead-lettered nor skipped, and the
worker's /readyz names the stage that waits, its metrics count the record; once the registry is
back the mail comes through and /readyz turns 200.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import AlertEvent, DeadLetter
from schemas.topics import DEAD_LETTER, NORMALIZED, RAW_MAIL
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.helpers import TopicReader
from tests.integration.flow.test_worker_failure_edges import _mail, _of, _stack, registry  # noqa: F401 - fixture
from tests.unit.schemas.test_confluent_codec import StandInRegistry

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = answer.read()
            code = answer.status
    except urllib.error.HTTPError as exc:
        body, code = exc.read(), exc.code
    except OSError:
        return 0, None  # not listening yet
    try:
        return code, json.loads(body)
    except ValueError:
        return code, body.decode()


def test_a_registry_outage_turns_readyz_503_naming_the_stage_and_the_mail_still_comes_through(
    broker: object, tmp_path: Path, samples_dir: Path, registry: tuple[StandInRegistry, str]  # noqa: F811
) -> None:
    state, url = registry
    codec = make_codec(url)
    tenant = f"st-{uuid.uuid4().hex[:6]}"
    port = _free_port()
    stack = _stack(broker.bootstrap, tmp_path, SCHEMA_REGISTRY_URL=url,  # type: ignore[attr-defined]
                   RCAFLOW_WORKER__METRICS_PORT=str(port), RCAFLOW_WORKER__STUCK_AFTER_S="2")
    prefix = stack.settings.kafka.topic_prefix
    ensure_topics(stack.bootstrap, prefix)
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    try:
        publisher.publish_sync(RAW_MAIL, f"{tenant}:m", _mail(tenant, (samples_dir / "etcd_latency.eml").read_bytes()))
    finally:
        publisher.close_sync()
    state.fail_with = 503
    base = f"http://127.0.0.1:{port}"
    with stack:
        deadline = time.monotonic() + 90
        while True:
            stack.check()
            code, ready = _get(f"{base}/readyz")
            if code == 503:
                break
            assert time.monotonic() < deadline, f"/readyz never named the stuck stage; last answer {code} {ready}"
            time.sleep(0.3)
        _, metrics = _get(f"{base}/metrics")
        assert _get(f"{base}/healthz") == (200, {"status": "ok"})
        state.fail_with = None
        normalized = TopicReader(stack.bootstrap, codec, NORMALIZED, prefix, alive=stack.check)
        letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
        try:
            records = normalized.wait_for(lambda rs: bool(_of(tenant, rs, AlertEvent)), timeout=90,
                                          what="the mail's alert after the outage")
            letters.poll(2.0)
        finally:
            normalized.close()
            letters.close()
        deadline = time.monotonic() + 30
        while (after := _get(f"{base}/readyz"))[0] != 200:
            assert time.monotonic() < deadline, f"/readyz stayed {after}"
            time.sleep(0.3)

    stuck = ready["stuck"]["normalize"]
    assert ready["status"] == "stuck" and stuck["retrying_s"] >= 2
    assert "raw-mail" in stuck["what"] and stuck["attempts"] >= 1 and "503" in stuck["last_error"]
    assert 'rcaflow_stage_retrying_records{stage="normalize"}' in metrics
    assert 'rcaflow_stage_retrying_seconds{stage="normalize"}' in metrics
    # Waited out, never given up on: the alert came through and nothing was dead-lettered.
    assert {e.alert_class for e in _of(tenant, records, AlertEvent)} == {"etcd_latency"}
    assert _of(tenant, letters.records, DeadLetter) == []
    assert after[1]["stuck"] == {}
