"""One tenant at 10× its ingest quota: do the other tenants' alerts still go through the pipeline on time?

Three tenants with a quota of ``--quota`` alerts/min each (burst: ``--burst``, else the default). The two
quiet tenants post at half their quota (or ``--quiet-per-minute``); a noisy tenant posts at 10× its quota.
``--budget``: the intake budget (``ingest.budget_alerts_per_minute``, burst ``--budget-burst`` or the
default) that the tenants share fairly. Two modes:

* **end to end** (default): ``rcaflow api`` + ``rcaflow worker`` on one broker (``bench_broker()``: the
  cluster in KAFKA_BOOTSTRAP_SERVERS, else an embedded one). Phases of ``--seconds`` each: calm (quiet
  tenants only), a storm over ``POST /events`` (tenant ``noisy``), a storm over ``POST /webhook`` (tenant
  ``noisyhook``, Alertmanager-like batches of 5). After each phase the bench waits until every accepted alert
  has its rca-result, so no phase inherits another's backlog. Per quiet tenant and phase: the latency from
  the alert's record on ``normalized`` (the API's ack) to its record on ``rca-result`` (the triage), both
  broker timestamps, and from the client's send to ``rca-result``; the noisy tenant's 202/429 counts,
  ``rcaflow_ingest_throttled_total`` and every dead letter by reason; the worker's mean
  ``rcaflow_stage_wait_seconds`` per tenant and stage in each phase; the load average around each phase.
* **intake** (``--intake-only``): ``rcaflow api`` alone, the POST accept latency (the earlier measurement).

The mail intakes (IMAP, Graph) defer by leaving the mail where it is; their admitted share reaches the worker
through the same bucket, so this bench drives the HTTP intakes only (docs/tenants.md, "Measured").

    python -m benchmarks.tenant_quota_bench --seconds 25 --quota 120
    python -m benchmarks.tenant_quota_bench --seconds 25 --quota 600 --burst 600 --quiet-per-minute 120 --budget 480
    python -m benchmarks.tenant_quota_bench --intake-only --seconds 20 --quota 600
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.floor_bench import bench_broker, load
from benchmarks.results import RESULTS, write_results
from schemas.codec import make_codec
from schemas.records import AlertEvent, DeadLetter, Incident, RcaResult
from schemas.topics import DEAD_LETTER, INCIDENTS, NORMALIZED, RCA_RESULT
from streams.settings import KafkaSettings, Settings
from streams.wiring.supervisor import Stack

QUIET = ("quiet1", "quiet2")
#: The noisy tenant of each storm phase and the intake it storms (a tenant of its own per phase, so each storm
#: starts with a full bucket, as a real storm after a quiet spell does).
STORMS = {"storm_events": ("noisy", "events"), "storm_webhook": ("noisyhook", "webhook")}
TENANTS = (*QUIET, *(tenant for tenant, _ in STORMS.values()))
WEBHOOK_BATCH = 5
SEED: dict[str, Any] = {
    "alert": "PrometheusRemoteWriteBehind", "severity": "P2",
    "labels": {"cluster": "c1", "namespace": "insight-system", "workload": "prometheus-0", "component": "prometheus"},
    "metrics": {"times": 1, "first_occur": "2026-12-06T09:00:00Z"},
    "raw": {"mail_subject": "s", "mail_id": "<1@x>"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50": _pct(values, 0.5), "p99": _pct(values, 0.99), "max": round(max(values or [0.0]), 2)}


@dataclass
class Post:
    """One request: when it was sent (wall clock, ms, the clock of the broker timestamps), its answer, and
    the fingerprints of the alerts it got accepted."""

    tenant: str
    sent_ms: float
    status: int
    latency_ms: float
    fingerprints: list[str] = field(default_factory=list)


def _body(tenant: str, channel: str, tag: str, n: int) -> tuple[str, dict[str, Any]]:
    """The path and JSON of request ``n``: every alert has its own workload, so its own incident."""
    if channel == "events":
        return "/events", {**SEED, "labels": {**SEED["labels"], "workload": f"{tenant}-{tag}-{n}"}}
    alerts = [{"status": "firing", "labels": {
        "alertname": SEED["alert"], "severity": "P2", "cluster": "c1", "namespace": "insight-system",
        "pod": f"{tenant}-{tag}-{n}-{i}"}} for i in range(WEBHOOK_BATCH)]
    return "/webhook", {"version": "4", "status": "firing", "receiver": "rcaflow", "alerts": alerts}


def _sender(base: str, tenant: str, channel: str, alerts_per_s: float, seconds: float, tag: str,
            out: dict[str, list[Post]]) -> None:
    """Posts paced to ``alerts_per_s`` for ``seconds`` on one connection, keeping every answer."""
    per_request = WEBHOOK_BATCH if channel == "webhook" else 1
    interval = per_request / alerts_per_s
    posts: list[Post] = []
    with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {tenant}-token"}) as client:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            due = start + n * interval
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            path, body = _body(tenant, channel, tag, n)
            sent_ms = time.time() * 1000
            began = time.perf_counter()
            response = client.post(path, json=body)
            post = Post(tenant, sent_ms, response.status_code, (time.perf_counter() - began) * 1000)
            if response.status_code == 202:
                post.fingerprints = [e["fingerprint"] for e in response.json()["events"]]
            posts.append(post)
            n += 1
    out[tenant] = posts


def _phase(base: str, senders: dict[str, tuple[str, float]], seconds: float, tag: str) -> dict[str, list[Post]]:
    """``senders``: tenant -> (channel, alerts/s), all at once."""
    out: dict[str, list[Post]] = {}
    threads = [threading.Thread(target=_sender, args=(base, t, ch, rate, seconds, tag, out))
               for t, (ch, rate) in senders.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def _intake_summary(posts: list[Post]) -> dict[str, Any]:
    codes = Counter(p.status for p in posts)
    return {"sent": len(posts), "codes": {str(k): v for k, v in sorted(codes.items())},
            "latency_ms": _stats([p.latency_ms for p in posts])}


class Topics(threading.Thread):
    """Reads normalized, incidents, rca-result and dead-letter from the start while the bench runs: the first
    broker timestamp of each fingerprint on each topic, and every dead letter."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.codec = make_codec(None)
        self.specs = {spec.full_name(prefix): spec for spec in (NORMALIZED, INCIDENTS, RCA_RESULT, DEAD_LETTER)}
        self.first: dict[str, dict[str, float]] = {spec.name: {} for spec in self.specs.values()}
        self.dead_letters: list[DeadLetter] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"qbench-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, "fetch.message.max.bytes": 16 * 1024 * 1024})
        parts = []
        for topic in self.specs:
            meta = self.consumer.list_topics(topic, timeout=30).topics[topic]
            parts += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        self.consumer.assign(parts)

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for msg in self.consumer.consume(500, 0.5):
                    if msg.error() or not msg.value():
                        continue
                    self._keep(msg.topic() or "", msg.value() or b"", float(msg.timestamp()[1]))
        finally:
            self.consumer.close()

    def _keep(self, topic: str, value: bytes, ts: float) -> None:
        spec = self.specs[topic]
        record = self.codec.decode(value, spec.value, topic=topic)
        with self.lock:
            if isinstance(record, DeadLetter):
                self.dead_letters.append(record)
                return
            if isinstance(record, AlertEvent | Incident):
                fingerprint = record.fingerprint
            elif isinstance(record, RcaResult):
                fingerprint = record.incident.fingerprint
            else:
                return
            seen = self.first[spec.name]
            seen[fingerprint] = min(ts, seen.get(fingerprint, ts))

    def stamps(self, topic: str) -> dict[str, float]:
        with self.lock:
            return dict(self.first[topic])

    def wait_for(self, fingerprints: set[str], timeout: float) -> float:
        """Until every fingerprint has its rca-result; returns the seconds waited (raises after ``timeout``)."""
        started = time.monotonic()
        while True:
            missing = fingerprints - self.stamps(RCA_RESULT.name).keys()
            if not missing:
                return round(time.monotonic() - started, 1)
            if time.monotonic() - started > timeout:
                raise SystemExit(f"tenant quota bench: {len(missing)} accepted alert(s) have no rca-result after "
                                 f"{timeout:.0f}s (e.g. {sorted(missing)[:3]})")
            time.sleep(0.5)


