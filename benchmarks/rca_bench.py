"""The RCA engine's numbers on the real broker and worker: triage with evidence, LLM throughput, dedup before the LLM.

Three phases, each against a fresh worker process (streams.wiring.supervisor.Stack) on one embedded broker:

1. triage: classified alert events go in on the normalized topic (one tenant each, paced); the worker's
   evidence tools query a real Prometheus (Debian's binary scraping the integration tests' synthetic
   exporter; a Prometheus-API stand-in when the binary is missing). Reported: incidents → rca-result
   p50/p99 from the broker's own record timestamps. Target p99 ≤ 1 s.
2. llm: 100 distinct incidents with an OpenAI-compatible stand-in answering every chat completion after
   2 s, once per LLM setting in a sweep. Reported: first incident → 100th rca-result with engine=llm.
   Target ≤ 10 s.
3. dedup: 10,000 copies of one alert (same fingerprint, distinct event ids). Reported: how many chat
   completions the stand-in saw (target exactly 1) and how long dedup took.

    python -m benchmarks.rca_bench --out benchmarks/results.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.pipeline_bench import _free_port, _pct, _rss_peak_mb
from benchmarks.results import RESULTS, write_results
from policies import load_policies
from producers.mail import parse_mail
from producers.publisher import KafkaPublisher
from schemas.codec import Codec, make_codec
from schemas.records import AlertEvent, AlertStatus, Engine, EventSource, Record, SourceKind
from schemas.topics import INCIDENTS, NORMALIZED, RCA_RESULT, TopicSpec
from streams.settings import KafkaSettings, Settings, producer_config
from streams.wiring.supervisor import Stack
from tests.integration.evidence.conftest import FIXTURES as PROM_FIXTURES
from tests.integration.evidence.exporter import Exporter
from tests.support.loopback import serve

ROOT = Path(__file__).resolve().parent.parent
LLM_DELAY_S = 2.0


@dataclass(frozen=True)
class LlmSetting:
    """One point of the sweep: the worker's agent concurrency and the client's per-tenant limits."""

    concurrency: int
    per_tenant: int
    rate_per_s: float
    tenants: int

    @classmethod
    def parse(cls, text: str) -> LlmSetting:
        """``concurrency/per_tenant/rate/tenants``, e.g. ``8/4/1/1`` (the defaults, one tenant)."""
        c, p, r, t = text.split("/")
        return cls(int(c), int(p), float(r), int(t))

    def env(self) -> dict[str, str]:
        return {"RCAFLOW_LLM__CONCURRENCY": str(self.concurrency),
                "RCAFLOW_LLM__MAX_CONCURRENCY_PER_TENANT": str(self.per_tenant),
                "RCAFLOW_LLM__RATE_PER_TENANT_PER_S": str(self.rate_per_s)}

    def label(self) -> str:
        return (f"concurrency={self.concurrency} per_tenant={self.per_tenant} rate={self.rate_per_s}/s "
                f"tenants={self.tenants}")


#: The defaults (one tenant, then 100), then what it takes: agent concurrency for many tenants, and
#: per-tenant limits as well when one tenant has all the incidents.
DEFAULT_SWEEP = ("8/4/1/1", "8/4/1/100", "24/4/1/100", "32/4/1/100", "64/32/20/100", "32/16/10/1", "32/32/20/1",
                 "64/32/20/1")


# ---------------------------------------------------------------------- stand-ins served on loopback


ANSWER = json.dumps({
    "evidence_plan": [],
    "diagnosis": {"summary": "etcd WAL fsync is slow on the node's disk", "cause": "slow disk", "confidence": 0.8},
    "actions": [],
    "rollback": ["collect_diagnostics: nothing to undo"],
})


class SlowChat:
    """An OpenAI-compatible chat-completions server answering every request with a valid RCA after ``delay``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def reset(self) -> None:
        self.requests = self.max_in_flight = 0

    async def chat(self, request: Request) -> JSONResponse:
        await request.body()
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        return JSONResponse({
            "id": f"chatcmpl-{self.requests}", "object": "chat.completion", "model": "bench-standin",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        })

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])


