"""Case 3: kill -9 the API (3 times) mid-load while a client posts to POST /events and retries what was not
acknowledged (as Alertmanager does); after the restart every acknowledged input is accounted for.

Guards: a 2xx from the API means the broker acknowledged every record of the request (it answers only
after the publish is acked, 503 + Retry-After when it cannot), so an acknowledged event is on the
normalized topic whatever happens to the process afterwards.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from schemas.codec import Codec
from streams.broker import EmbeddedBroker
from tests.faults.accounting import Ledger, Row, account_flow, short
from tests.faults.conftest import TOKEN, Pipeline, mails_count
from tests.faults.load import run_id
from tests.faults.mails import CLUSTER, NAMESPACE

KILLS = 3


def seed(run: str, n: int) -> dict[str, object]:
    return {
        "alert": "JenkinsRestarted",
        "severity": "P3",
        "labels": {"cluster": CLUSTER, "namespace": NAMESPACE, "workload": f"jenkins-{run}-{n}",
                   "component": "jenkins"},
        "metrics": {"times": 1, "first_occur": "2026-11-25T09:20:00Z"},
        "raw": {"mail_subject": "Control Cluster Details", "mail_id": f"<api-{run}-{n}@faults>"},
    }


@dataclass
class Poster:
    """A sender that retries every input until it is acknowledged (2xx), like Alertmanager."""

    url: str
    acked: dict[int, str] = field(default_factory=dict)  # input number -> fingerprint the API answered
    refused: dict[int, str] = field(default_factory=dict)  # 4xx: never retried
    attempts: int = 0
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, client: httpx.Client, n: int, body: dict[str, object], deadline: float) -> None:
        while time.monotonic() < deadline:
            with self.lock:
                self.attempts += 1
            try:
                response = client.post(f"{self.url}/events", json=body,
                                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code < 300:
                with self.lock:
                    self.acked[n] = response.json()["events"][0]["fingerprint"]
                return
            if response is not None and 400 <= response.status_code < 500:
                with self.lock:
                    self.refused[n] = f"{response.status_code} {response.text[:200]}"
                return
            with self.lock:
                self.failures += 1
            time.sleep(0.5)


def test_api_killed_mid_load(broker: EmbeddedBroker, codec: Codec, tmp_path: Path, record_row: list[Row]) -> None:
    n = mails_count()
    run = run_id()
    with Pipeline(broker.bootstrap, tmp_path, roles=("api", "worker", "executor"), name="kill-api") as pipe, \
            Ledger(pipe.bootstrap, codec, pipe.prefix) as ledger:
        poster = Poster(pipe.api_url)
        deadline = time.monotonic() + max(300.0, n * 1.0)
        with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(poster.send, client, i, seed(run, i), deadline) for i in range(n)]
            killed_at: list[int] = []
            for k in range(1, KILLS + 1):  # each kill may land between a publish and its ack
                while len(poster.acked) < n * k // (KILLS + 1) and time.monotonic() < deadline:
                    pipe.stack.check()
                    time.sleep(0.02)
                pipe.kill("api")  # requests in flight die with it; the client retries them
                killed_at.append(len(poster.acked))
                pipe.restart("api")
            for future in futures:
                future.result()
        expected = set(poster.acked.values())

        def done(led: Ledger) -> bool:
            return account_flow(led, expected_fingerprints=expected).lost == 0

        ledger.settle(done, timeout=max(180.0, n * 0.6), alive=pipe.stack.check)
        flow = account_flow(ledger, expected_fingerprints=expected)
        letters = len(ledger.letters())
    row = Row(fault=f"kill -9 API mid-load ({KILLS} times, client retries), restart", inputs=n,
              outputs=len(expected) - len(flow.missing_events) - len(flow.no_incident), dead_letters=letters,
              refused=len(poster.refused), duplicates=flow.duplicates, lost=flow.lost + (n - len(poster.acked)),
              notes=f"killed after {', '.join(map(str, killed_at))} acks; {poster.attempts} posts, "
                    f"{poster.failures} retried",
              details=flow.problems())
    if poster.refused:
        row.details["refused"] = poster.refused
    record_row.append(row)
    assert len(poster.acked) == n, f"{n - len(poster.acked)} inputs never acknowledged; refused: {poster.refused}"
    assert row.lost == 0, short(row.details)
    assert row.duplicates == 0, short(row.details)


pytestmark = pytest.mark.timeout(1200)
