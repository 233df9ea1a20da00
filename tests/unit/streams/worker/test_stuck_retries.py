"""A transient failure is never given up on, but a long one shows: gauges, a sparse log, /readyz naming the stage."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams.worker.failures import CURRENT_STAGE, Backoff, BrokerUnavailableError, RetryBoard, retry_transient
from streams.worker.health import health_app

FAST = Backoff(base_s=0.001, cap_s=0.002)


class Outage:
    """A dependency that is down until ``up`` is set; each call raises what aiokafka's sends are mapped to."""

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if not self.up.is_set():
            raise BrokerUnavailableError("broker did not take a record for incidents: KafkaTimeoutError",
                                         topic="incidents")
        return "acked"


def _get(app: Any, path: str) -> tuple[int, dict[str, Any]]:
    answer: list[str] = []
    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": ""},
                        lambda status, _headers: answer.append(status)))
    return int(answer[0].split()[0]), json.loads(body)


def test_a_record_stuck_in_retry_is_on_the_gauges_and_readyz_names_its_stage_until_it_goes_through() -> None:
    board = RetryBoard()
    registry = CollectorRegistry()
    registry.register(board)
    app = health_app(board, stuck_after_s=0.0, registry=registry)

    async def scenario() -> tuple[str, dict[str, Any], int, str, int, dict[str, Any]]:
        outage = Outage()
        CURRENT_STAGE.set("rca")
        task = asyncio.create_task(retry_transient(outage, "sending to incidents", backoff=FAST, board=board))
        while outage.calls < 20:
            await asyncio.sleep(0.001)
        during = generate_latest(registry).decode()
        code, body = _get(app, "/readyz")
        outage.up.set()
        result = await task
        after_code, after = _get(app, "/readyz")
        return during, body, code, result, after_code, after

    during, stuck, code, result, after_code, after = asyncio.run(scenario())
    assert 'rcaflow_stage_retrying_records{stage="rca"} 1.0' in during
    assert 'rcaflow_stage_retrying_seconds{stage="rca"}' in during
    assert code == 503 and stuck["status"] == "stuck"
    assert stuck["stuck"]["rca"]["what"] == "sending to incidents"
    assert stuck["stuck"]["rca"]["attempts"] >= 19
    assert "KafkaTimeoutError" in stuck["stuck"]["rca"]["last_error"]
    # It was never given up on: the record went through once the broker was back, and the board is clear.
    assert result == "acked"
    assert (after_code, after["stuck"]) == (200, {})
    assert 'stage="rca"' not in generate_latest(registry).decode()


def test_readyz_waits_for_the_configured_time_and_healthz_stays_ok() -> None:
    board = RetryBoard()
    app = health_app(board, stuck_after_s=3600.0, registry=CollectorRegistry())

    async def scenario() -> tuple[tuple[int, dict[str, Any]], tuple[int, dict[str, Any]]]:
        outage = Outage()
        CURRENT_STAGE.set("decide")
        task = asyncio.create_task(retry_transient(outage, "decoding", backoff=FAST, board=board))
        while outage.calls < 5:
            await asyncio.sleep(0.001)
        answers = _get(app, "/readyz"), _get(app, "/healthz")
        outage.up.set()
        await task
        return answers

    ready, health = asyncio.run(scenario())
    assert ready[0] == 200 and ready[1]["stuck"] == {}  # retrying, but not for an hour yet
    assert health == (200, {"status": "ok"})


def test_a_long_retry_logs_its_state_at_growing_intervals_not_at_every_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = RetryBoard()

    async def scenario() -> int:
        outage = Outage()
        task = asyncio.create_task(retry_transient(outage, "sending to actions", backoff=FAST, board=board))
        while outage.calls < 200:
            await asyncio.sleep(0.001)
        outage.up.set()
        await task
        return outage.calls

    with caplog.at_level(logging.WARNING, logger="streams.worker.failures"):
        calls = asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # 200 failed attempts in well under the first 10 s: one line, with the backoff state.
    assert calls > 200 and len(warnings) == 1
    assert "retrying for" in warnings[0] and "attempt 1" in warnings[0] and "next in" in warnings[0]


def test_a_permanent_failure_is_raised_at_once_and_leaves_nothing_on_the_board() -> None:
    board = RetryBoard()

    async def refused() -> None:
        raise ValueError("not transient")

    with pytest.raises(ValueError, match="not transient"):
        asyncio.run(retry_transient(refused, "sending", backoff=FAST, board=board))
    assert board.oldest() == {}
