"""Sustained load: mails at a fixed rate for minutes, over several tenants, most of them repeats (issue 18).

An open-loop producer puts raw-mail records on the broker at ``--rate`` mails/min for ``--minutes`` — on
schedule, whether or not the worker keeps up, as mail servers do — round-robin over ``--tenants`` tenants,
``--dup-ratio`` of them repeats of an alert still inside its dedup window (``benchmarks/load_plan.py``).
``rcaflow worker`` and ``rcaflow executor`` run as processes on the embedded broker (or
``KAFKA_BOOTSTRAP_SERVERS``), every tenant with a Slack channel served by the tests' Slack Web API stand-in,
so each new incident ends in a first response in chat: the first thing a person sees.

Every ``--sample-every`` seconds (``benchmarks/load_sampler.py``): records written to each topic, consumer lag
per group and topic (committed offset vs high watermark), the RSS of the worker and the executor, and the
load average; a progress line every ~10 s on stderr. After sending stops, sampling goes on until the worker
and executor have caught up (or ``--drain-minutes``). Then the topics are read once to stamp every mail and
incident (``benchmarks/load_stats.py``): per-stage latency percentiles and mail → chat notification.

Results go to ``--out`` under ``"load"`` → ``--label``; the plot (throughput, lag, RSS over time) to ``--plot``.
``--rate-of-capacity 0.8`` takes the rate from the capacity a saturated ``overload`` run measured before.

Bounded memory over a long run (``make bench-load-hour``): ``--env KEY=VALUE`` passes settings to the roles
(short prune margins), ``--cap-policy-times 5m`` runs them on a policy copy with short dedup windows,
cooldowns and approval TTLs (``benchmarks/load_retention.py``), so rows are pruned within the run. The
worker's RSS slope over the second half of the load (MB/hour) and each table's rows over time, replayed from
its changelog after the run (``benchmarks/load_tables.py``), say whether its memory is bounded.

    python -m benchmarks.load_bench --label overload --rate 4000 --minutes 5
    python -m benchmarks.load_bench --label at_80pct --rate-of-capacity 0.8 --minutes 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from benchmarks.floor_bench import APP_ID, bench_broker, load, wait_quiet
from benchmarks.load_chat import BOT_TOKEN, StampedSlack
from benchmarks.load_plan import MailPlan, raw_mail, run_id
from benchmarks.load_plot import plot
from benchmarks.load_retention import write_capped_policies
from benchmarks.load_sampler import Sample, Sampler
from benchmarks.load_stats import Stamps, capacity, rss_second_half, series, stage_latencies, sustained
from benchmarks.load_tables import changelog_topics, keep_uncompacted, table_histories
from benchmarks.load_updates import UpdateTriggers
from benchmarks.results import RESULTS, write_results
from policies.model import parse_duration
from producers.publisher import KafkaPublisher, PublishError
from schemas.codec import Codec, make_codec
from schemas.records import ActionEvent, AlertEvent, Engine, Incident, RawMail, RcaResult
from schemas.topics import ACTIONS, AUDIT, DEAD_LETTER, INCIDENTS, NORMALIZED, RAW_MAIL, RCA_RESULT
from streams.settings import KafkaSettings, Settings, client_config, producer_config
from streams.wiring.supervisor import Stack
from tests.support.loopback import serve

ROOT = Path(__file__).resolve().parent.parent
RESULTS_KEY = "load"
#: Topics sampled for throughput, in pipeline order.
SAMPLED = (RAW_MAIL, NORMALIZED, INCIDENTS, RCA_RESULT, ACTIONS, AUDIT, DEAD_LETTER)
WARMUP_TENANT = "warmup"


# ------------------------------------------------------------------------------------------- signals
class Terminated(SystemExit):
    """SIGTERM arrived: unwind like Ctrl-C, so the worker, the executor and the broker are stopped."""


@contextmanager
def terminate_as_exit() -> Iterator[None]:
    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------------------------------- sending
class Sent:
    """What the producer did: mails sent, their send times by raw-mail position, failures."""

    def __init__(self) -> None:
        self.count = 0
        self.repeats = 0
        self.failures = 0
        self.at: dict[tuple[int, int], float] = {}


async def send_open_loop(publisher: KafkaPublisher, plan: MailPlan, run: str, rate_per_min: float,
                         seconds: float, sent: Sent) -> None:
    """Mail i goes out at start + i / rate, whether or not earlier ones were acknowledged (open loop)."""
    loop = asyncio.get_running_loop()
    total = int(rate_per_min * seconds / 60)
    interval = 60.0 / rate_per_min
    started = loop.time()
    in_flight: set[asyncio.Task[None]] = set()

    async def one(key: str, record: RawMail) -> None:
        at = time.time() * 1000  # librdkafka stamps CreateTime in produce(), microseconds after this
        try:
            delivery = await publisher.publish(RAW_MAIL, key, record)
        except PublishError as exc:
            sent.failures += 1
            print(f"load: a mail was not sent: {exc}", file=sys.stderr)
            return
        sent.at[(delivery.partition, delivery.offset)] = at

    for i in range(total):
        delay = started + i * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        planned = plan.next()
        key, record = raw_mail(run, planned)
        task = asyncio.create_task(one(key, record))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        sent.count += 1
        sent.repeats += planned.repeat
    if in_flight:
        await asyncio.gather(*in_flight)


# ------------------------------------------------------------------------------------------- stamping
def read_topic(client: dict[str, Any], topic: str, handle: Callable[[Message], None]) -> int:
    """Every record of ``topic`` up to its end offsets now, in no particular order; returns how many."""
    consumer = Consumer({**client, "group.id": f"load-read-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "fetch.message.max.bytes": 16 * 1024 * 1024})
    try:
        parts = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        remaining = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in remaining])
        count = 0
        deadline = time.monotonic() + 300
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                handle(msg)
                count += 1
                if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                    remaining.discard(msg.partition() or 0)
        return count
    finally:
        consumer.close()


def stamp(client: dict[str, Any], codec: Codec, prefix: str, sent: Sent, tenants: set[str],
          notified: dict[str, float], triggers: UpdateTriggers | None = None) -> Stamps:
    """The first record of each mail / incident on each topic, by broker CreateTime, for ``tenants`` only;
    ``triggers`` counts what should edit a first response (``benchmarks/load_updates.py``)."""
    stamps = Stamps(sent=dict(sent.at), notified=dict(notified))
    raw_topic = RAW_MAIL.full_name(prefix)

    def first(table: dict[Any, float], key: Any, at: float) -> None:
        if key not in table or at < table[key]:
            table[key] = at

    def on_normalized(msg: Message) -> None:
        event = codec.decode(msg.value() or b"", AlertEvent, topic=NORMALIZED.full_name(prefix))
        src = event.source
        if event.tenant in tenants and src.topic == raw_topic and src.partition is not None \
                and src.offset is not None:
            first(stamps.normalized, (src.partition, src.offset), float(msg.timestamp()[1]))

    def on_incident(msg: Message) -> None:
        incident = codec.decode(msg.value() or b"", Incident, topic=INCIDENTS.full_name(prefix))
        src = incident.event.source
        if incident.tenant not in tenants or incident.count != 1 or src.partition is None or src.offset is None:
            return
        at = float(msg.timestamp()[1])
        known = stamps.opened.get(incident.incident_id)
        if known is None or at < known[1]:
            stamps.opened[incident.incident_id] = ((src.partition, src.offset), at)

    def on_rca(msg: Message) -> None:
        result = codec.decode(msg.value() or b"", RcaResult, topic=RCA_RESULT.full_name(prefix))
        if triggers is not None and result.tenant in tenants:
            triggers.rca(result)
        if result.tenant in tenants and result.engine == Engine.POLICY:
            first(stamps.rca, result.incident_id, float(msg.timestamp()[1]))

    def on_action(msg: Message) -> None:
        action = codec.decode(msg.value() or b"", ActionEvent, topic=ACTIONS.full_name(prefix))
        if action.tenant in tenants:
            first(stamps.actions, action.incident_id, float(msg.timestamp()[1]))
            if triggers is not None:
                triggers.action(action)

    for spec, handle in ((NORMALIZED, on_normalized), (INCIDENTS, on_incident), (RCA_RESULT, on_rca),
                         (ACTIONS, on_action)):
        read_topic(client, spec.full_name(prefix), handle)
    return stamps


# ------------------------------------------------------------------------------------------- the run
def caught_up(samples: list[Sample], quiet: int = 2) -> bool:
    """The last ``quiet`` + 1 samples show no lag of the worker or executor and no new records anywhere."""
    if len(samples) <= quiet:
        return False
    last = samples[-(quiet + 1):]
    return all(not any(s.lag.values()) for s in last) and all(s.ends == last[0].ends for s in last)


def machine() -> str:
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs{mem}, Python {platform.python_version()}, shared with other engineers' "
            "runs (load average per sample)")


def tree() -> str:
    """The commit measured, and whether the code the worker runs had uncommitted changes (a shared checkout)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "streams", "schemas", "policies", "producers",
                                "executors"], cwd=ROOT, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"{head} + uncommitted changes in {len(dirty.splitlines())} files" if dirty else head


