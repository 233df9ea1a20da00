"""The API's background loops come back after failures, say which is down and why, and ask for a restart."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streams.api.loops import LoopHandle, Loops, LoopState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_loop_is_restarted_until_it_comes_up_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[int] = []

    async def flaky(handle: LoopHandle) -> None:
        attempts.append(1)
        if len(attempts) < 4:
            raise ConnectionError("topic rcaflow.actions is not available")
        handle.up()
        await handle.stop_event.wait()

    async def go() -> dict[str, object]:
        loops = Loops(initial_backoff_s=0.001, max_backoff_s=0.002)
        loops.add("actions-feed", flaky)
        loops.start()
        async with asyncio.timeout(10):
            while not loops.ready():
                await asyncio.sleep(0.001)
        report = loops.report()["actions-feed"]
        await loops.stop()
        return report

    with caplog.at_level(logging.INFO, logger="streams.api.loops"):
        report = asyncio.run(go())
    assert len(attempts) == 4
    assert report["state"] == "up" and report["restarts"] == 3
    downs = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(downs) == 1 and "topic rcaflow.actions is not available" in downs[0].getMessage()
    assert any("is up again" in r.getMessage() for r in caplog.records)


def test_a_loop_down_too_long_makes_the_process_unhealthy_and_says_why() -> None:
    clock = Clock()

    async def broken(handle: LoopHandle) -> None:
        raise ConnectionError("all brokers down")

    async def go() -> tuple[list[str], list[str], dict[str, object]]:
        loops = Loops(initial_backoff_s=0.001, max_backoff_s=0.002, unhealthy_after_s=60, clock=clock)
        loops.add("actions-feed", broken)
        loops.start()
        async with asyncio.timeout(10):
            while loops.report()["actions-feed"]["state"] != LoopState.DOWN.value:
                await asyncio.sleep(0.001)
        early = loops.unhealthy()
        clock.now += 61
        late = loops.unhealthy()
        report = loops.report()["actions-feed"]
        await loops.stop()
        return early, late, report

    early, late, report = asyncio.run(go())
    assert early == []
    assert len(late) == 1 and "actions-feed" in late[0] and "all brokers down" in late[0]
    assert report["state"] == "down" and "ConnectionError: all brokers down" in str(report["reason"])


def test_a_loop_that_never_comes_up_is_unhealthy_too() -> None:
    clock = Clock()

    async def stuck(handle: LoopHandle) -> None:
        await handle.stop_event.wait()  # alive, but never caught up

    async def go() -> list[str]:
        loops = Loops(unhealthy_after_s=60, clock=clock)
        loops.add("approvals-feed", stuck)
        loops.start()
        clock.now += 61
        problems = loops.unhealthy()
        assert not loops.ready()
        await loops.stop()
        return problems

    assert "approvals-feed" in asyncio.run(go())[0]