def _prom_standin() -> Starlette:
    """Answers every instant/range query with one sample, like a Prometheus that has the series."""

    async def query(request: Request) -> JSONResponse:
        now = time.time()
        if request.url.path.endswith("query_range"):
            data = {"resultType": "matrix", "result": [{"metric": {}, "values": [[now - 60, "1"], [now, "1"]]}]}
        else:
            data = {"resultType": "vector", "result": [{"metric": {}, "value": [now, "1"]}]}
        return JSONResponse({"status": "success", "data": data})

    return Starlette(routes=[Route(p, query, methods=["GET", "POST"])
                             for p in ("/api/v1/query", "/api/v1/query_range")])


@contextlib.contextmanager
def prometheus(work: Path) -> Iterator[tuple[str, str]]:
    """A real Prometheus scraping the synthetic exporter (kind "prometheus"), or the stand-in (kind "standin")."""
    binary = shutil.which("prometheus")
    if binary is None:
        with serve(_prom_standin()) as url:
            yield url, "standin"
        return
    with Exporter() as exporter:
        config = work / "prometheus.yml"
        config.write_text(Template((PROM_FIXTURES / "prometheus.yml.tmpl").read_text())
                          .substitute(exporter_port=exporter.port))
        url = f"http://127.0.0.1:{_free_port()}"
        with (work / "prometheus.log").open("wb") as log:
            proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'prom'}",
                                     f"--web.listen-address={url.removeprefix('http://')}",
                                     "--storage.tsdb.retention.time=1h"], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while not _has_rates(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"prometheus did not get ready; see {work / 'prometheus.log'}")
                time.sleep(0.3)
            yield url, "prometheus"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _has_rates(url: str) -> bool:
    """rate() needs two scrapes in its window; before that every evidence query would say "no data"."""
    try:
        answer = httpx.post(f"{url}/api/v1/query", timeout=2,
                            data={"query": "rate(etcd_disk_wal_fsync_duration_seconds_count[1m])"}).json()
    except (httpx.HTTPError, ValueError):
        return False
    return bool(answer.get("data", {}).get("result"))


# ---------------------------------------------------------------------- events and topics


def sample_events(samples: Path) -> list[AlertEvent]:
    """Every firing, classified alert in the sample mails: the seeds that the phases copy."""
    policies = load_policies()
    events: list[AlertEvent] = []
    for path in sorted(samples.glob("*.eml")):
        parsed = parse_mail(path.read_bytes(), tenant="bench", received_at=datetime.now(UTC),
                            source=EventSource(kind=SourceKind.FILE))
        for event in parsed.events:
            cls = policies.classify(event)
            if event.status is AlertStatus.FIRING and cls != "unclassified":
                events.append(event.model_copy(update={"alert_class": cls}))
    if not events:
        raise SystemExit(f"no classified firing alerts in {samples}")
    return events


def copy_event(seed: AlertEvent, tenant: str, fingerprint: str) -> AlertEvent:
    """A new alert (fresh event id) of the seed's kind; the same fingerprint means the same alert again."""
    return seed.model_copy(update={"tenant": tenant, "fingerprint": fingerprint, "event_id": uuid.uuid4().hex[:24],
                                   "received_at": datetime.now(UTC)})


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def publish_all(publisher: KafkaPublisher, events: list[AlertEvent], chunk: int = 2000) -> float:
    """Publish as fast as acks allow; returns the seconds it took."""

    async def go() -> None:
        for start in range(0, len(events), chunk):
            await asyncio.gather(*(publisher.publish(NORMALIZED, f"{e.tenant}:{e.fingerprint}", e)
                                   for e in events[start:start + chunk]))

    started = time.monotonic()
    asyncio.run(go())
    return time.monotonic() - started


