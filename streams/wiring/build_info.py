"""``rcaflow_build_info{version,python}``: which release each process runs, for dashboards and upgrade checks."""

from __future__ import annotations

import platform
import weakref
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

_REGISTERED: weakref.WeakKeyDictionary[CollectorRegistry, Gauge] = weakref.WeakKeyDictionary()


def rcaflow_version() -> str:
    """The installed distribution's version ("unknown" from a bare checkout without metadata)."""
    try:
        return version("rcaflow")
    except PackageNotFoundError:
        return "unknown"


def register_build_info(registry: CollectorRegistry = REGISTRY) -> Gauge:
    """Set the gauge to 1 once per registry; a second call (``rcaflow run`` roles, tests) reuses it."""
    gauge = _REGISTERED.get(registry)
    if gauge is None:
        gauge = Gauge("rcaflow_build_info", "Always 1; the labels say which rcaflow and Python this process runs.",
                      ["version", "python"], registry=registry)
        _REGISTERED[registry] = gauge
    gauge.labels(rcaflow_version(), platform.python_version()).set(1)
    return gauge
