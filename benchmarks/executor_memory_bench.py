"""The executor's memory and read rate: RSS per action with its ledger's full and shortened window, records/s.

A real :class:`streams.executor.service.ExecutorService` on a real broker is fed rounds of action records
(a plain producer on the actions topic); after each round the benchmark waits until the executor has caught
up (its committed offsets reach the end of the topic and stay there for 3 s), runs ``gc.collect()`` and
reads ``VmRSS`` from ``/proc/self/status``. Scenarios, each in a process of its own on its own topics:

1. ``started_full_window``: ``succeeded`` dry-run records of actions never seen before. The ledger keeps each
   (it counts as started) for the full window: RSS grows by the ledger's entry size per action.
2. ``started_short_window``: the same with the window cut to 20 s: the ledger forgets as fast as it learns,
   so RSS stays flat once it has filled its 20 s.
3. ``rejected_approvals``: unsigned ``approved`` records, full window. The verifier refuses each (a ``rejected``
   record on actions and a dead letter); actions that never started are not kept, so RSS stays flat. Every
   approval is read twice: itself and its refusal, read back.

Lessons from the experiment this comes from (docs/performance.md, "The executor grew 76.3 → 80.5 MB"):

- Sample only once the executor has caught up. When records arrive faster than it reads them, librdkafka's
  prefetch queue (``queued.max.messages.kbytes``) fills; that is native memory, outside tracemalloc, and it
  looks like a leak (it fooled an earlier measurement into blaming the offset commits).
- The ledger keeps started actions for the longest approval validity plus 5 min of clock skew (at least
  65 min): a window of minutes never reaches its plateau. Only the shortened window (``started_short_window``) shows
  the plateau; the full window measures the cost per entry.

RSS per action is the least-squares slope of RSS against the actions fed, over the last 2/3 of the rounds
(the first rounds also grow the allocator's pools and librdkafka's buffers: even where the ledger is flat, RSS
settles only after ~10 rounds of 2,000 records, hence 25 rounds by default). Each scenario runs in its own
process: memory freed by one scenario would be reused by the next and hide its growth. The load average is
recorded per scenario: the machine is shared, so the read rates move with it.

    python -m benchmarks.executor_memory_bench --rounds 25 --per 2000 --out benchmarks/results.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from benchmarks.floor_bench import ROOT, bench_broker, load
from benchmarks.results import RESULTS, write_results
from executors import ToolRegistry
from policies.decision_signature import DecisionKeys
from policies.loader import load_policies
from policies.tenant_scope import TenantScope, scopes_of
from producers.publisher import KafkaPublisher
from schemas.codec import Codec, make_codec
from schemas.records import ActionEvent, ActionState, Risk
from schemas.topics import ACTIONS
from streams.executor import service as service_module
from streams.executor.metrics import ExecutorMetrics
from streams.executor.service import ExecutorService
from streams.executor.verify import ActionVerifier
from streams.wiring.topics_admin import ensure_topics

GROUP = "rcaflow-executor"
TENANT = "bench"
NAMESPACE = "ns"
PARTITIONS = 3
#: Records fed before the first sample: the consumer joins, the ledger pre-scan runs, the buffers warm up.
WARMUP = 200
#: The executor counts as caught up once its committed offsets equal the topic's end for this long.
QUIET_S = 3.0
#: A round that has not caught up after this long stops the benchmark.
ROUND_TIMEOUT_S = 600.0
#: The shortened ledger window of ``started_short_window``.
SHORT_WINDOW = timedelta(seconds=20)
#: The executors' logs, one file per scenario (``make clean`` removes build/).
LOG_DIR = ROOT / "build" / "executor-memory-bench"
#: Only a benchmark key: nothing signed with it runs anywhere.
DECISION_KEY = "executor-memory-bench-decision-key-0123456789"


@dataclass(frozen=True)
class Scenario:
    name: str
    state: ActionState
    short_window: bool
    what: str


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("started_full_window", ActionState.SUCCEEDED, False,
                 "succeeded dry-run records of new actions (kept by the ledger as started), full ledger window"),
        Scenario("started_short_window", ActionState.SUCCEEDED, True,
                 f"the same with the ledger window cut to {SHORT_WINDOW.seconds} s (no clock skew, forgetting "
                 "every 5 s)"),
        Scenario("rejected_approvals", ActionState.APPROVED, False,
                 "unsigned approved records, refused (a rejected record on actions, read back, and a dead "
                 "letter each); full ledger window"),
    )
}


# ------------------------------------------------------------------------------------------- measuring
def rss_bytes() -> int:
    """This process's resident set (``VmRSS``), native memory included."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def slope_per_action(samples: list[tuple[int, int]]) -> float:
    """Bytes of RSS per action: least squares over (actions fed, RSS) of the last 2/3 of the rounds."""
    tail = samples[len(samples) // 3:]
    if len(tail) < 2:
        return 0.0
    return statistics.linear_regression([float(a) for a, _ in tail], [float(r) for _, r in tail]).slope


def actions(scenario: Scenario, ids: range, tag: str) -> list[ActionEvent]:
    now = datetime.now(UTC)
    return [ActionEvent(tenant=TENANT, action_id=f"{tag}-{i}", incident_id="inc-bench", alert_class="log_flood",
                        name="collect_diagnostics", tool="diagnostics", operation="collect",
                        params={"namespace": NAMESPACE, "workload": "w"}, risk=Risk.READ, state=scenario.state,
                        dry_run=True, at=now)
                  for i in ids]


def produce(producer: Producer, codec: Codec, topic: str, records: list[ActionEvent]) -> None:
    for record in records:
        value = codec.encode(record, topic=topic)
        while True:
            try:
                producer.produce(topic, key=f"{record.tenant}:{record.action_id}", value=value)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)


