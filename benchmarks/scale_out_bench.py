"""One worker against two in one consumer group, on the same backlog: mails/min and the ratio.

Each phase gets its own topic prefix with every topic (public and the worker's internal ones) created with
``--partitions`` partitions, so both workers of the two-worker phase get work. The workers are started and
the group is waited for until it is STABLE with all of them, then warmed up (3 mails through to the audit),
then the backlog goes onto raw-mail at once. Throughput is measured from outside, as in
``benchmarks/floor_bench.py``: mails / (last output record's broker timestamp - start of the backlog).
On a shared machine the load average moves the numbers: it is recorded next to each phase, and two workers
can only help as far as there are free CPUs.

    python -m benchmarks.scale_out_bench --mails 600 --out benchmarks/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from benchmarks.floor_bench import (
    APP_ID,
    bench_broker,
    end_offsets,
    load,
    mail_records,
    pipeline_topics,
    produce,
    rate,
    scan,
    wait_quiet,
)
from benchmarks.results import RESULTS, write_results
from streams.wiring.topics_admin import ensure_topics, worker_topics

ROOT = Path(__file__).resolve().parent.parent


def wait_group(bootstrap: str, group: str, members: int, workers: list[subprocess.Popen[bytes]],
               timeout: float = 180.0) -> None:
    """Until the group is STABLE with ``members`` members (every worker joined and the rebalance ended)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    last = "not described yet"
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.poll() is not None:
                raise SystemExit(f"scale-out bench: a worker exited with {worker.returncode}")
        try:
            description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        except (KafkaException, TimeoutError):  # a loaded broker answers late; the group may not exist yet
            time.sleep(1.0)
            continue
        state = str(description.state).rsplit(".", 1)[-1]
        last = f"{state}, {len(description.members)} members"
        if state == "STABLE" and len(description.members) == members:
            return
        time.sleep(1.0)
    raise SystemExit(f"scale-out bench: group {group} not stable with {members} members: {last}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (/proc/<pid>/stat; 0 where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat), for the share it was busy."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


def run_phase(bootstrap: str, files: list[Path], mails: int, workers: int, partitions: int,
              tmp: Path) -> dict[str, Any]:
    """``workers`` worker processes on a fresh prefix; the backlog's throughput."""
    prefix = f"scale{workers}-{uuid.uuid4().hex[:8]}."
    ensure_topics(bootstrap, prefix, partitions=partitions, internal=worker_topics(prefix, APP_ID, partitions))
    topics = pipeline_topics(prefix)
    outputs = [name for logical, name in topics.items() if logical != "raw-mail"]
    children: list[subprocess.Popen[bytes]] = []
    key = secrets.token_hex(32)
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for n in range(workers):
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
                   "RCAFLOW_WORKER__DATA_DIR": str(tmp / f"{prefix}worker-{n}"), "RCAFLOW_WORKER__METRICS_PORT": "0",
                   "RCAFLOW_WORKER__PARTITIONS": str(partitions), "RCAFLOW_LOG_LEVEL": "WARNING",
                   # The decide agent signs what it approves (no executor here to verify it): a per-run key.
                   "RCAFLOW_SECURITY__DECISION_KEY": key}
            with (logs / f"{prefix}worker-{n}.log").open("ab") as log:
                children.append(subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                                                 stdout=log, stderr=subprocess.STDOUT))
        try:
            wait_group(bootstrap, f"{prefix}{APP_ID}", workers, children)
        except SystemExit:
            for log_file in sorted(logs.glob(f"{prefix}worker-*.log")):
                print(f"--- {log_file.name}\n{log_file.read_text(errors='replace')[-2000:]}", file=sys.stderr)
            raise
        produce(bootstrap, topics["raw-mail"], mail_records(files, "warmup", 3))
        wait_quiet(bootstrap, [topics["audit"]], 3, quiet_s=3.0)
        before = end_offsets(bootstrap, outputs)
        load_before = load()
        cpu_before, busy_before = sum(cpu_seconds(c.pid) for c in children), machine_busy()
        since = produce(bootstrap, topics["raw-mail"], mail_records(files, "backlog", mails))
        wait_quiet(bootstrap, outputs, before + mails * 5)
        cpu_after, busy_after = sum(cpu_seconds(c.pid) for c in children), machine_busy()
        load_after = load()
        scans = {logical: scan(bootstrap, name, since) for logical, name in topics.items()}
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
    last_all = max(s.last_ms or 0 for s in scans.values())
    return {
        "workers": workers,
        "mails": mails,
        "mails_per_min": rate(mails, since, last_all),
        "mails_per_min_to_actions": rate(mails, since, scans["actions"].last_ms or last_all),
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        # What a mail costs the workers in CPU (every worker's user + system time over the backlog and the
        # quiet wait after it): equal in both phases means adding a worker adds capacity wherever a CPU is free.
        "worker_cpu_s_per_1000_mails": round(1000 * (cpu_after - cpu_before) / mails, 2),
        # How busy the whole machine was (broker, workers and anything else running): near 1.0 means the
        # phase was bounded by the machine's CPUs, not by the workers.
        "machine_busy_share": round((busy_after[0] - busy_before[0]) / max(1e-9, (busy_after[1] - busy_before[1])),
                                    2),
    }


def run(mails: int, partitions: int, samples: Path) -> dict[str, Any]:
    files = sorted(samples.glob("*.eml"))
    if not files:
        raise SystemExit(f"no .eml files in {samples}")
    with tempfile.TemporaryDirectory(prefix="rcaflow-scale-out-") as tmp_name:
        tmp = Path(tmp_name)
        with bench_broker(tmp) as (bootstrap, broker_kind):
            one = run_phase(bootstrap, files, mails, 1, partitions, tmp)
            two = run_phase(bootstrap, files, mails, 2, partitions, tmp)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "broker": broker_kind,
        "machine": f"{os.cpu_count()} CPUs, shared (load average recorded per phase)",
        "partitions": partitions,
        "one_worker": one,
        "two_workers": two,
        "ratio_two_over_one": round(two["mails_per_min"] / max(0.1, one["mails_per_min"]), 2),
        # CPU per mail with one worker over CPU per mail with two: 1.0 means no cost of the second worker
        # (coordination, rebalancing); times the CPUs free for workers, it is the speed-up they would give.
        "cpu_per_mail_one_over_two": round(one["worker_cpu_s_per_1000_mails"]
                                           / max(1e-9, two["worker_cpu_s_per_1000_mails"]), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=600)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--samples", type=Path, default=ROOT / "samples")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    print(f"scale-out bench: {args.mails} mails through 1 worker, then through 2 ...", file=sys.stderr)
    result = run(args.mails, args.partitions, args.samples)
    write_results("scale_out", result, args.out)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