def first_stamps(bootstrap: str, prefix: str, spec: TopicSpec, codec: Codec, key: Callable[[Record], str | None], *,
                 expect: int, timeout: float, alive: Callable[[], None], settle: float = 0.0) -> tuple[dict[str, float],
                                                                                                   int]:
    """Earliest broker timestamp (ms) per ``key(record)`` (None: not ours), and how many of ours were read.

    Reads until ``expect`` keys are seen (then ``settle`` more seconds, to catch late extras) or ``timeout``.
    """
    topic = spec.full_name(prefix)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.topics[topic].partitions])
        seen: dict[str, float] = {}
        total = 0
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < (settle_until if settle_until is not None else deadline):
            alive()
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            k = key(codec.decode(msg.value() or b"", spec.value, topic=topic))
            if k is None:
                continue
            total += 1
            ts = float(msg.timestamp()[1])
            seen[k] = min(ts, seen.get(k, ts))
            if len(seen) >= expect and settle_until is None:
                settle_until = time.monotonic() + settle
        return seen, total
    finally:
        consumer.close()


# ---------------------------------------------------------------------- the worker


@contextlib.contextmanager
def worker(bootstrap: str, work: Path, extra_env: Mapping[str, str]) -> Iterator[Stack]:
    """One worker process on its own topic prefix; RCAFLOW_/QWEN_ variables come only from ``extra_env``."""
    prefix = f"rca-{uuid.uuid4().hex[:8]}."
    run_dir = work / prefix.rstrip(".")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCAFLOW_", "QWEN_"))}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
            "RCAFLOW_WORKER__DATA_DIR": str(run_dir / "worker"), "RCAFLOW_WORKER__METRICS_PORT": "0",
            "RCAFLOW_LOG_LEVEL": "WARNING", **extra_env}
    settings = Settings(kafka_bootstrap_servers=bootstrap, kafka=KafkaSettings(topic_prefix=prefix))
    with Stack(settings, roles=("worker",), env=env, log_dir=run_dir / "logs") as stack:
        yield stack


def _is_llm(tag: str) -> Callable[[Record], str | None]:
    def key(r: Record) -> str | None:
        return r.incident_id if r.tenant.startswith(tag) and r.engine is Engine.LLM else None  # type: ignore[attr-defined]
    return key


def _of_tag(tag: str, attr: str) -> Callable[[Record], str | None]:
    def key(r: Record) -> str | None:
        return str(getattr(r, attr)) if r.tenant.startswith(tag) else None  # type: ignore[attr-defined]
    return key


def warm_up(stack: Stack, publisher: KafkaPublisher, seed: AlertEvent, llm: bool) -> None:
    """One incident through, so the group join and first connections stay out of the numbers."""
    tag = f"warm{uuid.uuid4().hex[:6]}"
    publish_all(publisher, [copy_event(seed, tag, fingerprint(tag))])
    prefix = stack.settings.kafka.topic_prefix
    key = _is_llm(tag) if llm else _of_tag(tag, "incident_id")
    seen, _ = first_stamps(stack.bootstrap, prefix, RCA_RESULT, make_codec(None), key, expect=1, timeout=120,
                           alive=stack.check)
    if not seen:
        raise RuntimeError("warm-up incident got no rca-result in 120 s; see the worker log")


# ---------------------------------------------------------------------- phases


