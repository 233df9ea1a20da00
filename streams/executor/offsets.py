"""In-order offset commits for actions that finish out of order."""

from __future__ import annotations

import threading
from collections import deque

from confluent_kafka import TopicPartition


class OffsetTracker:
    """In-order commits for out-of-order work: per partition, the offset after the longest handled prefix.

    Thread-safe: rebalance callbacks run on the consumer's poll thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, int], deque[list[int | bool]]] = {}
        self._committable: dict[tuple[str, int], int] = {}

    def start(self, topic: str, partition: int, offset: int) -> list[int | bool]:
        entry: list[int | bool] = [offset, False]
        with self._lock:
            self._inflight.setdefault((topic, partition), deque()).append(entry)
        return entry

    def done(self, topic: str, partition: int, entry: list[int | bool]) -> None:
        with self._lock:
            entry[1] = True
            queue = self._inflight.get((topic, partition))
            while queue and queue[0][1]:
                offset = queue.popleft()[0]
                self._committable[(topic, partition)] = int(offset) + 1

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Revoked partitions: their handled offsets belong to the next owner now."""
        with self._lock:
            for tp in partitions:
                self._inflight.pop((tp.topic, tp.partition), None)
                self._committable.pop((tp.topic, tp.partition), None)

    def take(self) -> list[TopicPartition]:
        """Offsets that moved since the last call, ready to commit."""
        with self._lock:
            ready = [TopicPartition(t, p, o) for (t, p), o in self._committable.items()]
            self._committable.clear()
        return ready

    @property
    def busy(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._inflight.values())
