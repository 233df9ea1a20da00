"""The one mapping from a record's tenant to the ``tenant`` label: configured tenants by name, all else bounded."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from schemas.tenant_label import OTHER_TENANT, TenantLabels
from streams.settings import Settings, TenantSettings
from streams.stages.metrics import StageMetrics, record_in_hand


def test_a_configured_tenant_keeps_its_name_and_everything_else_is_one_value() -> None:
    label = TenantLabels.of(["acme", "other"])
    assert [label(t) for t in ("acme", "other", "globex", 'evil"}{', "", None)] == [
        "acme", "other", OTHER_TENANT, OTHER_TENANT, OTHER_TENANT, OTHER_TENANT]


def test_a_thousand_invented_tenants_add_one_series() -> None:
    registry = CollectorRegistry()
    metrics = StageMetrics(registry, tenants=["acme"])
    for n in range(1000):
        metrics.count("dedup", "ok", tenant=f"t{n}")
    metrics.count("dedup", "ok", tenant="acme")
    lines = [line for line in generate_latest(registry).decode().splitlines()
             if line.startswith("rcaflow_stage_processed_total{")]
    assert sorted(lines) == ['rcaflow_stage_processed_total{outcome="ok",stage="dedup",tenant="_other"} 1000.0',
                             'rcaflow_stage_processed_total{outcome="ok",stage="dedup",tenant="acme"} 1.0']


def test_the_record_in_hand_names_the_tenant_of_counts_timings_and_waits() -> None:
    """What the worker's edge does per record: its key's tenant labels everything the stage counts for it."""
    registry = CollectorRegistry()
    metrics = StageMetrics(registry, tenants=["acme"])

    async def one_record(key: bytes) -> None:
        record_in_hand(key, written_at=0.0)  # written at the epoch: a long wait
        with metrics.timed("rca"):
            metrics.count("rca", "ok")

    async def both() -> None:
        # Concurrent agents' tasks each keep their own record in hand.
        await asyncio.gather(one_record(b"acme:inc-1"), one_record(b"ghost:inc-2"))

    asyncio.run(both())
    value = registry.get_sample_value
    for tenant in ("acme", OTHER_TENANT):
        assert value("rcaflow_stage_processed_total", {"stage": "rca", "outcome": "ok", "tenant": tenant}) == 1
        assert value("rcaflow_stage_latency_seconds_count", {"stage": "rca", "tenant": tenant}) == 1
        assert value("rcaflow_stage_wait_seconds_bucket", {"stage": "rca", "tenant": tenant, "le": "3600.0"}) == 0
        assert value("rcaflow_stage_wait_seconds_count", {"stage": "rca", "tenant": tenant}) == 1


def test_no_tenant_may_take_the_bounded_label_s_name() -> None:
    with pytest.raises(ValidationError, match="may not be named '_other'"):
        Settings(tenants={OTHER_TENANT: TenantSettings()})
