"""The dashboard's throttled-ingest panel tells the two reasons apart: a tenant over its own quota and a tenant
above its fair share of the intake budget call for different fixes (raise its quota vs. the budget or workers)."""

from __future__ import annotations

import re

from tests.support.monitoring import dashboard, dashboard_panels


def test_the_throttled_panel_shows_tenant_source_and_reason() -> None:
    panels = [p for p in dashboard_panels(dashboard())
              if any("rcaflow_ingest_throttled_total" in t.get("expr", "") for t in p.get("targets", []))]
    assert len(panels) == 1
    (target,) = panels[0]["targets"]
    grouping = re.search(r"sum by \(([^)]*)\)", target["expr"])
    assert grouping is not None and {g.strip() for g in grouping.group(1).split(",")} == {"tenant", "source", "reason"}
    assert all(f"{{{{{label}}}}}" in target["legendFormat"] for label in ("tenant", "source", "reason"))
    assert "over_fair_share" in panels[0]["description"] and "quota_exceeded" in panels[0]["description"]
