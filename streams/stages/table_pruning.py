"""Forgetting old rows of a worker table: a long-running worker must not remember everything forever."""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any


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
