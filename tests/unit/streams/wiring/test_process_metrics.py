"""Build info and the lag arithmetic: what every process says about itself on /metrics."""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, generate_latest

from streams.stages.metrics import StageMetrics
from streams.wiring.build_info import rcaflow_version, register_build_info
from streams.wiring.consumer_lag import partition_lag


def test_build_info_is_one_series_with_version_and_python_even_when_registered_twice() -> None:
    registry = CollectorRegistry()
    register_build_info(registry)
    register_build_info(registry)
    page = generate_latest(registry).decode()
    line = f'rcaflow_build_info{{python="{platform.python_version()}",version="{rcaflow_version()}"}} 1.0'
    assert line in page
    assert page.count("rcaflow_build_info{") == 1
    assert rcaflow_version() != "unknown"  # the checkout is installed (pip install -e .)


def test_lag_sums_end_minus_committed_over_partitions_and_never_goes_negative() -> None:
    committed = {("actions", 0): 5, ("actions", 1): 10, ("incidents", 0): 3, ("incidents", 1): -1001}
    ends = {("actions", 0): 8, ("actions", 1): 9, ("incidents", 0): 3, ("incidents", 1): 40}
    assert partition_lag(committed, ends) == {"actions": 3, "incidents": 0}


def test_tenant_label_takes_only_configured_tenants() -> None:
    metrics = StageMetrics(CollectorRegistry(), tenants=["acme", "globex"])
    assert [metrics.tenant_label(t) for t in ("acme", "globex", "evil\"}{", "")] == [
        "acme", "globex", "_other", "_other"]