def triage_phase(bootstrap: str, work: Path, seeds: list[AlertEvent], count: int, rate: float,
                 timeout: float) -> dict[str, Any]:
    with prometheus(work) as (prom_url, prom_kind), \
            worker(bootstrap, work, {"RCAFLOW_EVIDENCE__PROMETHEUS_URL": prom_url}) as stack:
        prefix = stack.settings.kafka.topic_prefix
        publisher = KafkaPublisher(stack.bootstrap, make_codec(None), prefix, producer_config(stack.settings.kafka))
        try:
            warm_up(stack, publisher, seeds[0], llm=False)
            tag = f"tri{uuid.uuid4().hex[:6]}"
            started = time.monotonic()
            for i in range(count):
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                event = copy_event(seeds[i % len(seeds)], f"{tag}-{i}", fingerprint(tag, str(i)))
                publisher.publish_sync(NORMALIZED, f"{event.tenant}:{event.fingerprint}", event)
        finally:
            publisher.close_sync()
        codec = make_codec(None)
        incidents, _ = first_stamps(stack.bootstrap, prefix, INCIDENTS, codec, _of_tag(tag, "tenant"), expect=count,
                                    timeout=timeout, alive=stack.check)
        evidence: dict[str, int] = {}

        def result_key(r: Record) -> str | None:
            if not r.tenant.startswith(tag):  # type: ignore[attr-defined]
                return None
            for e in r.evidence:  # type: ignore[attr-defined]
                if e.tool.startswith("prom"):
                    evidence[e.status.value] = evidence.get(e.status.value, 0) + 1
            return str(r.tenant)  # type: ignore[attr-defined]

        results, _ = first_stamps(stack.bootstrap, prefix, RCA_RESULT, codec, result_key, expect=count,
                                  timeout=timeout, alive=stack.check)
    lat = [results[t] - incidents[t] for t in incidents if t in results]
    return {"incidents": count, "offered_rate_per_s": rate, "prometheus": prom_kind,
            "rca_results": len(results), "prometheus_evidence_by_status": evidence,
            "incident_to_rca_result": {"p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99),
                                       "max_ms": max(lat, default=None), "n": len(lat)},
            "target_p99_ms": 1000, "meets_target": bool(lat) and _pct(lat, 0.99) <= 1000}


def llm_phase(bootstrap: str, work: Path, seeds: list[AlertEvent], chat: SlowChat, chat_url: str,
              setting: LlmSetting, count: int, timeout: float) -> dict[str, Any]:
    env = {"QWEN_API_KEY": "bench-not-a-key", "RCAFLOW_LLM__BASE_URL": f"{chat_url}/v1", **setting.env()}
    with worker(bootstrap, work, env) as stack:
        prefix = stack.settings.kafka.topic_prefix
        publisher = KafkaPublisher(stack.bootstrap, make_codec(None), prefix, producer_config(stack.settings.kafka))
        try:
            warm_up(stack, publisher, seeds[0], llm=True)
            chat.reset()
            tag = f"llm{uuid.uuid4().hex[:6]}"
            events = [copy_event(seeds[i % len(seeds)], f"{tag}-{i % setting.tenants}", fingerprint(tag, str(i)))
                      for i in range(count)]
            publish_all(publisher, events)
        finally:
            publisher.close_sync()
        codec = make_codec(None)
        llm, _ = first_stamps(stack.bootstrap, prefix, RCA_RESULT, codec, _is_llm(tag), expect=count,
                              timeout=timeout, alive=stack.check)
        incidents, _ = first_stamps(stack.bootstrap, prefix, INCIDENTS, codec, _of_tag(tag, "incident_id"),
                                    expect=count, timeout=30, alive=stack.check)
        rss = _rss_peak_mb(stack.children["worker"].pid)
    first = min(incidents.values(), default=0.0)
    span = (max(llm.values()) - first) / 1000 if llm else None
    return {"setting": setting.label(), "incidents": count, "llm_results": len(llm),
            "first_incident_to_last_llm_result_s": round(span, 2) if span is not None else None,
            "complete": len(llm) == count, "chat_requests": chat.requests,
            "max_in_flight_at_llm": chat.max_in_flight, "worker_peak_rss_mb": rss,
            "meets_target_10s": len(llm) == count and span is not None and span <= 10}


