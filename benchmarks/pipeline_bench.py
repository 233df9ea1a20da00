"""Push N sample mails through the whole pipeline on the embedded broker and time every stage.

Latencies come from the broker's own record timestamps (CreateTime) on each
topic, so the numbers include Kafka hops and are measured from outside the
processes. Each mail gets its own tenant, so every mail opens its own incident
and nothing is hidden by dedup.

    python -m benchmarks.pipeline_bench --mails 500 --out benchmarks/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from benchmarks.results import RESULTS, write_results
from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import RawMail, SourceKind
from schemas.topics import ACTIONS, INCIDENTS, NORMALIZED, RAW_MAIL, RCA_RESULT, TopicSpec
from streams.settings import KafkaSettings, Settings, producer_config
from streams.wiring.supervisor import Stack

ROOT = Path(__file__).resolve().parent.parent
STAGES: list[tuple[str, TopicSpec, TopicSpec]] = [
    ("normalize", RAW_MAIL, NORMALIZED),
    ("dedup", NORMALIZED, INCIDENTS),
    ("rca", INCIDENTS, RCA_RESULT),
    ("decide", RCA_RESULT, ACTIONS),
]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 2)


def _first_ts_by_tenant(bootstrap: str, topic: str, codec_kind: Any, codec: Any, *, expect: int,
                        timeout: float, only: str = "") -> dict[str, float]:
    """Earliest record timestamp (ms) per tenant on one topic, reading until ``expect`` tenants are seen."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    meta = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.topics[topic].partitions])
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < expect and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        record = codec.decode(msg.value() or b"", codec_kind, topic=topic)
        tenant = record.tenant
        if only and not tenant.startswith(f"{only}-"):
            continue
        ts = float(msg.timestamp()[1])
        if tenant not in seen or ts < seen[tenant]:
            seen[tenant] = ts
    consumer.close()
    return seen


def _rss_peak_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _phase(stack: Stack, publisher: KafkaPublisher, files: list[Path], tag: str, count: int, rate: float | None,
           timeout: float) -> tuple[dict[str, Any], dict[str, dict[str, float]], list[str]]:
    """Publish ``count`` mails (at ``rate`` per second, or as fast as acks allow) and collect stage stamps."""
    prefix = stack.settings.kafka.topic_prefix
    codec = make_codec(None)
    tenants = [f"{tag}-{i}" for i in range(count)]
    started = time.monotonic()
    for i, tenant in enumerate(tenants):
        if rate:
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        publisher.publish_sync(RAW_MAIL, f"{tenant}:{i}", _mail(files[i % len(files)], tenant, i), timeout=60)
    published_s = time.monotonic() - started
    topics = {spec.name: spec for _, spec, _ in STAGES} | {ACTIONS.name: ACTIONS}
    stamps = {
        name: {t: ts for t, ts in _first_ts_by_tenant(stack.bootstrap, spec.full_name(prefix), spec.value, codec,
                                                     expect=count, timeout=timeout, only=tag).items()}
        for name, spec in topics.items()
    }
    summary: dict[str, Any] = {
        "mails": count,
        "offered_rate_per_s": rate or "max",
        "publish_seconds": round(published_s, 2),
        "complete": {name: sum(1 for t in tenants if t in s) for name, s in stamps.items()},
    }
    return summary, stamps, tenants


def _latencies(summary: dict[str, Any], stamps: dict[str, dict[str, float]], tenants: list[str]) -> dict[str, Any]:
    stages: dict[str, Any] = {}
    for stage, src, dst in STAGES:
        lat = [stamps[dst.name][t] - stamps[src.name][t] for t in tenants
               if t in stamps[src.name] and t in stamps[dst.name]]
        stages[stage] = {"p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99), "n": len(lat)}
    e2e = [stamps[RCA_RESULT.name][t] - stamps[RAW_MAIL.name][t] for t in tenants
           if t in stamps[RAW_MAIL.name] and t in stamps[RCA_RESULT.name]]
    last_rca = max((stamps[RCA_RESULT.name][t] for t in tenants if t in stamps[RCA_RESULT.name]), default=0)
    first_raw = min((stamps[RAW_MAIL.name][t] for t in tenants if t in stamps[RAW_MAIL.name]), default=0)
    span_s = max(0.001, (last_rca - first_raw) / 1000)
    return {
        **summary,
        "mails_per_min": round(len(e2e) / span_s * 60, 1),
        "stage_latency": stages,
        "mail_to_rca_result": {"p50_ms": _pct(e2e, 0.5), "p99_ms": _pct(e2e, 0.99),
                               "mean_ms": round(statistics.fmean(e2e), 2) if e2e else None},
    }


def run(
    mails: int, samples: Path, timeout: float, latency_mails: int = 60, latency_rate: float = 5.0
) -> dict[str, Any]:
    """Two phases: a paced stream below capacity (latency), then a backlog as fast as possible (throughput)."""
    files = sorted(samples.glob("*.eml"))
    if not files:
        raise SystemExit(f"no .eml files in {samples}")
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    with tempfile.TemporaryDirectory(prefix="rcaflow-bench-") as tmp:
        env = {**os.environ, "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
               "RCAFLOW_WORKER__DATA_DIR": str(Path(tmp) / "worker"),
               "RCAFLOW_WORKER__METRICS_PORT": str(_free_port()), "RCAFLOW_EXECUTOR__METRICS_PORT": "0",
               "RCAFLOW_LOG_LEVEL": "WARNING"}
        settings = Settings(kafka=KafkaSettings(topic_prefix=prefix, bootstrap_servers=os.environ.get(
            "KAFKA_BOOTSTRAP_SERVERS")))
        stack = Stack(settings, roles=("worker", "executor"), env=env, log_dir=Path(tmp) / "logs",
                      data_dir=Path(tmp) / "broker")
        with stack:
            broker_kind = stack.broker.kind if stack.broker else "external"
            publisher = KafkaPublisher(stack.bootstrap, make_codec(None), prefix,
                                       producer_config(stack.settings.kafka))
            # Warm-up: one mail through, so group joins and recovery are not in the numbers.
            _phase(stack, publisher, files, "warmup", 1, None, 120)
            paced = _latencies(*_phase(stack, publisher, files, "paced", latency_mails, latency_rate, timeout))
            backlog = _latencies(*_phase(stack, publisher, files, "backlog", mails, None, timeout))
            worker = stack.children.get("worker")
            rss = _rss_peak_mb(worker.pid) if worker else None
            publisher.close_sync()
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "broker": broker_kind,
        "samples": len(files),
        "paced": paced,
        "backlog": backlog,
        "worker_peak_rss_mb": rss,
    }


def _mail(path: Path, tenant: str, i: int) -> RawMail:
    return RawMail(tenant=tenant, message_id=f"<bench-{i}-{uuid.uuid4().hex}@rcaflow>", mailbox="bench",
                   source=SourceKind.FILE, received_at=datetime.now(UTC), subject=path.stem, raw=path.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=300)
    parser.add_argument("--samples", type=Path, default=ROOT / "samples")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--latency-mails", type=int, default=60)
    parser.add_argument("--latency-rate", type=float, default=5.0, help="mails/s in the paced phase")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    print(f"pipeline bench: {args.latency_mails} paced mails, then a backlog of {args.mails} ...", file=sys.stderr)
    result = run(args.mails, args.samples, args.timeout, args.latency_mails, args.latency_rate)
    write_results("pipeline", result, args.out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
