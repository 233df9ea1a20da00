"""POST /webhook → record on normalized, on the embedded broker.

The API answers 2xx only after the broker acknowledged the record, so the
request latency seen by the sender is an upper bound of "webhook in → record
on normalized". Requests are sent one after another (Alertmanager's pattern).

    python -m benchmarks.webhook_bench --requests 500
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.results import RESULTS, write_results
from streams.settings import KafkaSettings, Settings
from streams.wiring.supervisor import Stack

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "fixtures" / "webhook" / "alertmanager-webhook-v4.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)


def run(requests: int) -> dict[str, Any]:
    body = json.loads(SAMPLE.read_text())
    port = _free_port()
    prefix = f"whbench-{uuid.uuid4().hex[:8]}."
    with tempfile.TemporaryDirectory(prefix="rcaflow-whbench-") as tmp:
        env = {**os.environ, "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix, "RCAFLOW_API__PORT": str(port),
               "RCAFLOW_LOG_LEVEL": "WARNING"}
        settings = Settings(kafka=KafkaSettings(topic_prefix=prefix,
                                                bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS")))
        with Stack(settings, roles=("api",), env=env, log_dir=Path(tmp) / "logs", data_dir=Path(tmp) / "broker") as st:
            url = f"http://127.0.0.1:{port}/webhook"
            with httpx.Client(timeout=30) as client:
                deadline = time.monotonic() + 60
                while True:
                    st.check()
                    try:
                        client.get(f"http://127.0.0.1:{port}/healthz")
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.3)
                for _ in range(20):  # warm-up: connections, metadata, producer id
                    client.post(url, json=body)
                latencies: list[float] = []
                failures = 0
                for i in range(requests):
                    alert = body["alerts"][0]
                    alert["labels"]["pod"] = f"amamba-jenkins-{i}"
                    alert["startsAt"] = datetime.now(UTC).isoformat()
                    started = time.perf_counter()
                    response = client.post(url, json=body)
                    latencies.append((time.perf_counter() - started) * 1000)
                    failures += response.status_code != 202
            kind = st.broker.kind if st.broker else "external"
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "broker": kind,
        "requests": requests,
        "non_202": failures,
        "latency_ms": {"p50": _pct(latencies, 0.5), "p99": _pct(latencies, 0.99), "max": round(max(latencies), 2),
                       "mean": round(statistics.fmean(latencies), 2)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.requests)
    write_results("webhook", result, args.out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
