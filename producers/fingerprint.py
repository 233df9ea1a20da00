"""The one fingerprint function every ingest path uses (mail, webhook, POST /events).

Mail tables only carry cluster/namespace/workload, while webhooks carry every
label; keying on a fixed identity set is what lets a mail and a webhook about
the same alert dedup against each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

IDENTITY_LABELS: tuple[str, ...] = ("cluster", "namespace", "workload")


def alert_fingerprint(tenant: str, alert: str, labels: Mapping[str, str]) -> str:
    """Stable 16-hex-digit id of (tenant, alert name, cluster, namespace, workload)."""
    parts = [tenant, alert, *(labels.get(name, "") for name in IDENTITY_LABELS)]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def event_id(*parts: str | int) -> str:
    """Deterministic event id, so a replayed or re-delivered input yields the same id."""
    joined = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:24]