def dedup_phase(bootstrap: str, work: Path, seeds: list[AlertEvent], chat: SlowChat, chat_url: str,
                count: int, timeout: float) -> dict[str, Any]:
    env = {"QWEN_API_KEY": "bench-not-a-key", "RCAFLOW_LLM__BASE_URL": f"{chat_url}/v1"}
    with worker(bootstrap, work, env) as stack:
        prefix = stack.settings.kafka.topic_prefix
        publisher = KafkaPublisher(stack.bootstrap, make_codec(None), prefix, producer_config(stack.settings.kafka))
        try:
            warm_up(stack, publisher, seeds[0], llm=True)
            chat.reset()
            tag = f"dup{uuid.uuid4().hex[:6]}"
            same = fingerprint(tag)
            publish_s = publish_all(publisher, [copy_event(seeds[0], tag, same) for _ in range(count)])
        finally:
            publisher.close_sync()
        codec = make_codec(None)
        # Every copy becomes one incident record (the first opens it, the rest update its count).
        updates, n_updates = first_stamps(stack.bootstrap, prefix, INCIDENTS, codec,
                                          lambda r: str(r.count) if r.tenant == tag else None,  # type: ignore[attr-defined]
                                          expect=count, timeout=timeout, alive=stack.check)
        # Long enough for any second call to have been made and answered.
        llm, n_llm = first_stamps(stack.bootstrap, prefix, RCA_RESULT, codec, _is_llm(tag), expect=1,
                                  timeout=timeout, alive=stack.check, settle=LLM_DELAY_S * 3)
    first = min(updates.values(), default=0.0)
    return {"duplicates": count, "publish_seconds": round(publish_s, 2), "incident_records": n_updates,
            "dedup_seconds_first_to_last_incident": round((max(updates.values()) - first) / 1000, 2)
            if updates else None,
            "first_incident_to_llm_result_s": round((min(llm.values()) - first) / 1000, 2) if llm else None,
            "llm_results": n_llm, "chat_requests": chat.requests,
            "exactly_one_llm_call": chat.requests == 1 and n_llm == 1}


def run(args: argparse.Namespace) -> dict[str, Any]:
    seeds = sample_events(args.samples)
    result: dict[str, Any] = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory(prefix="rcaflow-rca-bench-") as tmp:
        work = Path(tmp)
        given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        broker = Stack(Settings(kafka_bootstrap_servers=given), roles=(), data_dir=work / "broker")
        with broker:
            result["broker"] = broker.broker.kind if broker.broker else "external"
            if "triage" in args.phases:
                print("triage with evidence ...", file=sys.stderr)
                result["triage"] = triage_phase(broker.bootstrap, work, seeds, args.triage_incidents,
                                                args.triage_rate, args.timeout)
            chat = SlowChat(LLM_DELAY_S)
            with serve(chat.app()) as chat_url:
                if "llm" in args.phases:
                    result["llm"] = {"chat_delay_s": LLM_DELAY_S, "runs": []}
                    for text in args.llm_settings:
                        setting = LlmSetting.parse(text)
                        print(f"llm: {setting.label()} ...", file=sys.stderr)
                        result["llm"]["runs"].append(llm_phase(broker.bootstrap, work, seeds, chat, chat_url,
                                                               setting, args.llm_incidents, args.timeout))
                if "dedup" in args.phases:
                    print(f"dedup: {args.duplicates} duplicates ...", file=sys.stderr)
                    result["dedup"] = dedup_phase(broker.bootstrap, work, seeds, chat, chat_url, args.duplicates,
                                                  args.timeout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, default=ROOT / "samples")
    parser.add_argument("--phases", nargs="+", default=["triage", "llm", "dedup"], choices=["triage", "llm", "dedup"])
    parser.add_argument("--triage-incidents", type=int, default=60)
    parser.add_argument("--triage-rate", type=float, default=5.0, help="incidents/s offered in the triage phase")
    parser.add_argument("--llm-incidents", type=int, default=100)
    parser.add_argument("--llm-settings", nargs="+", default=list(DEFAULT_SWEEP),
                        help="concurrency/per_tenant/rate_per_s/tenants, one run each")
    parser.add_argument("--duplicates", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=150.0, help="per wait, in seconds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args)
    write_results("rca", result, args.out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
