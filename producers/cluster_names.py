"""A cluster label that is an id (DCE 5: the kube-system namespace UID) to the name the tenant knows it by.

Every channel applies the same map before the fingerprint (``producers/fingerprint.py``): a webhook carrying the
UUID and a digest mail carrying the UUID or the readable name are then one alert. The id is kept as
``cluster_id`` so queries that need it can still read it.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Longest readable name kept (a label value; the map is configuration, but a cap costs nothing).
MAX_NAME = 512


def with_cluster_name(labels: Mapping[str, str], names: Mapping[str, str] | None) -> dict[str, str]:
    """``labels`` with ``cluster`` replaced by its readable name from ``names`` (matched as given, then lower-case)
    and the original value kept in ``cluster_id``; unchanged when the cluster is not in the map."""
    out = dict(labels)
    cluster = out.get("cluster")
    if not cluster or not names:
        return out
    readable = names.get(cluster) or names.get(cluster.lower())
    if readable:
        name = " ".join(readable.split())[:MAX_NAME]
        if name and name != cluster:
            out["cluster_id"] = cluster
            out["cluster"] = name
    return out
