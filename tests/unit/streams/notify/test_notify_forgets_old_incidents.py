"""The worker forgets incidents it notified about long ago: old ones get a new message, the table stays bounded."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from schemas.records import ActionState
from streams.notify.notifier import Notifier, forget_stale
from streams.settings import NotifySettings
from tests.unit.executors.notify.notify_helpers import NOW, SlackApiStandIn, actions, rca
from tests.unit.streams.notify.test_notifier import JsonTable, llm, slack

KEEP = timedelta(hours=24)


class Now:
    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> datetime:
        return self.at


def incident(n: int) -> str:
    return f"inc-{n}"


def notify(notifier: Notifier, n: int, *, engine_llm: bool = False) -> None:
    result = (llm() if engine_llm else rca()).model_copy(update={"incident_id": incident(n)})
    acts = [] if engine_llm else [a.model_copy(update={"incident_id": incident(n)}) for a in actions()]
    asyncio.run(notifier.handle(result, acts))


def test_an_incident_older_than_the_retention_gets_a_new_message_and_a_recent_one_is_still_updated() -> None:
    standin, store, now = SlackApiStandIn(), JsonTable(), Now()
    notifier = Notifier({"acme": {"slack": slack(standin)}}, store, clock=now)
    notify(notifier, 1)
    now.at = NOW + timedelta(hours=23)
    notify(notifier, 2)
    now.at = NOW + timedelta(hours=25)

    assert forget_stale(store, now=now.at, keep=KEEP) == ["acme:inc-1"]

    standin.calls.clear()
    notify(notifier, 1, engine_llm=True)
    notify(notifier, 2, engine_llm=True)
    assert [method for method, _ in standin.calls] == ["chat.postMessage", "chat.update"]


def test_a_decision_on_a_forgotten_incident_is_not_shown() -> None:
    standin, store, now = SlackApiStandIn(), JsonTable(), Now()
    notifier = Notifier({"acme": {"slack": slack(standin)}}, store, clock=now)
    notify(notifier, 1)
    forget_stale(store, now=NOW + timedelta(days=2), keep=KEEP)
    approved = actions()[0].model_copy(update={"state": ActionState.APPROVED, "incident_id": incident(1)})
    assert asyncio.run(notifier.decided(approved)) is None
    assert [method for method, _ in standin.calls] == ["chat.postMessage"]


def test_the_table_stays_bounded_over_ten_days_of_incidents() -> None:
    standin, store, now = SlackApiStandIn(), JsonTable(), Now()
    notifier = Notifier({"acme": {"slack": slack(standin)}}, store, clock=now)
    sizes = []
    for hour in range(240):  # 5 new incidents an hour, pruned every hour
        now.at = NOW + timedelta(hours=hour)
        for k in range(5):
            notify(notifier, hour * 5 + k)
        forget_stale(store, now=now.at, keep=KEEP)
        sizes.append(len(store))
    assert max(sizes) <= 5 * 25
    assert sizes[-1] == sizes[100]  # steady state: what is added each hour is forgotten a day later


def test_only_the_owned_keys_are_swept_and_rows_without_a_time_count_as_old() -> None:
    store = JsonTable({"acme:a": {"updated_at": NOW.isoformat()}, "acme:b": {"engine": "policy"},
                       "acme:c": {"updated_at": "garbage"}, "beta:d": {"updated_at": "2020-01-01T00:00:00+00:00"}})
    gone = forget_stale(store, now=NOW, keep=KEEP, owned=lambda key: key.startswith("acme:"))
    assert sorted(gone) == ["acme:b", "acme:c"]
    assert sorted(store) == ["acme:a", "beta:d"]


def test_the_retention_is_configurable_and_defaults_to_a_day() -> None:
    assert NotifySettings().keep_hours == 24.0
    assert NotifySettings.model_validate({"keep_hours": 2, "prune_interval_s": 60}).keep_hours == 2.0