def _scrape(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric (without its _created series) by label set."""
    text = httpx.get(url, timeout=10).text
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _wait_means(before: dict[str, dict[Any, float]], after: dict[str, dict[Any, float]],
                tenants: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Mean ``rcaflow_stage_wait_seconds`` (ms) per tenant and stage over one phase, from two scrapes."""
    out: dict[str, dict[str, float]] = {}
    for labels, total in after["sum"].items():
        d = dict(labels)
        if d.get("tenant") not in tenants:
            continue
        count = after["count"].get(labels, 0) - before["count"].get(labels, 0)
        if count > 0:
            mean = (total - before["sum"].get(labels, 0.0)) / count * 1000
            out.setdefault(d["tenant"], {})[d["stage"]] = round(mean, 1)
    return out


def _stage_wait(url: str) -> dict[str, dict[Any, float]]:
    return {"sum": _scrape(url, "rcaflow_stage_wait_seconds_sum"),
            "count": _scrape(url, "rcaflow_stage_wait_seconds_count")}


def _throttled(url: str) -> dict[str, float]:
    return {f"{dict(k)['tenant']}/{dict(k)['source']}": v
            for k, v in _scrape(url, "rcaflow_ingest_throttled_total").items()}


@dataclass(frozen=True)
class Limits:
    """The intake's limits under test: each tenant's quota (and burst; None: the default) and the budget."""

    quota: float
    burst: float | None = None
    budget: float | None = None
    budget_burst: float | None = None

    def key(self, quiet_per_minute: float) -> str:
        """The run's key in results.json: without the optional parts, the keys of the earlier runs."""
        key = f"quota_{self.quota:g}_per_min"
        if self.burst is not None:
            key += f"_burst_{self.burst:g}"
        if quiet_per_minute != self.quota / 2:
            key += f"_quiet_{quiet_per_minute:g}"
        if self.budget is not None:
            key += f"_budget_{self.budget:g}" + (f"_burst_{self.budget_burst:g}" if self.budget_burst else "")
        return key


def _tenant_env(prefix: str, port: int, limits: Limits) -> dict[str, str]:
    env = {**os.environ, "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix, "RCAFLOW_API__PORT": str(port),
           "RCAFLOW_LOG_LEVEL": "WARNING"}
    for tenant in TENANTS:
        key = f"RCAFLOW_TENANTS__{tenant.upper()}__"
        env |= {f"{key}TOKEN": f"{tenant}-token", f"{key}NAMESPACES": '["insight-system"]',
                f"{key}SENDERS": f'["*@{tenant}.test"]', f"{key}INGEST__ALERTS_PER_MINUTE": str(limits.quota)}
        if limits.burst is not None:
            env[f"{key}INGEST__BURST"] = str(limits.burst)
    if limits.budget is not None:
        env["RCAFLOW_INGEST__BUDGET_ALERTS_PER_MINUTE"] = str(limits.budget)
    if limits.budget_burst is not None:
        env["RCAFLOW_INGEST__BUDGET_BURST"] = str(limits.budget_burst)
    return env


def _wait_healthy(stack: Stack, base: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        stack.check()
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("tenant quota bench: rcaflow api did not come up")
        time.sleep(0.3)


# ------------------------------------------------------------------------------------------- intake only
def run_intake(seconds: float, quota: float) -> dict[str, Any]:
    limits = Limits(quota)
    port = _free_port()
    prefix = f"qbench-{uuid.uuid4().hex[:8]}."
    quiet_rate, noisy_rate = quota / 60 / 2, quota / 60 * 10
    with tempfile.TemporaryDirectory(prefix="rcaflow-qbench-") as tmp_name:
        tmp = Path(tmp_name)
        with bench_broker(tmp) as (bootstrap, kind):
            settings = Settings(kafka=KafkaSettings(topic_prefix=prefix, bootstrap_servers=bootstrap))
            with Stack(settings, roles=("api",), env=_tenant_env(prefix, port, limits), log_dir=tmp / "logs") as st:
                base = f"http://127.0.0.1:{port}"
                _wait_healthy(st, base)
                quiet = {t: ("events", quiet_rate) for t in QUIET}
                _phase(base, {t: ("events", 2.0) for t in QUIET}, 3.0, "warmup")
                calm = _phase(base, quiet, seconds, "calm")
                storm = _phase(base, {**quiet, "noisy": ("events", noisy_rate)}, seconds, "storm")
                throttled = [line for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines()
                             if line.startswith("rcaflow_ingest_throttled_total{")]
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "broker": kind,
        "what": "POST /events accept latency of two quiet tenants (each at half its quota) without and with a "
                "third tenant posting at 10x its quota; intake only (no worker)",
        "quota_per_minute": quota,
        "seconds_per_phase": seconds,
        "calm": {t: _intake_summary(p) for t, p in sorted(calm.items())},
        "storm": {t: _intake_summary(p) for t, p in sorted(storm.items())},
        "throttled_metric": throttled,
    }


# ------------------------------------------------------------------------------------------- end to end
def _e2e_summary(posts: list[Post], topics: Topics) -> dict[str, Any]:
    """Per tenant: from the alert's normalized record (the API's ack) to its rca-result, and from the send."""
    normalized, rca = topics.stamps(NORMALIZED.name), topics.stamps(RCA_RESULT.name)
    to_rca, from_send = [], []
    for post in posts:
        for fp in post.fingerprints:
            if fp in rca and fp in normalized:
                to_rca.append(rca[fp] - normalized[fp])
                from_send.append(rca[fp] - post.sent_ms)
    accepted = sum(len(p.fingerprints) for p in posts)
    return {**_intake_summary(posts), "alerts_accepted": accepted, "alerts_traced": len(to_rca),
            "normalized_to_rca_result_ms": _stats(to_rca), "send_to_rca_result_ms": _stats(from_send)}


def run_end_to_end(seconds: float, limits: Limits, quiet_per_minute: float, drain_timeout: float,
                   logs: Path | None = None) -> dict[str, Any]:
    """``logs``: where the roles write their logs (default: the run's temporary directory)."""
    port, worker_port = _free_port(), _free_port()
    prefix = f"qbench-{uuid.uuid4().hex[:8]}."
    quiet_rate, noisy_rate = quiet_per_minute / 60, limits.quota / 60 * 10
    quiet = {t: ("events", quiet_rate) for t in QUIET}
    phases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rcaflow-qbench-") as tmp_name:
        tmp = Path(tmp_name)
        with bench_broker(tmp) as (bootstrap, kind):
            env = _tenant_env(prefix, port, limits) | {
                "RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"), "RCAFLOW_WORKER__METRICS_PORT": str(worker_port)}
            settings = Settings(kafka=KafkaSettings(topic_prefix=prefix, bootstrap_servers=bootstrap))
            with Stack(settings, roles=("api", "worker"), env=env, log_dir=logs or tmp / "logs") as st:
                base, worker_metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{worker_port}/metrics"
                _wait_healthy(st, base)
                topics = Topics(bootstrap, prefix)
                topics.start()
                try:
                    # Warm-up: group joins, table recovery and producer ids stay out of the numbers.
                    warm = _phase(base, {t: ("events", 2.0) for t in QUIET}, 3.0, "warmup")
                    topics.wait_for({fp for ps in warm.values() for p in ps for fp in p.fingerprints}, 180)
                    plan = {"calm": quiet} | {name: {**quiet, tenant: (channel, noisy_rate)}
                                              for name, (tenant, channel) in STORMS.items()}
                    for name, senders in plan.items():
                        st.check()
                        waits_before, load_before = _stage_wait(worker_metrics), load()
                        throttled_before = _throttled(f"{base}/metrics")
                        posts = _phase(base, senders, seconds, name)
                        load_after = load()
                        accepted = {fp for ps in posts.values() for p in ps for fp in p.fingerprints}
                        drained_s = topics.wait_for(accepted, drain_timeout)
                        throttled = _throttled(f"{base}/metrics")
                        phases[name] = {
                            "tenants": {t: _e2e_summary(p, topics) for t, p in sorted(posts.items())},
                            "throttled_in_phase": {k: v - throttled_before.get(k, 0.0) for k, v in throttled.items()
                                                   if v - throttled_before.get(k, 0.0) > 0},
                            "stage_wait_mean_ms": _wait_means(waits_before, _stage_wait(worker_metrics), TENANTS),
                            "drained_after_s": drained_s,
                            "load_avg_before": load_before,
                            "load_avg_after": load_after,
                        }
                    throttled_total = _throttled(f"{base}/metrics")
                finally:
                    topics.stopping.set()
                    topics.join(10)
    reasons = Counter(f"{d.tenant}/{d.stage}: {d.reason[:100]}" for d in topics.dead_letters)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "broker": kind,
        "machine": f"{os.cpu_count()} CPUs, shared (load average recorded per phase)",
        "what": "rcaflow api + worker; two quiet tenants post to /events at half their quota, first alone "
                "(or at quiet_per_minute) (calm), then while a third tenant posts at 10x its quota to /events "
                "(storm_events) or to "
                f"/webhook in batches of {WEBHOOK_BATCH} (storm_webhook); latency per alert from its normalized "
                "record (API ack) and from the client's send to its rca-result, by broker timestamps",
        "quota_per_minute": limits.quota,
        "burst": limits.burst if limits.burst is not None else "default (ten seconds' worth)",
        "quiet_per_minute": quiet_per_minute,
        "budget_alerts_per_minute": limits.budget,
        "budget_burst": (limits.budget_burst if limits.budget_burst is not None
                         else "default (five seconds' worth)" if limits.budget is not None else None),
        "seconds_per_phase": seconds,
        "phases": phases,
        "throttled_metric_total": throttled_total,
        "dead_letters_by_reason": dict(reasons),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--quota", type=float, default=120.0, help="alerts per minute, each tenant")
    parser.add_argument("--burst", type=float, default=None, help="each tenant's burst (default: the default)")
    parser.add_argument("--quiet-per-minute", type=float, default=None,
                        help="alerts per minute of each quiet tenant (default: half the quota)")
    parser.add_argument("--budget", type=float, default=None,
                        help="the intake budget, alerts per minute for all tenants (default: none)")
    parser.add_argument("--budget-burst", type=float, default=None, help="the budget's burst (default: the default)")
    parser.add_argument("--intake-only", action="store_true", help="the API alone (POST accept latency)")
    parser.add_argument("--drain-timeout", type=float, default=300.0,
                        help="seconds to wait after a phase for every accepted alert's rca-result")
    parser.add_argument("--logs", type=Path, default=None, help="keep the roles' logs in this directory")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    previous: dict[str, Any] = {}
    if args.out.exists():
        previous = json.loads(args.out.read_text(encoding="utf-8")).get("tenant_quota", {})
    if args.intake_only:
        result = run_intake(args.seconds, args.quota)
        entry = {**result, **({"end_to_end": previous["end_to_end"]} if "end_to_end" in previous else {})}
    else:
        limits = Limits(args.quota, args.burst, args.budget, args.budget_burst)
        quiet = args.quiet_per_minute if args.quiet_per_minute is not None else args.quota / 2
        result = run_end_to_end(args.seconds, limits, quiet, args.drain_timeout, args.logs)
        # One entry per setup: the runs with limits the worker can carry and with ones it cannot stay side by side.
        runs = {**previous.get("end_to_end", {}), limits.key(quiet): result}
        entry = {**{k: v for k, v in previous.items() if k != "end_to_end"}, "end_to_end": runs}
    write_results("tenant_quota", entry, args.out)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
