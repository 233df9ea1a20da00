"""Our worker against the engine's floor, in one run on one broker: mails/min under a backlog, and the ratio.

1. **pipeline**: ``rcaflow worker`` (every stage and the audit on; no executor, no LLM, no chat) on a
   backlog of sample mails, one tenant per mail like ``pipeline_bench`` (every mail opens an incident).
   From its topics this measures the records per mail and their sizes on every hop, and the table rows.
2. **floor**: ``benchmarks/floor_chain.py``, a Faust app with the same hops, the same readers, the same
   record sizes (the raw-mail records are the pipeline's own bytes) and trivial bodies, on the same
   backlog; once without tables (Faust + broker only) and once with the worker's four table writes per
   alert (dedup, correlate, decide, audit).

Throughput = mails / (last output record's broker timestamp - first raw-mail record's timestamp), on
every output topic (the audit chain included), so both sides are measured the same way, from outside.
The load average is recorded next to every phase: on a shared machine the numbers move with it.

    python -m benchmarks.floor_bench --mails 1000 --out benchmarks/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from benchmarks.floor_chain import CHAIN, FloorSpec
from benchmarks.profile_summary import summarize
from benchmarks.results import RESULTS, write_results
from schemas.codec import make_codec
from schemas.records import RawMail, SourceKind
from schemas.topics import ACTIONS, AUDIT, INCIDENTS, NORMALIZED, RAW_MAIL, RCA_RESULT
from streams.broker import DEFAULT_CACHE_ROOT, EmbeddedBroker, choose_broker
from streams.settings import KafkaSettings, Settings
from streams.wiring.supervisor import Stack
from streams.wiring.topics_admin import (
    ACTION_COOLDOWNS,
    AUDIT_HEAD,
    AUDIT_INPUT_SUFFIX,
    CORRELATE_INPUT_SUFFIX,
    DECIDE_GROUP_BY,
    DEDUP_STATE,
    INCIDENT_GROUPS,
    repartition_topic_name,
)

ROOT = Path(__file__).resolve().parent.parent
APP_ID = "rcaflow"
#: The worker's table behind each table-writing agent of the floor chain.
TABLE_OF = {"dedup": DEDUP_STATE, "correlate": INCIDENT_GROUPS, "decide": ACTION_COOLDOWNS, "audit": AUDIT_HEAD}


@dataclass(frozen=True)
class Scan:
    """The records of one topic written since a moment: count, mean value size, last broker timestamp."""

    count: int
    mean_bytes: float
    first_ms: float | None
    last_ms: float | None


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def scan(bootstrap: str, topic: str, since_ms: float) -> Scan:
    """Reads ``topic`` to its end offsets; counts what was written at or after ``since_ms``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"floor-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "fetch.message.max.bytes": 16 * 1024 * 1024})
    try:
        parts = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        remaining = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in remaining])
        count, total, first, last = 0, 0, None, None
        deadline = time.monotonic() + 120
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                ts = float(msg.timestamp()[1])
                if ts >= since_ms:
                    count += 1
                    total += len(msg.value() or b"")
                    first = ts if first is None else min(first, ts)
                    last = ts if last is None else max(last, ts)
                if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                    remaining.discard(msg.partition() or 0)
        return Scan(count, total / count if count else 0.0, first, last)
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topics: Iterable[str]) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"floor-{uuid.uuid4().hex}"})
    try:
        total = 0
        for topic in topics:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                total += consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return total
    finally:
        consumer.close()


def wait_quiet(bootstrap: str, topics: list[str], at_least: int, *, quiet_s: float = 8.0,
               timeout: float = 900.0) -> None:
    """Until the output topics hold ``at_least`` records and stop growing for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        try:
            now = end_offsets(bootstrap, topics)
        except KafkaException:  # a topic just created may have no leader yet: ask again
            time.sleep(1.0)
            continue
        if now != last:
            last, since = now, time.monotonic()
        elif now >= at_least and time.monotonic() - since >= quiet_s:
            return
        time.sleep(1.0)
    raise SystemExit(f"floor bench: outputs stopped at {last} records (wanted at least {at_least}) on {topics}")


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]],
            headers: list[tuple[str, str | bytes | None]] | None = None) -> float:
    """Puts (key, value) records on ``topic`` as fast as the producer goes; returns the start (ms)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                         "message.max.bytes": 16 * 1024 * 1024})
    started = time.time() * 1000
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)
    return started


def rate(mails: int, first_ms: float, last_ms: float) -> float:
    return round(mails / max(0.001, (last_ms - first_ms) / 1000) * 60, 1)