def run(label: str, rate_per_min: float, minutes: float, tenants: int, dup_ratio: float, *,
        drain_minutes: float, sample_every_s: float, plot_path: Path | None,
        role_env: Mapping[str, str] | None = None, cap_policy_times: timedelta | None = None) -> dict[str, Any]:
    measured_tree = tree()  # at the start: the code the processes load, not what the checkout holds an hour later
    names = [f"tenant{i}" for i in range(tenants)]
    prefix = f"load-{uuid.uuid4().hex[:8]}."
    run = run_id()
    slack = StampedSlack()
    # The roles' logs outlive the run (build/ is not in git): a stall or a crash under load must be readable.
    logs = ROOT / "build" / "load-logs" / label
    shutil.rmtree(logs, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="rcaflow-load-") as tmp_name, \
            serve(slack.app(), "slack-standin") as slack_base:
        tmp = Path(tmp_name)
        with bench_broker(tmp) as (bootstrap, broker_kind):
            chat_env: dict[str, str] = {}
            for tenant in names:
                env_name = f"RCAFLOW_NOTIFY__TENANTS__{tenant.upper()}__SLACK__"
                chat_env |= {f"{env_name}TOKEN": BOT_TOKEN, f"{env_name}CHANNEL": "C0123",
                             f"{env_name}API_BASE": f"{slack_base}/api"}
            retention_env = dict(role_env or {})
            if cap_policy_times is not None:
                policies = write_capped_policies(tmp / "policies.yaml", cap_policy_times)
                retention_env["RCAFLOW_POLICIES_FILE"] = str(policies)
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
                   "RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"), "RCAFLOW_WORKER__METRICS_PORT": "0",
                   "RCAFLOW_EXECUTOR__METRICS_PORT": "0", "RCAFLOW_LOG_LEVEL": "WARNING", **chat_env,
                   **retention_env}
            settings = Settings(kafka=KafkaSettings(topic_prefix=prefix, bootstrap_servers=bootstrap))
            client = client_config(settings.kafka, bootstrap)
            codec = make_codec(None)
            with Stack(settings, roles=("worker", "executor"), env=env, log_dir=logs) as stack:
                publisher = KafkaPublisher(bootstrap, codec, prefix, producer_config(stack.settings.kafka))
                sent = Sent()
                sampler = Sampler(
                    client, {spec.name: spec.full_name(prefix) for spec in SAMPLED},
                    {"worker": f"{prefix}{APP_ID}", "executor": f"{prefix}{settings.executor.group_id}"},
                    {role: child.pid for role, child in stack.children.items()},
                    lambda: sent.count, counters={"notified": lambda: slack.posts}, prefix=prefix,
                    every_s=sample_every_s)
                sampler.total_s = minutes * 60
                try:
                    # Warm-up: group joins and the first evidence/policy calls stay out of the numbers.
                    warm = MailPlan([WARMUP_TENANT], 0.0)
                    for _ in range(3):
                        publisher.publish_sync(RAW_MAIL, *raw_mail(run, warm.next()), timeout=60)
                    wait_quiet(bootstrap, [ACTIONS.full_name(prefix)], 3, quiet_s=3.0, timeout=300)
                    stack.check()
                    keep_uncompacted(client, list(changelog_topics(client, f"{prefix}{APP_ID}").values()),
                                     int((minutes + drain_minutes + 30) * 60_000))
                    load_before = load()
                    print(f"load {label}: {rate_per_min:.0f} mails/min for {minutes} min over {tenants} tenants, "
                          f"{dup_ratio:.0%} repeats; broker {broker_kind}, load average {load_before}",
                          file=sys.stderr, flush=True)
                    sampler.start()
                    started_ms = time.time() * 1000  # the wall clock of the samples' t_s 0 (the changelogs')
                    plan = MailPlan(names, dup_ratio)
                    asyncio.run(send_open_loop(publisher, plan, run, rate_per_min, minutes * 60, sent))
                    load_s = sampler.elapsed_s()
                    drain_deadline = time.monotonic() + drain_minutes * 60
                    while time.monotonic() < drain_deadline and not caught_up(sampler.samples):
                        stack.check()
                        time.sleep(1.0)
                    drained = caught_up(sampler.samples)
                    drain_s = sampler.elapsed_s() - load_s
                    sampler.stop()
                    load_after = load()
                    stack.check()
                    triggers = UpdateTriggers()
                    stamps = stamp(client, codec, prefix, sent, set(names), slack.first_post_ms, triggers)
                    tables = table_histories(client, f"{prefix}{APP_ID}",
                                             [started_ms + s.t_s * 1000 for s in sampler.samples])
                finally:
                    # Also on Ctrl-C / SIGTERM: nothing of ours may keep talking to a broker being stopped.
                    sampler.stop()
                    publisher.close_sync(timeout=5.0)
    samples = sampler.samples
    points = series(samples)
    steady = sustained(samples, load_s, skip_s=min(30.0, load_s / 4))
    measured = capacity(steady, rate_per_min, (sent.count - sent.repeats) / max(1, sent.count))
    result: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "broker": broker_kind,
        "machine": machine(),
        "tree": measured_tree,
        "logs": str(logs.relative_to(ROOT)),
        "options": {"rate_per_min": round(rate_per_min, 1), "minutes": minutes, "tenants": tenants,
                    "dup_ratio": dup_ratio, "sample_every_s": sample_every_s, "drain_minutes": drain_minutes,
                    "role_env": dict(role_env or {}),
                    "cap_policy_times": None if cap_policy_times is None else str(cap_policy_times)},
        "mails_sent": sent.count,
        "send_failures": sent.failures,
        "repeats_sent_ratio": round(sent.repeats / max(1, sent.count), 3),
        "new_alerts_sent": sent.count - sent.repeats,
        "load_seconds": round(load_s, 1),
        "caught_up": drained,
        "drain_seconds": round(drain_s, 1),
        "load_avg_before": load_before,
        "load_avg_during_mean": round(sum(s.load1 for s in samples) / max(1, len(samples)), 2),
        "load_avg_after": load_after,
        "completed": {"normalized_mails": len(stamps.normalized), "incidents_opened": len(stamps.opened),
                      "rca_results": len(stamps.rca), "with_actions": len(stamps.actions),
                      "notified_in_chat": len(stamps.notified), "chat_updates": slack.updates,
                      "chat_update_triggers": triggers.report(slack.updates),
                      "dead_letters": samples[-1].ends.get(DEAD_LETTER.name) if samples else None},
        "sustained": steady,
        "rss_second_half": rss_second_half(samples, load_s),
        "tables": {name: history.as_json() for name, history in tables.items()},
        **measured,
        "latency": stage_latencies(stamps),
        "series": points,
        "table_rows_series": {"t_s": [s.t_s for s in samples],
                              **{name: history.rows for name, history in tables.items()}},
    }
    if plot_path is not None:
        title = (f"rcaflow load '{label}': {rate_per_min:.0f} mails/min offered for {minutes} min, {tenants} "
                 f"tenants, {dup_ratio:.0%} repeats; {broker_kind} broker; {machine().split(',')[0]}; "
                 f"load avg during {result['load_avg_during_mean']}")
        plot(points, plot_path, title, load_s=load_s,
             table_rows=([s.t_s for s in samples], {name: h.rows for name, h in tables.items()}))
        result["plot"] = str(plot_path.relative_to(ROOT) if plot_path.is_relative_to(ROOT) else plot_path)
    return result


