"""Which label names an alert's workload: the first workload-like label that is not a network address.

Prometheus' ``instance`` is ``host:port`` (``10.6.0.12:8880``, ``[fd00::1]:9090``): the target that was
scraped, not a Kubernetes object. Taken as the workload it would name a pod that does not exist in
every query and action, so an address is never a workload; it stays in ``instance`` where it came from.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

#: Labels that name the workload when there is no ``workload`` label, most specific first. ``instance`` is
#: last and only counts when it is a name (some exporters set it to the pod name), never an address.
WORKLOAD_FROM: tuple[str, ...] = ("statefulset", "deployment", "daemonset", "pod", "service", "instance")


def is_network_address(value: str) -> bool:
    """True for ``ip``, ``ip:port``, ``host:port``, ``[ipv6]:port`` and bare IPv6: a colon is never part of a
    Kubernetes name, and an IP literal is an address even where DNS-1123 would accept it."""
    text = value.strip()
    if ":" in text:
        return True
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def with_workload(labels: Mapping[str, str], sources: Iterable[str] = WORKLOAD_FROM) -> dict[str, str]:
    """``labels`` with ``workload`` set from the first of ``sources`` that holds a name, not an address.

    A given ``workload`` that is an address is removed (kept as ``instance`` unless that is set), so the
    fingerprint and every template see no workload rather than a wrong one.
    """
    out = dict(labels)
    given = out.get("workload", "")
    if given and is_network_address(given):
        del out["workload"]
        out.setdefault("instance", given)
    if out.get("workload"):
        return out
    for name in sources:
        value = out.get(name, "")
        if value and not is_network_address(value):
            out["workload"] = value
            break
    return out