# ------------------------------------------------------------------------------------------- pipeline
def pipeline_topics(prefix: str) -> dict[str, str]:
    """The logical hop names of :data:`benchmarks.floor_chain.CHAIN` → the worker's real topics."""
    base = f"{prefix}{APP_ID}"
    return {
        "raw-mail": RAW_MAIL.full_name(prefix), "normalized": NORMALIZED.full_name(prefix),
        "correlate-input": f"{base}{CORRELATE_INPUT_SUFFIX}", "incidents": INCIDENTS.full_name(prefix),
        "rca-result": RCA_RESULT.full_name(prefix), "decide-input": repartition_topic_name(prefix, *DECIDE_GROUP_BY),
        "actions": ACTIONS.full_name(prefix), "audit-input": f"{base}{AUDIT_INPUT_SUFFIX}",
        "audit": AUDIT.full_name(prefix),
    }


def mail_records(files: list[Path], tag: str, count: int) -> list[tuple[bytes, bytes]]:
    codec = make_codec(None)
    out = []
    for i in range(count):
        tenant = f"{tag}-{i}"
        path = files[i % len(files)]
        record = RawMail(tenant=tenant, message_id=f"<floor-{i}-{uuid.uuid4().hex}@rcaflow>", mailbox="bench",
                         source=SourceKind.FILE, received_at=datetime.now(UTC), subject=path.stem,
                         raw=path.read_bytes())
        out.append((f"{tenant}:{i}".encode(), codec.encode(record, topic=RAW_MAIL.name)))
    return out


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the worker (collapsed stacks, 100 Hz, without pausing it) until stopped with SIGINT."""
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "100",
                             "--nonblocking", "--output", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop_profiler(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        spy.wait(60)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait(5)


def fanout(scans: dict[str, Scan], mails: int) -> dict[str, float]:
    """Records written per record read on each hop of the chain, as the worker did it (dedup folds repeats,
    decide writes an action record per proposal); the audit routers pass every record on (1)."""
    counts = {name: scan.count for name, scan in scans.items()} | {"raw-mail": mails}
    return {agent: counts[target] / max(1, counts[source]) for agent, source, target in CHAIN
            if agent not in ("audit-ingest", "audit-actions", "audit")}


def run_pipeline(bootstrap: str, files: list[Path], mails: int, tmp: Path,
                 profile: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The real worker on a backlog; returns its result and what the floor must mirror.

    ``profile``: py-spy samples the worker during the backlog and writes its collapsed stacks there.
    """
    prefix = f"floorp-{uuid.uuid4().hex[:8]}."
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
           "RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"), "RCAFLOW_WORKER__METRICS_PORT": "0",
           "RCAFLOW_LOG_LEVEL": "WARNING"}
    settings = Settings(kafka=KafkaSettings(topic_prefix=prefix, bootstrap_servers=bootstrap))
    topics = pipeline_topics(prefix)
    outputs = [name for logical, name in topics.items() if logical != "raw-mail"]
    with Stack(settings, roles=("worker",), env=env, log_dir=tmp / "logs") as stack:
        warm = mail_records(files, "warmup", 3)
        produce(bootstrap, topics["raw-mail"], warm)
        wait_quiet(bootstrap, [topics["audit"]], 3, quiet_s=3.0)
        before = end_offsets(bootstrap, outputs)
        backlog = mail_records(files, "backlog", mails)
        spy = start_profiler(stack.children["worker"].pid, profile) if profile is not None else None
        load_before = load()
        since = produce(bootstrap, topics["raw-mail"], backlog)
        wait_quiet(bootstrap, outputs, before + mails * 5)
        load_after = load()
        if spy is not None:
            stop_profiler(spy)
        scans = {logical: scan(bootstrap, name, since) for logical, name in topics.items()}
        rows = {agent: scan(bootstrap, f"{prefix}{APP_ID}-{table}-changelog", since).mean_bytes
                for agent, table in TABLE_OF.items()}
    first = since  # when the backlog started to go onto raw-mail (the producer's clock, as the timestamps)
    last_all = max(s.last_ms or 0 for s in scans.values())
    result = {
        "mails": mails,
        "mails_per_min": rate(mails, first, last_all),
        "mails_per_min_to_actions": rate(mails, first, scans["actions"].last_ms or last_all),
        "records_per_mail": {k: round(s.count / mails, 2) for k, s in scans.items() if k != "raw-mail"},
        "mean_record_bytes": {k: round(s.mean_bytes) for k, s in scans.items()},
        "table_row_bytes": {k: round(v) for k, v in rows.items()},
        "load_avg_before": load_before,
        "load_avg_after": load_after,
    }
    mirror = {"sizes": {k: max(1, round(s.mean_bytes)) for k, s in scans.items()},
              "row_bytes": {k: max(1, round(v)) for k, v in rows.items()},
              "fanout": fanout(scans, mails)}
    return result, mirror