def capacity_from(out: Path, label: str = "overload") -> float:
    """The capacity a saturated earlier run measured (``"load"`` → ``label`` in ``out``)."""
    try:
        entry = json.loads(out.read_text(encoding="utf-8"))[RESULTS_KEY][label]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise SystemExit(f"load bench: no '{label}' run in {out} to take the capacity from ({exc!r}); run "
                         f"--label {label} with a rate over capacity first") from exc
    capacity = entry.get("capacity_mails_per_min")
    if not capacity:
        raise SystemExit(f"load bench: the '{label}' run in {out} was not saturated (the worker's lag did not "
                         "grow), so it "
                         "measured no capacity: run it with a higher --rate")
    return float(capacity)


def save(out: Path, label: str, result: dict[str, Any]) -> None:
    """Under ``"load"`` → ``label``, keeping the other labels' runs."""
    runs: dict[str, Any] = {}
    if out.exists():
        try:
            previous = json.loads(out.read_text(encoding="utf-8")).get(RESULTS_KEY)
        except json.JSONDecodeError:
            previous = None
        if isinstance(previous, dict):
            runs = previous
    runs[label] = result
    write_results(RESULTS_KEY, runs, out)


def env_pair(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--env``; only rcaflow's own settings, so a typo cannot silently change something else."""
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("RCAFLOW_"):
        raise argparse.ArgumentTypeError(f"{text!r} is not RCAFLOW_<SETTING>=<value>")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="overload", help="name of this run under \"load\" in --out")
    parser.add_argument("--rate", type=float, default=4000.0, help="mails per minute offered (open loop)")
    parser.add_argument("--rate-of-capacity", type=float, default=None, metavar="FRACTION",
                        help="instead of --rate: this fraction of the capacity the 'overload' run in --out measured")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long mails are sent")
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--dup-ratio", type=float, default=0.7,
                        help="share of mails that repeat an alert still inside its dedup window")
    parser.add_argument("--drain-minutes", type=float, default=3.0,
                        help="after sending, how long to wait at most for the worker to catch up")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=None, help="PNG (default benchmarks/load-<label>.png)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", type=env_pair,
                        help="a setting for the worker and executor (e.g. RCAFLOW_WORKER__PRUNE_MARGIN_S=300); "
                             "repeatable, recorded in the results")
    parser.add_argument("--cap-policy-times", type=parse_duration, default=None, metavar="DURATION",
                        help="run on a copy of the bundled policy with every dedup window, cooldown and approval "
                             "TTL at most this (e.g. 5m), so table rows are pruned within the run")
    args = parser.parse_args(argv)
    rate = args.rate
    if args.rate_of_capacity is not None:
        rate = round(capacity_from(args.out) * args.rate_of_capacity, 1)
    plot_path = args.plot or ROOT / "benchmarks" / f"load-{args.label.replace('_', '-')}.png"
    try:
        with terminate_as_exit():
            result = run(args.label, rate, args.minutes, args.tenants, args.dup_ratio,
                         drain_minutes=args.drain_minutes, sample_every_s=args.sample_every, plot_path=plot_path,
                         role_env=dict(args.env), cap_policy_times=args.cap_policy_times)
    except (KeyboardInterrupt, Terminated) as exc:
        # The with-blocks above have stopped the worker, the executor and the broker by now.
        print("load bench: interrupted; worker, executor and broker stopped, nothing written", file=sys.stderr)
        return int(exc.code) if isinstance(exc, Terminated) and isinstance(exc.code, int) else 130
    if args.rate_of_capacity is not None:
        result["rate_of_capacity"] = args.rate_of_capacity
    save(args.out, args.label, result)
    print(json.dumps({k: v for k, v in result.items() if k != "series"}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
