"""The long load run's pieces: the RSS slope, table rows replayed from changelogs, the short-retention policy copy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from benchmarks.load_bench import env_pair
from benchmarks.load_retention import write_capped_policies
from benchmarks.load_sampler import Sample
from benchmarks.load_stats import rss_second_half
from benchmarks.load_tables import Change, replay
from policies.loader import load_policies
from streams.stages.table_pruning import longest_cooldown, longest_dedup_window


def sample(t_s: float, worker_mb: float) -> Sample:
    return Sample(t_s=t_s, produced=0, ends={}, lag={}, rss_mb={"worker": worker_mb, "executor": 70.0}, load1=1.0)


def test_the_rss_slope_reads_only_the_second_half_of_the_load_in_mb_per_hour() -> None:
    # Fills up by 100 MB in the first half hour, then climbs 6 MB/hour; the drain after the load is ignored.
    samples = [sample(t, 100.0 + t / 18) for t in range(0, 1800, 60)]
    samples += [sample(t, 200.0 + (t - 1800) / 600) for t in range(1800, 3601, 60)]
    samples += [sample(3700.0, 500.0)]
    half = rss_second_half(samples, load_s=3600.0)
    assert half["window_s"] == [1800, 3600]
    assert half["worker"]["slope_mb_per_hour"] == pytest.approx(6.0)
    assert half["worker"]["first_mb"] == 200.0 and half["worker"]["max_mb"] == 203.0
    assert half["executor"]["slope_mb_per_hour"] == 0.0


def test_table_rows_are_the_keys_written_and_not_deleted_by_each_time() -> None:
    changes = [Change(1000, b"a", False), Change(1500, b"b", False), Change(1600, b"a", False),
               Change(2500, b"a", True), Change(3500, b"c", False), Change(4000, b"b", True)]
    history = replay(list(reversed(changes)), [1000, 2000, 3000, 4000])  # any order in, time order replayed
    assert history.rows == [1, 2, 1, 1]
    assert (history.writes, history.deletes, history.max_rows, history.final_rows) == (4, 2, 2, 1)


def test_a_change_after_the_last_time_still_counts_in_the_totals() -> None:
    history = replay([Change(5000, b"a", False)], [1000])
    assert history.rows == [0] and history.final_rows == 1 and history.writes == 1


def test_the_policy_copy_caps_every_window_cooldown_and_approval_ttl(tmp_path: Path) -> None:
    policies = load_policies(write_capped_policies(tmp_path / "p.yaml", timedelta(minutes=5)))
    # The times table pruning waits for: past them (plus the margin) every row can go.
    assert longest_dedup_window([policies]) == timedelta(minutes=5)
    assert longest_cooldown([policies]) == timedelta(minutes=5)
    assert all(policies.approval_ttl(c.id, a.name) <= timedelta(minutes=5)
               for c in policies.document.classes for a in c.actions)


def test_the_policy_copy_never_lengthens_a_time(tmp_path: Path) -> None:
    bundled = load_policies()
    policies = load_policies(write_capped_policies(tmp_path / "p.yaml", timedelta(hours=1)))
    assert policies.document.defaults.dedup_window == bundled.document.defaults.dedup_window == timedelta(minutes=30)
    assert [a.cooldown for c in policies.document.classes for a in c.actions] == [
        min(a.cooldown, timedelta(hours=1)) for c in bundled.document.classes for a in c.actions]


def test_env_overrides_must_be_rcaflow_settings() -> None:
    assert env_pair("RCAFLOW_WORKER__PRUNE_MARGIN_S=300") == ("RCAFLOW_WORKER__PRUNE_MARGIN_S", "300")
    for bad in ("PRUNE_MARGIN_S=300", "RCAFLOW_WORKER__PRUNE_MARGIN_S"):
        with pytest.raises(Exception, match="RCAFLOW_"):
            env_pair(bad)


def test_a_deletion_whose_write_was_compacted_away_is_counted_as_orphan() -> None:
    history = replay([Change(1000, b"a", False), Change(2000, b"b", True)], [1500, 2500])
    assert history.rows == [1, 1] and history.orphan_deletes == 1 and history.deletes == 1