# ------------------------------------------------------------------------------------------- floor
def run_floor(bootstrap: str, raw: list[tuple[bytes, bytes]], mirror: dict[str, Any], tmp: Path, *,
              tables: bool, partitions: int = 3) -> dict[str, Any]:
    prefix = f"floorf-{uuid.uuid4().hex[:8]}."
    logical = sorted({t for _, s, d in CHAIN for t in (s, d)})
    topics = {name: f"{prefix}{name}" for name in logical}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=-1,
                                                config={"max.message.bytes": str(16 * 1024 * 1024)})
                                       for t in topics.values()]).values():
        future.result(30)
    spec = FloorSpec(bootstrap=bootstrap, app_id=f"{prefix}floor", topics=topics, sizes=mirror["sizes"],
                     row_bytes=mirror["row_bytes"], fanout=mirror["fanout"],
                     partitions=partitions, tables=tables)
    spec_path = tmp / f"{prefix}spec.json"
    spec.dump(spec_path)
    outputs = [topics[name] for name in logical if name != "raw-mail"]
    with (tmp / f"{prefix}floor.log").open("ab") as log:
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.floor_chain", str(spec_path)], cwd=ROOT,
                                 stdout=log, stderr=subprocess.STDOUT)
    try:
        produce(bootstrap, topics["raw-mail"], raw[:3])
        wait_quiet(bootstrap, [topics["audit"]], 3, quiet_s=3.0, timeout=180)
        before = end_offsets(bootstrap, outputs)
        load_before = load()
        since = produce(bootstrap, topics["raw-mail"], raw[3:])
        mails = len(raw) - 3
        wait_quiet(bootstrap, outputs, before + mails * 5)
        load_after = load()
        scans = {name: scan(bootstrap, topics[name], since) for name in logical}
    finally:
        child.terminate()
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
    first = since  # when the backlog started to go onto raw-mail (the producer's clock, as the timestamps)
    last_all = max(s.last_ms or 0 for s in scans.values())
    return {
        "tables": tables,
        "mails": mails,
        "mails_per_min": rate(mails, first, last_all),
        "mails_per_min_to_actions": rate(mails, first, scans["actions"].last_ms or last_all),
        "records_per_mail": {k: round(s.count / mails, 2) for k, s in scans.items() if k != "raw-mail"},
        "load_avg_before": load_before,
        "load_avg_after": load_after,
    }


@contextmanager
def bench_broker(tmp: Path) -> Iterator[tuple[str, str]]:
    """(bootstrap, kind): the cluster in KAFKA_BOOTSTRAP_SERVERS ("external"), else an embedded one for the run."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if bootstrap:
        yield bootstrap, "external"
        return
    cache = Path(os.environ.get("RCAFLOW_CACHE_DIR", str(DEFAULT_CACHE_ROOT)))
    broker: EmbeddedBroker = choose_broker("auto", tmp / "broker", cache)
    try:
        yield broker.start(), broker.kind
    finally:
        broker.stop()


def run(mails: int, samples: Path, profile: Path | None = None, floors: str = "all") -> dict[str, Any]:
    files = sorted(samples.glob("*.eml"))
    if not files:
        raise SystemExit(f"no .eml files in {samples}")
    with tempfile.TemporaryDirectory(prefix="rcaflow-floor-") as tmp_name:
        tmp = Path(tmp_name)
        with bench_broker(tmp) as (bootstrap, broker_kind):
            pipeline, mirror = run_pipeline(bootstrap, files, mails, tmp, profile)
            raw = mail_records(files, "floor", mails + 3)
            floor = run_floor(bootstrap, raw, mirror, tmp, tables=False) if floors != "none" else None
            floor_tables = run_floor(bootstrap, raw, mirror, tmp, tables=True) if floors == "all" else None
    hops = [f"{s} → {d}" for _, s, d in CHAIN]

    def ratio(floor_run: dict[str, Any] | None) -> float | None:
        return None if floor_run is None else round(floor_run["mails_per_min"] / max(0.1, pipeline["mails_per_min"]), 2)

    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "broker": broker_kind,
        "machine": f"{os.cpu_count()} CPUs, shared (load average recorded per phase)",
        "hops": hops,
        "pipeline": pipeline,
        "floor": floor,
        "floor_with_tables": floor_tables,
        "ratio_floor_over_pipeline": ratio(floor),
        "ratio_floor_with_tables_over_pipeline": ratio(floor_tables),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--samples", type=Path, default=ROOT / "samples")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy the worker during the backlog: collapsed stacks to this file, summary in results")
    parser.add_argument("--floors", choices=("all", "plain", "none"), default="all",
                        help="which floor chains to run after the worker: both, the one without tables, or none "
                             "(quick before/after comparisons of the worker alone)")
    args = parser.parse_args(argv)
    print(f"floor bench: {args.mails} mails through the worker, then through the floor chain ...", file=sys.stderr)
    result = run(args.mails, args.samples, args.profile, args.floors)
    if args.profile is not None and args.profile.exists():
        result["profile"] = {"file": str(args.profile),
                             **summarize(args.profile.read_text(errors="replace").splitlines())}
    write_results("floor", result, args.out)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
