"""One tenant at 10× its ingest quota: the others' POST /events latency with and without the storm.

Runs `rcaflow api` on the embedded broker with three tenants, each with a quota of
``--quota`` alerts/min. Phase 1: the two quiet tenants post at half their quota. Phase 2: the
same, while the noisy tenant posts at 10× its quota. Reports the quiet tenants' accept latency
(202 = the broker acked) in both phases, how many of the noisy tenant's posts were accepted
and deferred (429), and whether any quiet post was refused. Intake only: the worker is not
running, so this measures the API's admission, not the pipeline's end-to-end latency.

    python -m benchmarks.tenant_quota_bench --seconds 20 --quota 600
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.results import RESULTS, write_results
from streams.settings import KafkaSettings, Settings
from streams.wiring.supervisor import Stack

TENANTS = ("noisy", "quiet1", "quiet2")
SEED: dict[str, Any] = {
    "alert": "PrometheusRemoteWriteBehind", "severity": "P2",
    "labels": {"cluster": "c1", "namespace": "insight-system", "workload": "prometheus-0", "component": "prometheus"},
    "metrics": {"times": 1, "first_occur": "2026-12-06T09:00:00Z"},
    "raw": {"mail_subject": "s", "mail_id": "<1@x>"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)


def _sender(url: str, tenant: str, per_s: float, seconds: float, out: dict[str, Any]) -> None:
    """Posts at ``per_s`` for ``seconds`` (paced, one connection), recording latency and status codes."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    interval = 1.0 / per_s
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {tenant}-token"}) as client:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            due = start + n * interval
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            body = {**SEED, "labels": {**SEED["labels"], "workload": f"{tenant}-{n}"}}
            began = time.perf_counter()
            response = client.post(url, json=body)
            latencies.append((time.perf_counter() - began) * 1000)
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
            n += 1
    out[tenant] = {"sent": n, "codes": codes, "latencies": latencies}


def _phase(url: str, rates: dict[str, float], seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    threads = [threading.Thread(target=_sender, args=(url, t, r, seconds, out)) for t, r in rates.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    lat = result["latencies"]
    return {"sent": result["sent"], "codes": {str(k): v for k, v in sorted(result["codes"].items())},
            "latency_ms": {"p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99), "max": round(max(lat or [0.0]), 2)}}


def run(seconds: float, quota: float) -> dict[str, Any]:
    port = _free_port()
    prefix = f"qbench-{uuid.uuid4().hex[:8]}."
    env = {**os.environ, "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix, "RCAFLOW_API__PORT": str(port),
           "RCAFLOW_LOG_LEVEL": "WARNING"}
    for tenant in TENANTS:
        key = f"RCAFLOW_TENANTS__{tenant.upper()}__"
        env |= {f"{key}TOKEN": f"{tenant}-token", f"{key}NAMESPACES": '["insight-system"]',
                f"{key}SENDERS": f'["*@{tenant}.test"]', f"{key}INGEST__ALERTS_PER_MINUTE": str(quota)}
    quiet_rate = quota / 60 / 2  # half their quota
    noisy_rate = quota / 60 * 10  # ten times its quota
    with tempfile.TemporaryDirectory(prefix="rcaflow-qbench-") as tmp:
        settings = Settings(kafka=KafkaSettings(topic_prefix=prefix,
                                                bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS")))
        with Stack(settings, roles=("api",), env=env, log_dir=Path(tmp) / "logs", data_dir=Path(tmp) / "broker") as st:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                st.check()
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("rcaflow api did not come up")
                time.sleep(0.3)
            url = f"{base}/events"
            _phase(url, {"quiet1": 2.0, "quiet2": 2.0}, 3.0)  # warm-up: connections, metadata, producer id
            calm = _phase(url, {"quiet1": quiet_rate, "quiet2": quiet_rate}, seconds)
            storm = _phase(url, {"quiet1": quiet_rate, "quiet2": quiet_rate, "noisy": noisy_rate}, seconds)
            throttled = [line for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines()
                         if line.startswith("rcaflow_ingest_throttled_total{")]
            kind = st.broker.kind if st.broker else "external"
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "broker": kind,
        "what": "POST /events accept latency of two quiet tenants (each at half its quota) without and with a "
                "third tenant posting at 10x its quota; intake only (no worker)",
        "quota_per_minute": quota,
        "seconds_per_phase": seconds,
        "calm": {t: _summary(r) for t, r in sorted(calm.items())},
        "storm": {t: _summary(r) for t, r in sorted(storm.items())},
        "throttled_metric": throttled,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--quota", type=float, default=600.0, help="alerts per minute, each tenant")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.seconds, args.quota)
    write_results("tenant_quota", result, args.out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
