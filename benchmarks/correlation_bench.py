"""How well incidents are grouped: the labelled corpus through the real parsers, dedup and correlation stages.

Every delivery of :mod:`benchmarks.correlation_corpus` goes in as its channel carries it (an Alertmanager webhook
body, ``POST /events`` JSON, a default-template or DCE 5 digest mail, parsed by the real mail parser), is
classified by the bundled policy, deduplicated and correlated by the worker's own stages (their tables kept in
dicts, the clock at each delivery's time). Reported, against the fixture's ground truth (one problem = one
true group):

- ``compression``: 1 - incidents / events (dedup) and 1 - groups / events (what a person is notified of),
  overall and on the storm scenarios;
- pairwise grouping precision / recall / F1 over the incidents;
- ``merged_away``: problems that ended up in a group led by another problem (must be 0);
- ``lost``: alerts of the corpus with no incident (must be 0).

``--e2e`` also runs a smaller corpus end to end: a real worker on the embedded broker (or
``KAFKA_BOOTSTRAP_SERVERS``), mails onto raw-mail, webhook and ``/events`` alerts onto normalized as the API puts
them, a Slack Web API stand-in counting the messages; the incidents topic is read back and scored the same way.
The worker's clock is the wall clock, so that corpus is sent at once: its problems are chosen so that none of them
would be related by being squeezed into one window (one storm and one rule problem per cluster, no singles).

``python -m benchmarks.correlation_bench [--e2e]`` (``make bench-correlation``) writes
``benchmarks/results.json`` key ``correlation``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from itertools import combinations
from pathlib import Path
from typing import Any

from benchmarks.correlation_corpus import FIXTURE, Corpus, at, generate, load, render
from benchmarks.results import RESULTS, write_results
from policies import PolicySet, load_policies
from producers.alertmanager import WebhookBody, webhook_to_events
from producers.fingerprint import event_id
from producers.mail import parse_mail
from producers.seed_event import SeedEvent, seed_to_event
from schemas.records import AlertEvent, EventSource, Incident, SourceKind
from streams.stages.core import StageContext
from streams.stages.correlate import Correlate
from streams.stages.dedup import Dedup, table_key


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now().astimezone()

    def __call__(self) -> datetime:
        return self.now


def events_of(corpus: Corpus, index: int) -> list[AlertEvent]:
    """The normalized events of one delivery, as the API or the normalize stage makes them."""
    delivery = corpus.deliveries[index]
    kind, payload = render(corpus, delivery, index)
    received = at(delivery)
    if kind == "webhook":
        return webhook_to_events(WebhookBody.model_validate(payload), tenant=delivery.tenant, received_at=received)
    if kind == "events":
        return [seed_to_event(SeedEvent.model_validate(seed), tenant=delivery.tenant, received_at=received,
                              request_id=f"{index}-{n}") for n, seed in enumerate(payload)]
    parsed = parse_mail(payload, tenant=delivery.tenant, received_at=received,
                        source=EventSource(kind=SourceKind.IMAP, mailbox="alerts@example.test"))
    return [e.model_copy(update={"event_id": event_id(delivery.tenant, "raw-mail", 0, index, n)})
            for n, e in enumerate(parsed.events)]


def run(corpus: Corpus, policies: PolicySet | None = None) -> tuple[list[Incident], int]:
    """Every incident record the stages sent, and how many alert events went in."""
    policies = policies or load_policies()
    clock = Clock()
    context = StageContext(clock=clock)
    dedup, correlate = Dedup(policies, context=context), Correlate(policies, context=context)
    dedup_rows: dict[str, Any] = {}
    group_rows: dict[str, Any] = {}
    records: list[Incident] = []
    events = 0
    for index, delivery in enumerate(corpus.deliveries):
        clock.now = at(delivery)
        for parsed in events_of(corpus, index):
            events += 1
            event = parsed.model_copy(update={"alert_class": policies.classify(parsed)})
            result = dedup(event, dedup_rows.get(table_key(event)))
            if result.state is not None:
                dedup_rows[table_key(event)] = json.loads(json.dumps(result.state))
            for out in result.outputs:
                if not isinstance(out.record, Incident):
                    continue
                key = correlate.route_key(out.record)
                placed = correlate(out.record, group_rows.get(key))
                if placed.state is not None:
                    group_rows[key] = json.loads(json.dumps(placed.state))
                records += [o.record for o in placed.outputs if isinstance(o.record, Incident)]
    return records, events


def _truth(corpus: Corpus) -> dict[tuple[str, str, str, str, str], str]:
    return {(a.tenant, a.alert, a.cluster, a.namespace, a.workload): a.problem for a in corpus.alerts}


def score(corpus: Corpus, records: Iterable[Incident], events: int) -> dict[str, Any]:
    """Compression, pairwise precision/recall/F1 and distinct problems merged away, against the ground truth."""
    truth = _truth(corpus)
    problem_of: dict[str, str] = {}
    group_of: dict[str, str] = {}
    for record in records:
        labels = record.event.labels
        key = (record.tenant, record.event.alert, labels.get("cluster", ""), labels.get("namespace", ""),
               labels.get("workload", ""))
        problem_of[record.incident_id] = truth.get(key, f"unknown:{key}")
        group = record.group_id or record.incident_id
        if group_of.setdefault(record.incident_id, group) != group:
            raise AssertionError(f"incident {record.incident_id} changed group")
    incidents = sorted(problem_of)
    tp = fp = fn = 0
    for a, b in combinations(incidents, 2):
        same_group = group_of[a] == group_of[b]
        same_problem = problem_of[a] == problem_of[b]
        tp += same_group and same_problem
        fp += same_group and not same_problem
        fn += same_problem and not same_group
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    members: dict[str, set[str]] = defaultdict(set)
    for incident, group in group_of.items():
        members[group].add(problem_of[incident])
    merged_away = sum(len(problems) - 1 for problems in members.values())
    seen = {(a.problem, a.alert, a.workload) for a in corpus.alerts if a.problem in corpus.problems}
    found = {(problem_of[i], r.event.alert, r.event.labels.get("workload", "")) for r in records
             for i in [r.incident_id]}
    groups = len(members)
    return {
        "events": events, "incidents": len(incidents), "groups": groups, "problems": len(corpus.problems),
        "compression_events_to_incidents": round(1 - len(incidents) / events, 4) if events else 0.0,
        "compression_events_to_groups": round(1 - groups / events, 4) if events else 0.0,
        "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
        "merged_away": merged_away, "lost": len(seen - found),
        "split_problems": sum(1 for c in Counter(
            p for g in members for p in members[g]).values() if c > 1),
    }


def storm_only(corpus: Corpus) -> Corpus:
    """The storm scenarios alone (their deliveries and alerts), for the storm compression target."""
    keep = {p for p, kind in corpus.problems.items() if kind == "storm"}
    ids = {a.id for a in corpus.alerts if a.problem in keep}
    deliveries = [d for d in corpus.deliveries if set(d.alerts) <= ids]
    return Corpus(corpus.seed, corpus.alerts, deliveries, {p: k for p, k in corpus.problems.items() if p in keep})


def end_to_end(timeout: float = 600.0) -> dict[str, Any]:
    """The small corpus through a real worker on Kafka; scored like :func:`score`, plus chat messages."""
    import os
    import sys
    import tempfile
    import uuid

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from producers.publisher import KafkaPublisher
    from schemas.codec import make_codec
    from schemas.records import RawMail
    from schemas.topics import INCIDENTS, NORMALIZED, RAW_MAIL
    from streams.settings import KafkaSettings, Settings, producer_config
    from streams.wiring.supervisor import Stack
    from tests.support.loopback import serve
    from tests.support.slack import BOT_TOKEN, SlackApiStandIn

    corpus = generate(seed=23, storms=5, nodes=4, rules=4, singles=0)
    policies = load_policies()
    prefix = f"corr-{uuid.uuid4().hex[:8]}."
    standin = SlackApiStandIn()
    codec = make_codec(None)
    with serve(standin.app(), "slack-standin") as base, \
            tempfile.TemporaryDirectory(prefix="rcaflow-corr-") as tmp:
        env = {**os.environ, "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix, "RCAFLOW_WORKER__DATA_DIR": f"{tmp}/worker",
               "RCAFLOW_WORKER__METRICS_PORT": "0", "RCAFLOW_LOG_LEVEL": "WARNING",
               "RCAFLOW_SECURITY__DECISION_KEY": "correlation-bench-decision-key-0123456789abcdef",
               "RCAFLOW_TENANTS__DEFAULT__NAMESPACES": '["*"]'}
        for tenant in {a.tenant for a in corpus.alerts}:
            slack = f"RCAFLOW_NOTIFY__TENANTS__{tenant.upper()}__SLACK__"
            env |= {f"{slack}TOKEN": BOT_TOKEN, f"{slack}CHANNEL": "C0123", f"{slack}API_BASE": f"{base}/api"}
        settings = Settings(kafka=KafkaSettings(topic_prefix=prefix,
                                                bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS")))
        with Stack(settings, roles=("worker",), env=env, log_dir=Path(tmp) / "logs",
                   data_dir=Path(tmp) / "broker") as stack:
            publisher = KafkaPublisher(stack.bootstrap, codec, prefix, producer_config(stack.settings.kafka))
            started = time.perf_counter()
            events = 0
            for index, delivery in enumerate(corpus.deliveries):
                kind, payload = render(corpus, delivery, index)
                if kind == "mail":
                    events += len(events_of(corpus, index))
                    publisher.publish_sync(RAW_MAIL, f"{delivery.tenant}:m{index}", RawMail(
                        tenant=delivery.tenant, message_id=f"<corr-{index}@bench>", mailbox="alerts@example.test",
                        source=SourceKind.IMAP, received_at=at(delivery), raw=payload))
                    continue
                for parsed in events_of(corpus, index):  # what POST /webhook and POST /events publish
                    events += 1
                    event = parsed.model_copy(update={"alert_class": policies.classify(parsed)})
                    publisher.publish_sync(NORMALIZED, f"{event.tenant}:{event.fingerprint}", event)
            topic = INCIDENTS.full_name(prefix)
            consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"corr-{uuid.uuid4().hex}",
                                 "enable.auto.commit": False})
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            records: list[Incident] = []
            deadline = time.monotonic() + timeout
            quiet_since = time.monotonic()
            # Every alert has its incident and nothing new came for a while (the channels' paths differ in length,
            # so a resolved mail may overtake a firing webhook repeat: the last state need not be resolved).
            while time.monotonic() < deadline:
                stack.check()
                msg = consumer.poll(0.5)
                if msg is not None and not msg.error():
                    records.append(codec.decode(msg.value() or b"", Incident, topic=topic))
                    quiet_since = time.monotonic()
                seen = {r.incident_id for r in records}
                if len(seen) >= len(corpus.alerts) and time.monotonic() - quiet_since > 20:
                    break
            elapsed = time.perf_counter() - started
            consumer.close()
            publisher.close_sync()
            time.sleep(5)  # let the last analyses reach the chat stand-in
            posts = [b for n, b in standin.calls if n == "chat.postMessage"]
    result = score(corpus, records, events)
    groups = len({r.group_id for r in records})
    result |= {"seconds": round(elapsed, 1), "chat_top_level_messages": sum(1 for b in posts if "thread_ts" not in b),
               "chat_thread_replies": sum(1 for b in posts if "thread_ts" in b), "groups_on_incidents": groups,
               "broker": "embedded" if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else "external"}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=FIXTURE, help="the labelled corpus (generated if absent)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--e2e", action="store_true", help="also run a smaller corpus through a real worker")
    args = parser.parse_args()
    corpus = load(json.loads(args.corpus.read_text(encoding="utf-8"))) if args.corpus.exists() else generate()
    started = time.perf_counter()
    records, events = run(corpus)
    elapsed = time.perf_counter() - started
    overall = score(corpus, records, events)
    storms = storm_only(corpus)
    storm_records, storm_events = run(storms)
    storm = score(storms, storm_records, storm_events)
    result = {
        "corpus": str(args.corpus.relative_to(Path.cwd())) if args.corpus.is_relative_to(Path.cwd()) else "generated",
        "seed": corpus.seed, "deliveries": len(corpus.deliveries),
        "channels": dict(Counter(d.channel for d in corpus.deliveries)),
        "scenarios": dict(Counter(corpus.problems.values())),
        "direct": {**overall, "events_per_s": round(events / elapsed, 1)},
        "storm": storm,
        "targets": {"storm_compression_events_to_groups>=0.95": storm["compression_events_to_groups"] >= 0.95,
                    "f1>=0.93": overall["f1"] >= 0.93, "merged_away==0": overall["merged_away"] == 0,
                    "lost==0": overall["lost"] == 0},
    }
    if args.e2e:
        result["end_to_end"] = end_to_end()
    write_results("correlation", result, args.out)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
