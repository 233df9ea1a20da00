"""Every few seconds during a load run: records on each topic, consumer lag per group and topic, RSS, load average.

Measured from outside the processes, as an operator would: high watermarks and committed offsets from the
broker (the lag through ``streams.wiring.consumer_lag``, the same code that exports it on /metrics), and the
resident set of each role from ``/proc/<pid>/status``. A thread, because the broker calls block.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from streams.wiring.consumer_lag import ConsumerLag


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at the system, ``t_s`` seconds after the load started."""

    t_s: float
    produced: int
    ends: dict[str, int]
    lag: dict[str, int]
    rss_mb: dict[str, float | None]
    load1: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def rss_mb(pid: int) -> float | None:
    """The process's resident set (VmRSS) in MiB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class Sampler:
    """Samples ``topics`` (name shown → full topic name), the lag of ``groups`` (name shown → group id) and the
    RSS of ``pids`` (role → pid)."""

    def __init__(self, client: Mapping[str, Any], topics: Mapping[str, str], groups: Mapping[str, str],
                 pids: Mapping[str, int], produced: Callable[[], int], *,
                 counters: Mapping[str, Callable[[], int]] | None = None, prefix: str = "", every_s: float = 5.0,
                 progress_every_s: float = 10.0) -> None:
        """``counters``: more running totals sampled beside the topics (e.g. chat messages posted)."""
        self._client = dict(client)
        self._topics = dict(topics)
        self._groups = dict(groups)  # name shown -> group id
        self._pids = dict(pids)
        self._produced = produced
        self._counters = dict(counters or {})
        self._prefix = prefix  # taken out of the topic names shown (internal topics carry it inside)
        self._every_s = every_s
        self._progress_every_s = progress_every_s
        self._lag = ConsumerLag(self._client, list(self._groups.values()))
        self._names = {full: short for short, full in self._topics.items()}
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self.total_s: float | None = None  # the planned length of the load, for the progress line

    # ------------------------------------------------------------------ one look
    def _ends(self, consumer: Consumer) -> dict[str, int]:
        ends: dict[str, int] = {}
        for short, topic in self._topics.items():
            total = 0
            for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                total += consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            ends[short] = total
        for name, count in self._counters.items():
            ends[name] = count()
        return ends

    def _group_lag(self) -> dict[str, int]:
        self._lag.refresh()
        group_name = {group: short for short, group in self._groups.items()}
        lag: dict[str, int] = {}
        for family in self._lag.collect():
            if family.name != "rcaflow_consumer_lag_records":
                continue
            for sample in family.samples:
                group = group_name.get(sample.labels["group"], sample.labels["group"])
                topic = self._names.get(sample.labels["topic"], sample.labels["topic"])
                if self._prefix:
                    topic = topic.replace(self._prefix, "")
                lag[f"{group}/{topic}"] = int(sample.value)
        return lag

    def sample(self, consumer: Consumer) -> Sample:
        ends = self._ends(consumer)
        return Sample(t_s=round(time.monotonic() - self._started, 1), produced=self._produced(), ends=ends,
                      lag=self._group_lag(), rss_mb={role: rss_mb(pid) for role, pid in self._pids.items()},
                      load1=round(os.getloadavg()[0], 2))

    # ------------------------------------------------------------------ the thread
    def _loop(self) -> None:
        consumer = Consumer({**self._client, "group.id": f"load-sampler-{uuid.uuid4().hex}"})
        last_progress = 0.0
        try:
            while not self._stop.is_set():
                try:
                    sample = self.sample(consumer)
                except (KafkaException, TimeoutError) as exc:  # a loaded broker answers late: next round
                    print(f"load: sample skipped: {exc}", file=sys.stderr)
                else:
                    self.samples.append(sample)
                    if sample.t_s - last_progress >= self._progress_every_s or len(self.samples) == 1:
                        last_progress = sample.t_s
                        print(progress_line(self.samples, self.total_s), file=sys.stderr, flush=True)
                self._stop.wait(self._every_s)
        finally:
            consumer.close()

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="load-sampler", daemon=True)
        self._thread.start()

    def elapsed_s(self) -> float:
        """Seconds since :meth:`start`, on the clock the samples' ``t_s`` use."""
        return time.monotonic() - self._started

    def stop(self) -> None:
        """Idempotent: the last round finishes (at most one broker timeout), then the thread ends."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self._lag.stop()


def progress_line(samples: list[Sample], total_s: float | None) -> str:
    """One line a person watching the run can read: where it is, how fast things move, how far behind."""
    now = samples[-1]
    before = samples[-2] if len(samples) > 1 else None
    span = (now.t_s - before.t_s) if before else 0.0

    def per_min(topic: str) -> str:
        if before is None or span <= 0:
            return "-"
        return f"{(now.ends.get(topic, 0) - before.ends.get(topic, 0)) / span * 60:.0f}"

    behind = sum(v for k, v in now.lag.items() if k.startswith("worker/"))
    rss = " ".join(f"{role} {mb:.0f} MB" for role, mb in now.rss_mb.items() if mb is not None)
    of = f"/{total_s:.0f}" if total_s else ""
    return (f"load: {now.t_s:.0f}{of} s, {now.produced} mails sent; per min: raw-mail {per_min('raw-mail')}, "
            f"incidents {per_min('incidents')}, rca-result {per_min('rca-result')}, notified "
            f"{per_min('notified')}; worker lag {behind} (raw-mail {now.lag.get('worker/raw-mail', 0)}); "
            f"RSS {rss}; load {now.load1}")
