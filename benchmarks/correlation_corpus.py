"""A labelled alert corpus for the correlation benchmark: scenarios of related and unrelated alerts, every channel.

Deterministic (fixed seed). Each *problem* is one real failure with its alerts (the ground truth: alerts of one
problem belong in one group, alerts of two problems never). Scenarios:

- ``storm``: vminsert rejects writes → remote storage failures → remote write behind → desired shards, over
  several Prometheus replicas of one cluster (10-18 alerts, downstream ones usually seen first);
- ``node``: a log flood on a node and etcd latency of the etcd member on that node (its ``instance`` IP:port);
- ``rules``: a vmalert reload failure and the rule evaluation failures it causes;
- ``single``: one alert of any class alone;
- decoys beside them, at the same time: the same storm classes in another cluster, the same cluster name in
  another tenant, a log flood and etcd latency on *different* nodes of one cluster, a Jenkins restart.

Every alert repeats as Alertmanager would send it: webhook notifications (repeats with the same ``startsAt``),
the default Alertmanager mail, the DCE 5 digest mail (a table of the problem's firing alerts), ``POST /events``,
and finally a resolved notification on one channel. ``python -m benchmarks.correlation_corpus`` writes the
fixture (``tests/fixtures/correlation/corpus.json``); :func:`render` turns a delivery into what the API or the
mail parser receives.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "correlation" / "corpus.json"
SEED = 17
T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
CHANNELS = ("webhook", "mail_default", "mail_digest", "events")

CHAIN = [("VminsertWriteErrors", "vminsert_write_errors"),
         ("PrometheusRemoteStorageFailures", "prometheus_remote_storage_failures"),
         ("PrometheusRemoteWriteBehind", "prometheus_remote_write_behind"),
         ("PrometheusRemoteWriteDesiredShards", "prometheus_remote_write_desired_shards")]
SINGLES = [("JenkinsRestarted", "amamba-system", "amamba-jenkins-{n}"),
           ("RecordingRulesError", "insight-system", "vmalert-insight-{n}"),
           ("PrometheusRemoteWriteBehind", "insight-system", "prometheus-solo-{n}"),
           ("LogFlood", "logging", "fluent-bit-{n}"),
           ("etcdHighFsyncDurations", "kube-system", "etcd-solo-{n}")]


@dataclass
class Alert:
    id: int
    tenant: str
    alert: str
    problem: str
    cluster: str
    namespace: str
    workload: str
    labels: dict[str, str] = field(default_factory=dict)  # beyond cluster/namespace/workload (node, instance)


@dataclass
class Delivery:
    at: float  # minutes after T0
    channel: str
    tenant: str
    status: str
    alerts: list[int]


@dataclass
class Corpus:
    seed: int
    alerts: list[Alert] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    #: problem id -> scenario kind (storm, node, rules, single, decoy-*)
    problems: dict[str, str] = field(default_factory=dict)

    def add(self, tenant: str, problem: str, alert: str, cluster: str, namespace: str, workload: str,
            **labels: str) -> Alert:
        item = Alert(len(self.alerts), tenant, alert, problem, cluster, namespace, workload, dict(labels))
        self.alerts.append(item)
        return item


def _deliver(corpus: Corpus, rng: random.Random, start: float, alerts: list[Alert], first_seen: list[float]) -> None:
    """The deliveries of one problem: each alert first on a random channel, then repeats, then resolved."""
    tenant = alerts[0].tenant
    end = start + max(first_seen) + rng.uniform(8, 20)
    for alert, offset in zip(alerts, first_seen, strict=True):
        corpus.deliveries.append(Delivery(start + offset, rng.choice(CHANNELS), tenant, "firing", [alert.id]))
    ids = [a.id for a in alerts]

    def firing_at(t: float) -> list[int]:
        return [a.id for a, off in zip(alerts, first_seen, strict=True) if start + off <= t]

    t = start + max(first_seen) + 1
    while t < end:  # Alertmanager's repeats (group_interval) and the digest every 5 minutes
        corpus.deliveries.append(Delivery(t, "webhook", tenant, "firing", firing_at(t)))
        if rng.random() < 0.5:
            corpus.deliveries.append(Delivery(t + 0.2, "mail_digest", tenant, "firing", firing_at(t)))
        if rng.random() < 0.3:
            corpus.deliveries.append(Delivery(t + 0.3, "mail_default", tenant, "firing", firing_at(t)))
        if rng.random() < 0.2:
            corpus.deliveries.append(Delivery(t + 0.4, "events", tenant, "firing", firing_at(t)))
        t += rng.uniform(2, 5)
    corpus.deliveries.append(Delivery(end, rng.choice(("webhook", "mail_default", "mail_digest")), tenant,
                                      "resolved", ids))


def generate(seed: int = SEED, storms: int = 14, nodes: int = 10, rules: int = 8, singles: int = 12) -> Corpus:
    rng = random.Random(seed)
    corpus = Corpus(seed)
    clock = 0.0
    serial = 0

    def problem(kind: str) -> str:
        nonlocal serial
        serial += 1
        corpus.problems[f"p{serial:03d}"] = kind
        return f"p{serial:03d}"

    def storm(tenant: str, cluster: str, start: float, kind: str) -> None:
        pid = problem(kind)
        alerts, seen = [], []
        for v in range(rng.randint(1, 2)):
            alerts.append(corpus.add(tenant, pid, CHAIN[0][0], cluster, "insight-system",
                                     f"vminsert-{pid}-{v}", instance=f"10.{serial % 200}.1.{v + 10}:8480"))
            seen.append(rng.uniform(2, 8))  # the cause is often noticed after its effects
        for r in range(rng.randint(3, 4)):
            for name, _ in CHAIN[1:]:
                alerts.append(corpus.add(tenant, pid, name, cluster, "insight-system", f"prometheus-{pid}-{r}",
                                         instance=f"10.{serial % 200}.2.{r + 10}:9090"))
                seen.append(rng.uniform(0, 6))
        _deliver(corpus, rng, start, alerts, seen)

    for i in range(storms):
        clock += rng.uniform(30, 60)
        cluster = f"cluster-{i % 5}"
        storm("acme", cluster, clock, "storm")
        if i % 2 == 0:  # the same failure shape, at the same time, in another cluster: another problem
            storm("acme", f"cluster-{(i % 5) + 5}", clock + rng.uniform(0, 3), "decoy-other-cluster")
        if i % 3 == 0:  # ... and in another tenant with the same cluster name
            storm("globex", cluster, clock + rng.uniform(0, 3), "decoy-other-tenant")
    for i in range(nodes):
        clock += rng.uniform(30, 60)
        cluster = f"cluster-{i % 5}"
        pid = problem("node")
        ip = f"10.60.{i}.5"
        alerts = [corpus.add("acme", pid, "LogFlood", cluster, "logging", f"fluent-bit-{pid}", node=ip),
                  corpus.add("acme", pid, "etcdHighFsyncDurations", cluster, "kube-system", f"etcd-{pid}",
                             instance=f"{ip}:2379")]
        _deliver(corpus, rng, clock, alerts, [0.0, rng.uniform(0.5, 6)])
        decoy = problem("decoy-other-node")  # etcd latency on another node of the same cluster, same time
        other = corpus.add("acme", decoy, "etcdHighFsyncDurations", cluster, "kube-system", f"etcd-{decoy}",
                           instance=f"10.61.{i}.9:2379")
        _deliver(corpus, rng, clock + rng.uniform(0, 4), [other], [0.0])
    for i in range(rules):
        clock += rng.uniform(30, 60)
        pid = problem("rules")
        cluster = f"cluster-{i % 5}"
        alerts = [corpus.add("acme", pid, "VMAlertConfigReloadFailure", cluster, "insight-system", f"vmalert-{pid}")]
        alerts += [corpus.add("acme", pid, "RecordingRulesError", cluster, "insight-system", f"vmalert-{pid}-g{g}")
                   for g in range(rng.randint(1, 3))]
        _deliver(corpus, rng, clock, alerts, [rng.uniform(0, 5) for _ in alerts])
        jenkins = problem("decoy-unrelated-class")  # same cluster, same time, no rule relates it
        _deliver(corpus, rng, clock + 1, [corpus.add("acme", jenkins, "JenkinsRestarted", cluster, "amamba-system",
                                                      f"amamba-jenkins-{jenkins}")], [0.0])
    for i in range(singles):
        clock += rng.uniform(30, 60)
        name, namespace, workload = SINGLES[i % len(SINGLES)]
        pid = problem("single")
        labels = {"node": f"10.70.{i}.5"} if name == "LogFlood" else {}
        _deliver(corpus, rng, clock, [corpus.add("acme", pid, name, f"cluster-{i % 5}", namespace,
                                                 workload.format(n=pid), **labels)], [0.0])
    corpus.deliveries.sort(key=lambda d: (d.at, d.channel, d.alerts))
    return corpus


def dump(corpus: Corpus) -> dict[str, Any]:
    return {"seed": corpus.seed, "t0": T0.isoformat(), "problems": corpus.problems,
            "alerts": [asdict(a) for a in corpus.alerts], "deliveries": [asdict(d) for d in corpus.deliveries]}


def load(data: dict[str, Any]) -> Corpus:
    return Corpus(data["seed"], [Alert(**a) for a in data["alerts"]], [Delivery(**d) for d in data["deliveries"]],
                  dict(data["problems"]))


def at(delivery: Delivery) -> datetime:
    return T0 + timedelta(minutes=delivery.at)


def render(corpus: Corpus, delivery: Delivery, serial: int) -> tuple[str, Any]:
    """What the channel carries: ("webhook", body dict) / ("events", [seed dicts]) / ("mail", RFC 822 bytes)."""
    alerts = [corpus.alerts[i] for i in delivery.alerts]
    when = at(delivery)
    if delivery.channel == "webhook":
        return "webhook", {
            "version": "4", "groupKey": f"{{}}:{{problem=\"{alerts[0].problem}\"}}", "status": delivery.status,
            "receiver": "rcaflow",
            "alerts": [{"status": delivery.status,
                        "labels": _present({"alertname": a.alert, "cluster": a.cluster, "namespace": a.namespace,
                                            "pod": a.workload, "severity": "critical", **a.labels}),
                        "annotations": {"description": f"{a.alert} on {a.workload}"},
                        # Alertmanager keeps startsAt across repeats: its repeats are the same event.
                        "startsAt": (T0 + timedelta(minutes=int(delivery.at) // 60 * 60)).isoformat(),
                        "fingerprint": f"{a.id:016x}"} for a in alerts]}
    if delivery.channel == "events":
        return "events", [{"alert": a.alert, "severity": "P2",
                           "labels": _present({"cluster": a.cluster, "namespace": a.namespace,
                                               "workload": a.workload, **a.labels}),
                           "metrics": {"times": 1, "first_occur": when.isoformat()}} for a in alerts]
    return "mail", _mail(alerts, delivery, when, serial)


def _present(labels: dict[str, str]) -> dict[str, str]:
    """An alert about no workload has no namespace/pod label at all, rather than an empty one."""
    return {k: v for k, v in labels.items() if v}


def digest_object(alert: Alert) -> str:
    """What the digest's object (对象/workload) cell shows for an alert about no workload: its node, else its
    scrape target, else its job. The digest has no other column for it (docs/architecture.md, identity)."""
    return alert.labels.get("node") or alert.labels.get("instance") or alert.labels.get("job") or ""


def _mail(alerts: list[Alert], delivery: Delivery, when: datetime, serial: int) -> bytes:
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.mail.make_corpus import EN_COLUMNS, A, am_html, envelope, part, table_html

    local = (when + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
    items = [A(alert=a.alert, level="严重", namespace=a.namespace, workload=a.workload, first=local, times=1,
               desc=f"{a.alert} on {a.workload}", component=None, status=delivery.status, cluster=a.cluster,
               extra_labels=dict(a.labels)) for a in alerts]
    if delivery.channel == "mail_digest":
        objects = [replace(item, workload=a.workload or digest_object(a))
                   for item, a in zip(items, alerts, strict=True)]
        html = table_html(objects, columns=EN_COLUMNS)
        subject = "Control Cluster Details 告警汇总"
    else:
        word = "FIRING" if delivery.status == "firing" else "RESOLVED"
        html = am_html(items, f"{{}}:{{problem=\"{alerts[0].problem}\"}}")
        subject = f"[{word}:{len(alerts)}] {alerts[0].alert} ({alerts[0].cluster})"
    return envelope(part(html, "html", "utf-8", "qp"), subject, f"corr-{serial}@alerts.example.test")


def main() -> None:
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(dump(generate()), ensure_ascii=False, separators=(",", ":")) + "\n",
                       encoding="utf-8")
    print(f"wrote {FIXTURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
