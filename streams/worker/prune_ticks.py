"""What a prune tick sweeps: each table-owning agent registers how its table forgets rows that are done.

The notify agent receives one prune tick per partition (a timer cannot change tables) and runs every sweep
registered for its worker, limited to the keys of that partition, so each row is deleted by the owner of its
partition, inside ``WorkerApp.acked`` like any table write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from weakref import WeakKeyDictionary

from streams.worker.app import WorkerApp

logger = logging.getLogger(__name__)

#: ``sweep(owned, now)``: deletes the done rows among the keys ``owned`` accepts; returns their keys.
Sweep = Callable[[Callable[[str], bool], datetime], list[str]]

_SWEEPS: WeakKeyDictionary[WorkerApp, dict[str, Sweep]] = WeakKeyDictionary()


def add_sweep(worker: WorkerApp, table: str, sweep: Sweep) -> None:
    """Register ``sweep`` for ``table`` (its name, for the log); a second registration replaces the first."""
    _SWEEPS.setdefault(worker, {})[table] = sweep


def sweep_tables(worker: WorkerApp, owned: Callable[[str], bool], now: datetime) -> int:
    """Run every sweep registered for ``worker``; returns how many rows went."""
    gone = 0
    for table, sweep in _SWEEPS.get(worker, {}).items():
        keys = sweep(owned, now)
        if keys:
            logger.info("forgot %d %s rows that no later record needs", len(keys), table)
        gone += len(keys)
    return gone
