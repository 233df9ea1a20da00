"""The one fingerprint function every ingest path uses (mail, webhook, POST /events, MS Graph).

An alert's identity is what every channel that reports it can carry. Mail tables carry cluster, namespace
and one object cell (the workload, or for an alert about no workload the node or address it is about),
while webhooks and Alertmanager's own mail carry every label; keying on that fixed, ordered set is what lets
a mail and a webhook about the same alert dedup against each other, and an alert about no workload (a node,
an etcd member, a vmalert rule group) still tell its instances apart. The contract is docs/architecture.md
("Identity and at-least-once").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from producers.workload import with_workload

IDENTITY_LABELS: tuple[str, ...] = ("cluster", "namespace", "workload")

#: When an alert names no workload, the first of these it carries stands in the workload's place: what the
#: alert is about. ``instance`` is kept as it is, an address included (``10.6.0.12:8880`` names the scrape
#: target). Ordered so that a table row whose object cell holds that value gets the same identity.
TARGET_LABELS: tuple[str, ...] = ("node", "instance", "job")

#: On an alert without workload, labels that tell apart alerts about one target (vmalert's RecordingRulesError
#: is ``by (job, instance, group)``: two failing groups on one vmalert are two alerts). Added as ``name=value``
#: in this order, only when present.
QUALIFIER_LABELS: tuple[str, ...] = ("group",)


@dataclass(frozen=True, slots=True)
class AlertIdentity:
    """The labels that make one alert itself, in the order they are hashed.

    ``target`` is the workload, else the first of :data:`TARGET_LABELS`; ``target_from`` names which label it
    came from ("" when none); ``qualifiers`` are the ``name=value`` pairs of :data:`QUALIFIER_LABELS`.
    """

    cluster: str
    namespace: str
    target: str
    target_from: str
    qualifiers: tuple[str, ...]


def alert_identity(labels: Mapping[str, str]) -> AlertIdentity:
    """The identity of an alert with these labels, whichever channel brought them.

    The workload is derived here too (the same rule as every adapter: ``producers/workload.py``), so a
    channel that prepared its labels differently (``POST /events`` keeps the labels as sent) still agrees.
    """
    prepared = with_workload(labels)
    cluster, namespace = prepared.get("cluster", ""), prepared.get("namespace", "")
    workload = prepared.get("workload", "")
    if workload:
        return AlertIdentity(cluster, namespace, workload, "workload", ())
    source = next((name for name in TARGET_LABELS if prepared.get(name)), "")
    qualifiers = tuple(f"{name}={prepared[name]}" for name in QUALIFIER_LABELS if prepared.get(name))
    return AlertIdentity(cluster, namespace, prepared.get(source, ""), source, qualifiers)


def alert_fingerprint(tenant: str, alert: str, labels: Mapping[str, str]) -> str:
    """Stable 16-hex-digit id of (tenant, alert name, cluster, namespace, target[, qualifiers]).

    For an alert with a workload this is the hash of (tenant, alert, cluster, namespace, workload) it has
    always been; only alerts without one changed (docs/upgrading.md).
    """
    identity = alert_identity(labels)
    parts = [tenant, alert, identity.cluster, identity.namespace, identity.target, *identity.qualifiers]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def event_id(*parts: str | int) -> str:
    """Deterministic event id, so a replayed or re-delivered input yields the same id."""
    joined = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:24]