class Progress:
    """How far the executor's group has committed on the actions topic, against the topic's end (from outside:
    the benchmark changes nothing in the executor to count what it handled)."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        self._parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def read(self) -> tuple[int, int]:
        """(committed, end), summed over the partitions."""
        committed = self._consumer.committed(self._parts, timeout=10)
        ends = [self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in self._parts]
        return sum(max(0, tp.offset) for tp in committed), sum(ends)

    async def caught_up(self) -> tuple[int, float]:
        """Waits until everything on the topic is committed and stays so for QUIET_S; returns the end offset
        and when it was first reached (monotonic)."""
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        reached: tuple[int, float] | None = None
        while time.monotonic() < deadline:
            committed, end = await asyncio.to_thread(self.read)
            now = time.monotonic()
            if committed < end:
                reached = None
            elif reached is None or reached[0] != end:
                reached = (end, now)
            elif now - reached[1] >= QUIET_S:
                return reached
            await asyncio.sleep(0.1 if reached is None else 0.5)  # finer while catching up: it times the rate
        raise SystemExit(f"executor memory bench: the executor did not catch up within {ROUND_TIMEOUT_S:.0f} s")

    def close(self) -> None:
        self._consumer.close()


def shorten_ledger_window(verifier: ActionVerifier) -> None:
    """The ledger keeps started actions for ``max_valid_for`` + ``CLOCK_SKEW`` (≥ 65 min) and forgets once a
    minute: a run of minutes never sees the plateau. Cut to 20 s, no skew, forgetting every 5 s, it does. A
    benchmark may set these module constants: this process runs this one scenario only."""
    verifier.max_valid_for = SHORT_WINDOW
    service_module.CLOCK_SKEW = timedelta(0)
    service_module.LEDGER_FORGET_EVERY_S = 5.0


async def measure(bootstrap: str, scenario: Scenario, rounds: int, per: int) -> dict[str, Any]:
    """One scenario on fresh topics: the executor fed ``rounds`` × ``per`` actions, sampled when caught up."""
    prefix = f"execmem-{uuid.uuid4().hex[:8]}."
    ensure_topics(bootstrap, prefix, partitions=PARTITIONS)
    topic = ACTIONS.full_name(prefix)
    codec = make_codec(None)
    registry = CollectorRegistry()
    verifier = ActionVerifier(DecisionKeys.from_text(DECISION_KEY), load_policies(), approvers={},
                              scopes=scopes_of([TenantScope(tenant=TENANT, namespaces=(NAMESPACE,))]),
                              registry=registry)
    if scenario.short_window:
        shorten_ledger_window(verifier)
    publisher = KafkaPublisher(bootstrap, codec, prefix)
    service = ExecutorService(bootstrap=bootstrap, codec=codec, publisher=publisher, registry=ToolRegistry({}),
                              verifier=verifier, topic_prefix=prefix, group_id=GROUP,
                              metrics=ExecutorMetrics(registry, tenants=verifier.tenants))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    progress = Progress(bootstrap, topic, f"{prefix}{GROUP}")
    running = asyncio.create_task(service.run())
    try:
        await asyncio.to_thread(produce, producer, codec, topic, actions(scenario, range(WARMUP), "warm"))
        end, _ = await progress.caught_up()
        gc.collect()
        start_rss, load_before = rss_bytes(), load()
        samples: list[tuple[int, int]] = []
        per_round: list[dict[str, Any]] = []
        for r in range(rounds):
            batch = actions(scenario, range(r * per, (r + 1) * per), "a")
            began = time.monotonic()
            await asyncio.to_thread(produce, producer, codec, topic, batch)
            new_end, reached = await progress.caught_up()
            read, end = new_end - end, new_end
            gc.collect()
            rss = rss_bytes()
            samples.append(((r + 1) * per, rss))
            per_round.append({"records_read": read, "catch_up_s": round(reached - began, 2),
                              "records_per_s": round(read / max(0.001, reached - began)),
                              "rss_mb": round(rss / 2**20, 1), "ledger": len(service._ledger)})
            print(f"{scenario.name} round {r + 1}/{rounds}: {json.dumps(per_round[-1])}", file=sys.stderr, flush=True)
        gauge = registry.get_sample_value("rcaflow_executor_ledger_actions")
        ledger_end = len(service._ledger)  # the gauge's own source, to check the gauge against
    finally:
        service.stop()
        await running
        await publisher.close()
        progress.close()
    rates = [r["records_per_s"] for r in per_round]
    return {
        "what": scenario.what,
        "actions": rounds * per,
        "records_read": sum(r["records_read"] for r in per_round),
        "rss_start_mb": round(start_rss / 2**20, 1),
        "rss_end_mb": round(samples[-1][1] / 2**20, 1),
        "rss_bytes_per_action": round(slope_per_action(samples)),
        "ledger_actions_end": ledger_end,
        "ledger_gauge_end": gauge,
        "records_per_s_catching_up": {"median": round(statistics.median(rates)), "min": min(rates),
                                      "max": max(rates)},
        "load_avg_before": load_before,
        "load_avg_after": load(),
        "rounds": per_round,
    }


# ------------------------------------------------------------------------------------------- driving
def run_child(bootstrap: str, name: str, rounds: int, per: int) -> dict[str, Any]:
    """One scenario in a fresh process (see the module docstring); its result is its last stdout line."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{name}.log"
    print(f"executor memory bench: {name}, {rounds} rounds of {per} actions (executor log: {log}) ...",
          file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "benchmarks.executor_memory_bench", "--child", name,
                           "--bootstrap", bootstrap, "--rounds", str(rounds), "--per", str(per),
                           "--log-file", str(log)],
                          cwd=ROOT, stdout=subprocess.PIPE, check=True)
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def run(rounds: int, per: int, names: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rcaflow-execmem-") as tmp_name, \
            bench_broker(Path(tmp_name)) as (bootstrap, broker_kind):
        scenarios = {name: run_child(bootstrap, name, rounds, per) for name in names}
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "broker": broker_kind,
        "machine": f"{os.cpu_count()} CPUs, shared (load average recorded per scenario)",
        "python": platform.python_version(),
        "how": f"ExecutorService alone, {rounds} rounds x {per} actions per scenario after {WARMUP} warm-up "
               f"records, {PARTITIONS} partitions; sampled (gc.collect, VmRSS) once the group's committed offsets "
               f"reached the topic's end and stayed {QUIET_S:g} s; RSS per action = least-squares slope over the "
               "last 2/3 of the rounds; records/s = records read in a round / (caught up - round's first produce)",
        "scenarios": scenarios,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--per", type=int, default=2000, help="actions per round")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--log-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        # The executor logs every refusal, as in production; to a file, so the progress lines stay readable.
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                            filename=args.log_file)
        if not args.bootstrap:
            parser.error("--child needs --bootstrap")
        result = asyncio.run(measure(args.bootstrap, SCENARIOS[args.child], args.rounds, args.per))
        print(json.dumps(result, ensure_ascii=False), flush=True)
        return 0
    names = [n for n in args.scenarios.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    result = run(args.rounds, args.per, names)
    write_results("executor_memory", result, args.out)
    print(json.dumps({k: v for k, v in result.items() if k != "scenarios"}
                     | {"scenarios": {n: {k: v for k, v in s.items() if k != "rounds"}
                                      for n, s in result["scenarios"].items()}}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
