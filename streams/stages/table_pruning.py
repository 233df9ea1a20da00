"""Forgetting old rows of a worker table: a long-running worker must not remember everything forever."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from policies import PolicySet
from policies.correlation import KEEP_AFTER, CorrelationState
from policies.dedup import DedupState


def forget_older(
    store: MutableMapping[str, Any],
    *,
    field: str,
    now: datetime,
    keep: timedelta,
    owned: Callable[[str], bool] = lambda _key: True,
) -> list[str]:
    """Delete the rows whose ISO time in ``field`` is more than ``keep`` before ``now``; returns their keys.

    A row without a readable time counts as old. ``owned`` limits the sweep to the keys this caller
    may delete (a Faust worker: the keys of the partition it is handling).
    """
    horizon = _aware(now) - keep
    stale = []
    for key, raw in list(store.items()):
        if not owned(key):
            continue
        stamp = raw.get(field) if isinstance(raw, Mapping) else None
        try:
            fresh = isinstance(stamp, str) and _aware(datetime.fromisoformat(stamp)) >= horizon
        except ValueError:
            fresh = False
        if not fresh:
            stale.append(key)
    for key in stale:
        del store[key]
    return stale


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long rows outlive the policy times they serve (worker.prune_margin_s, worker.open_incident_keep_hours).

    ``margin``: past its dedup window or cooldown a row is still kept this long, so an input re-delivered
    after a restart (or a late re-decision) still finds what it found the first time.
    ``open_keep``: an incident never resolved is forgotten this long after its last alert; a "resolved" mail
    after that is ignored (nothing open), a firing one opens a new incident, as it would once the window passed.
    """

    margin: timedelta
    open_keep: timedelta


def longest_dedup_window(policies: Iterable[PolicySet]) -> timedelta:
    """The longest dedup window any class may have: a row older than that (plus margin) is past every window."""
    windows = [p.document.defaults.dedup_window for p in policies]
    windows += [c.spec.dedup_window for p in policies for c in p.classes if c.spec.dedup_window is not None]
    return max(windows)


def longest_cooldown(policies: Iterable[PolicySet]) -> timedelta:
    """The longest cooldown of any action (tenant overlays included): an older entry can no longer refuse one."""
    return max((a.cooldown for p in policies for c in p.classes for a in c.spec.actions), default=timedelta(0))


def dedup_row_done(row: Mapping[str, Any], *, now: datetime, window: timedelta, retention: Retention) -> bool:
    """Whether a dedup-state row can no longer change what an event decides (policies.dedup's rules).

    Inside its window a firing repeat joins the incident: kept. Its event ids recognise re-deliveries: kept
    for ``margin`` after its last event. A resolved "resolved" mail resolves the open incident at any age: an
    unresolved row is kept ``open_keep`` after its last event. An unreadable row is left to the dedup stage.
    """
    try:
        state = DedupState.model_validate(row)
    except ValidationError:
        return False
    now = _aware(now)
    quiet = now - _aware(state.last_seen_at)
    return (now - _aware(state.opened_at) >= window + retention.margin and quiet >= retention.margin
            and (state.resolved or quiet >= retention.open_keep))


def forget_dedup(store: MutableMapping[str, Any], *, now: datetime, window: timedelta, retention: Retention,
                 owned: Callable[[str], bool] = lambda _key: True) -> list[str]:
    """Delete the owned dedup-state rows :func:`dedup_row_done` says are done; returns their keys."""
    return _forget(store, owned, lambda row: isinstance(row, Mapping)
                   and dedup_row_done(row, now=now, window=window, retention=retention))


def forget_cooldowns(store: MutableMapping[str, Any], *, now: datetime, cooldown: timedelta, margin: timedelta,
                     owned: Callable[[str], bool] = lambda _key: True) -> list[str]:
    """Delete the owned action-cooldowns rows whose every entry (``"<ISO time> <action id>"``) is past
    ``cooldown`` plus ``margin`` (an empty row too: the decide stage writes one when nothing went ahead); a
    row with one live entry stays whole (a few entries per fingerprint)."""
    horizon = _aware(now) - cooldown - margin

    def done(row: object) -> bool:
        if not isinstance(row, Mapping):
            return False  # the decide stage reports what it cannot read
        try:
            return all(isinstance(v, str) and _aware(datetime.fromisoformat(v.partition(" ")[0])) < horizon
                       for v in row.values())
        except ValueError:
            return False  # the decide stage reports what it cannot read

    return _forget(store, owned, done)


def forget_groups(store: MutableMapping[str, Any], *, now: datetime, margin: timedelta,
                  owned: Callable[[str], bool] = lambda _key: True) -> list[str]:
    """Delete the owned incident-groups rows whose every group opened its last member more than
    ``policies.correlation.KEEP_AFTER`` plus ``margin`` ago: the correlator would drop them all on the next write."""
    horizon = _aware(now) - KEEP_AFTER - margin

    def done(row: object) -> bool:
        try:
            state = CorrelationState.model_validate(row)
        except ValidationError:
            return False
        return all(_aware(g.last_opened_at) < horizon for g in state.groups)

    return _forget(store, owned, done)


def _forget(store: MutableMapping[str, Any], owned: Callable[[str], bool], done: Callable[[Any], bool]) -> list[str]:
    stale = [key for key, row in list(store.items()) if owned(key) and done(row)]
    for key in stale:
        del store[key]
    return stale
