"""The load benchmark's arithmetic: what it reports must follow from what it sampled and stamped."""

from __future__ import annotations

from benchmarks.load_chat import incident_of
from benchmarks.load_plan import MailPlan, raw_mail
from benchmarks.load_sampler import Sample, progress_line
from benchmarks.load_stats import (
    Stamps,
    capacity,
    consumed,
    percentiles,
    series,
    slope_per_min,
    stage_latencies,
    sustained,
)


def sample(t_s: float, produced: int, raw_end: int, raw_lag: int, rss: float, *, other_lag: int = 0) -> Sample:
    return Sample(t_s=t_s, produced=produced, ends={"raw-mail": raw_end, "rca-result": produced // 2},
                  lag={"worker/raw-mail": raw_lag, "worker/normalized": other_lag, "executor/actions": 0},
                  rss_mb={"worker": rss, "executor": 70.0}, load1=1.5)


def test_percentiles_use_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"n": 100, "p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "max_ms": 100.0}
    assert percentiles([]) == {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}


def test_stage_latencies_follow_each_incident_back_to_the_mail_that_opened_it() -> None:
    stamps = Stamps(
        sent={(0, 1): 1000.0, (0, 2): 1100.0},
        normalized={(0, 1): 1010.0, (0, 2): 1120.0},
        opened={"inc-a": ((0, 1), 1050.0)},  # the second mail was a repeat: no incident of its own
        rca={"inc-a": 1080.0},
        actions={"inc-a": 1090.0},
        notified={"inc-a": 1400.0},
    )
    latency = stage_latencies(stamps)
    stages = latency["stages"]
    assert stages["normalize"]["n"] == 2 and stages["normalize"]["max_ms"] == 20.0
    assert stages["dedup+correlate"]["p50_ms"] == 40.0
    assert stages["rca"]["p50_ms"] == 30.0
    assert stages["decide"]["p50_ms"] == 10.0
    assert stages["notify"]["p50_ms"] == 310.0
    assert latency["mail_to_notification"] == {"n": 1, "p50_ms": 400.0, "p95_ms": 400.0, "p99_ms": 400.0,
                                               "max_ms": 400.0}


def test_an_incident_not_notified_yet_is_left_out_not_counted_as_zero() -> None:
    stamps = Stamps(sent={(1, 0): 0.0}, normalized={(1, 0): 5.0}, opened={"inc": ((1, 0), 10.0)}, rca={"inc": 20.0})
    assert stage_latencies(stamps)["mail_to_notification"]["n"] == 0
    assert stage_latencies(stamps)["mail_to_rca_result"]["p99_ms"] == 20.0


def test_series_turns_running_totals_into_rates_per_minute() -> None:
    points = series([sample(0, 0, 0, 0, 100.0), sample(10, 100, 100, 20, 101.0)])
    assert points == [{"t_s": 10, "per_min": {"raw-mail": 600.0, "rca-result": 300.0},
                       "lag": {"worker/raw-mail": 20, "worker/normalized": 0, "executor/actions": 0},
                       "rss_mb": {"worker": 101.0, "executor": 70.0}, "load1": 1.5}]


def test_slope_is_per_minute_and_needs_two_times() -> None:
    assert slope_per_min([(0.0, 0.0), (30.0, 50.0), (60.0, 100.0)]) == 100.0
    assert slope_per_min([(5.0, 1.0)]) is None
    assert slope_per_min([(5.0, 1.0), (5.0, 2.0)]) is None


def test_overload_shows_as_growing_lag_and_the_consumed_rate_is_the_capacity() -> None:
    # Offered 1,200/min; the worker takes 600/min off raw-mail; the backlog grows by 600/min.
    samples = [sample(t, produced=20 * t, raw_end=20 * t, raw_lag=10 * t, rss=100.0 + t / 60)
               for t in range(0, 181, 10)]
    assert consumed(samples[-1]) == 1800
    steady = sustained(samples, load_s=180, skip_s=30)
    assert steady["offered_mails_per_min"] == 1200.0
    assert steady["consumed_mails_per_min"] == 600.0
    assert steady["raw_mail_lag_growth_per_min"] == 600.0
    assert steady["downstream_lag_growth_per_min"] == 0.0
    assert steady["worker_rss_growth_mb_per_min"] == 1.0
    assert steady["window_s"] == [30, 180]


def test_a_plan_repeats_recent_alerts_at_about_the_asked_ratio_round_robin_over_tenants() -> None:
    plan = MailPlan(["a", "b", "c"], 0.7, seed=1)
    mails = [plan.next() for _ in range(3000)]
    assert [m.tenant for m in mails[:6]] == ["a", "b", "c", "a", "b", "c"]
    assert not any(m.repeat for m in mails[:3])  # a tenant's first mail has nothing to repeat
    ratio = sum(m.repeat for m in mails) / len(mails)
    assert 0.66 < ratio < 0.74
    seen: dict[str, set[int]] = {}
    for m in mails:  # a repeat is always an alert its own tenant sent before; a new alert is new everywhere
        assert m.repeat == (m.alert in seen.setdefault(m.tenant, set()))
        seen[m.tenant].add(m.alert)
    again = MailPlan(["a", "b", "c"], 0.7, seed=1)
    assert [again.next() for _ in range(3000)] == mails  # seeded: two runs send the same sequence


def test_a_repeat_is_a_new_mail_about_the_same_alert() -> None:
    plan = MailPlan(["acme"], 0.99, seed=3)
    first, again = plan.next(), plan.next()
    assert again.repeat and again.alert == first.alert
    (key1, mail1), (key2, mail2) = raw_mail("r1", first), raw_mail("r1", again)
    assert mail1.tenant == mail2.tenant == "acme"
    assert mail1.message_id != mail2.message_id and key1 != key2
    assert b"jenkins-r1-0" in mail1.raw and b"jenkins-r1-0" in mail2.raw


def test_the_chat_message_is_matched_to_its_incident_by_the_id_it_names() -> None:
    body = {"channel": "C0123", "text": "JenkinsRestarted", "blocks": [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "tenant `acme` · incident `inc-42` · x"}]}]}
    assert incident_of(body) == "inc-42"
    assert incident_of({"text": "no incident here"}) is None


def test_the_progress_line_says_where_the_run_is() -> None:
    line = progress_line([sample(0, 0, 0, 0, 100.0), sample(10, 100, 100, 20, 101.0)], 300)
    assert line.startswith("load: 10/300 s, 100 mails sent; per min: raw-mail 600")
    assert "worker lag 20 (raw-mail 20)" in line and "worker 101 MB" in line


def test_capacity_counts_only_when_the_worker_fell_behind_and_reads_the_end_of_the_path() -> None:
    behind = {"worker_lag_growth_per_min": 900.0, "written_per_min": {"rca-result": 240.0, "notified": 210.0}}
    # 30 % of the mails open an incident: 210 chat messages/min carry 700 mails/min.
    assert capacity(behind, 4000.0, 0.3) == {"saturated": True, "capacity_mails_per_min": 700.0,
                                             "mails_per_min_by_output": {"rca-result": 800.0, "notified": 700.0}}
    kept_up = {"worker_lag_growth_per_min": 3.0, "written_per_min": {"rca-result": 150.0, "notified": 150.0}}
    assert capacity(kept_up, 500.0, 0.3)["capacity_mails_per_min"] is None
