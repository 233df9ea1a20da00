"""The audit agent alone: how many chain records per second the worker appends from a backlog on audit-input.

The worker (every agent on, as ``rcaflow worker`` runs) gets a backlog of alert records put straight on its
``audit-input`` topic, keyed by tenant as the audit routers key them, so only the audit agent has work:
the number is the audit path's own rate (decode, chain, send the record, store the head), not the
pipeline's. Records/s = records / (last audit record's broker timestamp - start of the backlog).
Run two trees at once (before/after) to compare them under the same load:

    python -m benchmarks.audit_bench --records 3000 --tenants 20 --out /tmp/audit.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from benchmarks.floor_bench import APP_ID, ROOT, bench_broker, load, produce, scan, wait_quiet
from benchmarks.results import RESULTS, write_results
from producers.mail import parse_mail
from schemas.codec import make_codec
from schemas.records import EventSource, SourceKind
from schemas.topics import AUDIT, DEAD_LETTER, NORMALIZED
from streams.settings import KafkaSettings, Settings
from streams.wiring.supervisor import Stack
from streams.wiring.topics_admin import AUDIT_INPUT_SUFFIX

#: The header the audit routers put on audit-input records (streams.worker.agents.RECORD_HEADER).
RECORD_HEADER = "rcaflow-record"
HEADERS: list[tuple[str, str | bytes | None]] = [(RECORD_HEADER, b"AlertEvent")]


def alert_records(count: int, tenants: int) -> list[tuple[bytes, bytes]]:
    """(tenant key, AlertEvent bytes) with distinct content (a step is identified by its bytes)."""
    codec = make_codec(None)
    mail = (ROOT / "samples" / "etcd_latency.eml").read_bytes()
    base = parse_mail(mail, tenant="t", received_at=datetime.now(UTC),
                      source=EventSource(kind=SourceKind.FILE)).events[0]
    out = []
    for i in range(count):
        tenant = f"audit-{i % tenants}"
        event = base.model_copy(update={"tenant": tenant, "event_id": f"{uuid.uuid4().hex}"})
        out.append((tenant.encode(), codec.encode(event, topic=NORMALIZED.name)))
    return out




def wait_for_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 180.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Every topic's metadata: asking for this one by name would make the broker create it (one partition).
        found = admin.list_topics(timeout=10).topics.get(topic)
        if found is not None and found.error is None and len(found.partitions) == partitions:
            return
        time.sleep(0.5)
    raise SystemExit(f"audit bench: the worker did not create {topic} with {partitions} partitions")


def run(records: int, tenants: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rcaflow-audit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with bench_broker(tmp) as (bootstrap, broker_kind):
            prefix = f"auditb-{uuid.uuid4().hex[:8]}."
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
                   "RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"), "RCAFLOW_WORKER__METRICS_PORT": "0",
                   "RCAFLOW_LOG_LEVEL": "WARNING"}
            settings = Settings(kafka=KafkaSettings(topic_prefix=prefix, bootstrap_servers=bootstrap))
            audit_input = f"{prefix}{APP_ID}{AUDIT_INPUT_SUFFIX}"
            audit = AUDIT.full_name(prefix)
            with Stack(settings, roles=("worker",), env=env, log_dir=tmp / "logs"):
                # The worker creates audit-input with its partitions; produced to earlier, the broker would
                # create it with one, and the audit-head table would refuse every row.
                wait_for_topic(bootstrap, audit_input, settings.worker.partitions)
                produce(bootstrap, audit_input, alert_records(tenants, tenants), HEADERS)  # warm-up: one per tenant
                wait_quiet(bootstrap, [audit], tenants, quiet_s=3.0)
                load_before = load()
                since = produce(bootstrap, audit_input, alert_records(records, tenants), HEADERS)
                wait_quiet(bootstrap, [audit], tenants + records, quiet_s=5.0)
                load_after = load()
                written = scan(bootstrap, audit, since)
                kept = scan(bootstrap, DEAD_LETTER.full_name(prefix), since)
    seconds = max(0.001, ((written.last_ms or since) - since) / 1000)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "broker": broker_kind,
        "records": records,
        "tenants": tenants,
        "audit_records_written": written.count,
        "dead_letters": kept.count,
        "records_per_s": round(written.count / seconds, 1),
        "load_avg_before": load_before,
        "load_avg_after": load_after,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.records, args.tenants)
    write_results("audit_path", result, args.out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
