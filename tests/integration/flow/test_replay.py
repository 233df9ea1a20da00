"""`rcaflow replay` on a real broker: yesterday's mails through today's policy, in a shadow run that touches nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka.admin import AdminClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import AlertEvent, EventSource, SourceKind
from schemas.topics import ACTIONS, NORMALIZED, RAW_MAIL
from streams.ops.demo import raw_mail_from_file
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.helpers import TopicReader
from tests.support.loopback import serve

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


def _replay(bootstrap: str, prefix: str, tmp: Path, *args: str,
            slack_api: str = "http://127.0.0.1:9/api") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "RCAFLOW_"))}
    env.update({"RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"), "RCAFLOW_WORKER__METRICS_PORT": "0",
                "RCAFLOW_EXECUTOR__METRICS_PORT": "0",
                # A chat channel configured for the installation must not receive the shadow run's messages.
                "RCAFLOW_NOTIFY__TENANTS": json.dumps({"default": {"slack": {
                    "token": "test-token-not-used", "channel": "C1", "api_base": slack_api}}})})
    return subprocess.run([sys.executable, "-m", "streams.cli", "replay", "--bootstrap", bootstrap,
                           "--prefix", prefix, "--json", *args], env=env, capture_output=True, timeout=600,
                          check=False)


def _shadow_topics(bootstrap: str, prefix: str) -> list[str]:
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    return sorted(t for t in topics if t.startswith(f"{prefix}replay-") or t.startswith(f"decide-{prefix}replay-"))


def test_replay_of_raw_mail_shows_what_todays_policy_makes_of_it_and_leaves_no_trace(
    broker: object, codec: Codec, topic_prefix: str, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix)
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    names = ["etcd_latency.eml", "log_flood.eml", "vminsert_write_errors.eml"]
    for name in names:
        mail = raw_mail_from_file(SAMPLES / name, "default")
        publisher.publish_sync(RAW_MAIL, f"default:{mail.message_id}", mail)
    publisher.close_sync()

    calls: list[str] = []

    async def record(request: Request) -> JSONResponse:
        calls.append(request.url.path)
        return JSONResponse({"ok": True, "channel": "C1", "ts": "1.1"})

    chat = Starlette(routes=[Route("/api/{method}", record, methods=["GET", "POST"])])
    with serve(chat, "slack") as url:
        done = _replay(bootstrap, topic_prefix, tmp_path, "--since", "1h", slack_api=f"{url}/api")

    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    rows = [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]
    assert {r["alert_class"] for r in rows} >= {"etcd_latency", "log_flood", "vminsert_write_errors"}
    assert all(r["file"].startswith("raw-mail[") and not r["error"] for r in rows)
    analysed = [r for r in rows if r["incident_id"] and not r["suppressed"]]
    assert analysed and all(r["diagnosis"] for r in analysed)
    assert "executor dry run, no chat, LLM off" in done.stderr.decode()
    assert calls == []  # the configured Slack channel heard nothing of the shadow run
    # The installation's own topics got nothing, and the shadow topics are gone.
    actions = TopicReader(bootstrap, codec, ACTIONS, topic_prefix)
    actions.poll(1.0)
    assert actions.records == []
    actions.close()
    assert _shadow_topics(bootstrap, topic_prefix) == []


def test_replay_of_structured_alerts_from_normalized(
    broker: object, codec: Codec, topic_prefix: str, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix)
    event = AlertEvent(tenant="default", event_id="am-1", fingerprint="fp-am-1", alert="PrometheusRemoteWriteBehind",
                       severity="P2", alert_class="prometheus_remote_write_behind",
                       labels={"cluster": "HK-DCE5-PLATFORM", "namespace": "insight-system",
                               "pod": "prometheus-insight-agent-kube-prometh-prometheus-0"},
                       source=EventSource(kind=SourceKind.ALERTMANAGER), received_at=datetime.now(UTC),
                       parser="alertmanager-webhook")
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    where = publisher.publish_sync(NORMALIZED, "default:fp-am-1", event)
    publisher.close_sync()

    done = _replay(bootstrap, topic_prefix, tmp_path, "--topic", "normalized", "--from-offset",
                   f"{where.partition}:{where.offset}", "--keep")

    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    (row,) = [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]
    assert row["file"] == f"normalized[{where.partition}]@{where.offset}"
    assert row["alert_class"] == "prometheus_remote_write_behind" and row["incident_id"] and row["diagnosis"]
    kept = _shadow_topics(bootstrap, topic_prefix)
    assert any(t.endswith(".actions") for t in kept)  # --keep leaves them for a closer look


def test_a_window_that_does_not_exist_is_a_clear_error(broker: object, topic_prefix: str, tmp_path: Path) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [RAW_MAIL])
    done = _replay(bootstrap, topic_prefix, tmp_path, "--from-offset", "99:0")
    assert done.returncode == 1
    assert f"{topic_prefix}raw-mail has no partition 99" in done.stderr.decode()
