"""Issue 12: a failed Graph maintenance round is tried again with backoff, honouring Graph's Retry-After.

It used to be a fixed 60 s whatever happened: a 2-second blip cost a minute of missed mail, and a
throttled app was called again before Graph allowed it. Against the Graph stand-in answering as Graph
documents throttling (429/503 with Retry-After, tests/support/graph.py).
"""

from __future__ import annotations

import asyncio

import pytest

from producers.msgraph import FileSpool, GraphIngest, RetryPolicy
from tests.support.graph import ThrottlingGraph
from tests.unit.producers.msgraph.conftest import USER, RecordingPublisher, Sleeps, asgi_http, graph_client, make_config

SUBSCRIPTIONS = "/subscriptions"
ROUNDS = RetryPolicy(base_seconds=5.0, cap_seconds=60.0)


def _rounds(graph: ThrottlingGraph, tmp_path: object, *, rounds: int, rand: float = 1.0) -> tuple[list[float], int]:
    """Runs the maintenance loop for ``rounds`` waits; returns the waits it asked for and the subscriptions made."""
    waits: list[float] = []
    stop = asyncio.Event()

    async def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) > rounds:
            stop.set()

    async def go() -> None:
        async with asgi_http(graph) as http:
            client = graph_client(graph, Sleeps(), http, retry=RetryPolicy(max_attempts=2, base_seconds=0.5,
                                                                           cap_seconds=1.0,
                                                                           max_retry_after_seconds=30))
            ingest = GraphIngest(make_config(round_retry=ROUNDS), client, RecordingPublisher(),
                                 FileSpool(tmp_path), rand=lambda: rand)  # type: ignore[arg-type]
            await ingest.maintain(stop, 60.0, initial_delay_seconds=0.0, wait=wait)

    asyncio.run(go())
    return waits, len(graph.subscriptions)


def test_a_throttled_round_waits_exactly_what_graphs_retry_after_says(tmp_path: object) -> None:
    graph = ThrottlingGraph()
    # 429 for two rounds with Retry-After 45, beyond what the client waits in-line (30 s): each round gives up
    # at once and the loop waits out the hint.
    graph.throttle("GET", SUBSCRIPTIONS, times=2, retry_after=45)
    waits, subscribed = _rounds(graph, tmp_path, rounds=3)
    assert waits == [0.0, 45.0, 45.0, 60.0]
    assert subscribed == 1  # the third round got through and created the mailbox's subscription


def test_failed_rounds_back_off_exponentially_up_to_the_cap_then_return_to_the_interval(tmp_path: object) -> None:
    graph = ThrottlingGraph()
    graph.throttle("GET", SUBSCRIPTIONS, times=2 * 6, status=503, retry_after=None)  # six failed rounds, no hint
    waits, subscribed = _rounds(graph, tmp_path, rounds=7)
    assert waits == [0.0, 5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    assert subscribed == 1


@pytest.mark.parametrize("rand", [0.0, 0.37, 0.999])
def test_the_backoff_is_jittered_below_its_ceiling(tmp_path: object, rand: float) -> None:
    graph = ThrottlingGraph()
    graph.throttle("GET", SUBSCRIPTIONS, times=2 * 3, status=503, retry_after=None)
    waits, _ = _rounds(graph, tmp_path, rounds=4, rand=rand)
    assert waits == [0.0, *(pytest.approx(c * rand) for c in (5.0, 10.0, 20.0)), 60.0]


def test_the_stand_in_throttles_as_graph_documents(tmp_path: object) -> None:
    graph = ThrottlingGraph()
    graph.throttle("GET", SUBSCRIPTIONS, times=1, retry_after=7)

    async def go() -> tuple[int, str | None, str]:
        async with asgi_http(graph) as http:
            token = graph.issue_token()
            answer = await http.get(f"/v1.0{SUBSCRIPTIONS}", headers={"Authorization": f"Bearer {token}"})
            return answer.status_code, answer.headers.get("Retry-After"), answer.json()["error"]["code"]

    assert asyncio.run(go()) == (429, "7", "TooManyRequests")
    assert USER  # the mailbox the rounds subscribe to
