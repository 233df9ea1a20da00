"""A storm of one alert costs one LLM call: dedup sits before the model, on the real broker and worker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policies import load_policies
from producers.mail import parse_mail
from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import AlertEvent, Engine, EventSource, Incident, RcaResult, Record, SourceKind
from schemas.topics import INCIDENTS, NORMALIZED, RCA_RESULT
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader
from tests.support.loopback import serve
from tests.unit.executors.llm.standin import ChatStandIn, Reply, answer_json

COPIES = 300


@pytest.fixture
def chat() -> Iterator[tuple[ChatStandIn, str]]:
    """The OpenAI-compatible stand-in on a loopback port, answering (at once) every request it gets."""
    standin = ChatStandIn(replies=[Reply(answer_json()) for _ in range(50)])
    with serve(standin.app(), "llm-standin") as url:
        yield standin, f"{url}/v1"


def _etcd_alert(samples_dir: Path, tenant: str) -> AlertEvent:
    parsed = parse_mail((samples_dir / "etcd_latency.eml").read_bytes(), tenant=tenant,
                        received_at=datetime.now(UTC), source=EventSource(kind=SourceKind.FILE))
    event = parsed.events[0]
    return event.model_copy(update={"alert_class": load_policies().classify(event)})


def _llm_results(tenant: str, records: list[Record]) -> list[RcaResult]:
    return [r for r in records if isinstance(r, RcaResult) and r.tenant == tenant and r.engine is Engine.LLM]


def test_three_hundred_copies_of_one_alert_make_one_llm_call(
    broker: object, tmp_path: Path, codec: Codec, samples_dir: Path, chat: tuple[ChatStandIn, str]
) -> None:
    standin, llm_url = chat
    tenant = f"storm-{uuid.uuid4().hex[:6]}"
    seed = _etcd_alert(samples_dir, tenant)
    assert seed.alert_class == "etcd_latency"
    # Same alert again and again: same fingerprint, a new event id each time (a replay would not count).
    copies = [seed.model_copy(update={"event_id": uuid.uuid4().hex[:24]}) for _ in range(COPIES)]

    stack = stack_for(broker.bootstrap, tmp_path, roles=("worker",))  # type: ignore[attr-defined]
    stack.base_env.update({"QWEN_API_KEY": "test-not-a-key", "RCAFLOW_LLM__BASE_URL": llm_url,
                           "RCAFLOW_LLM__ENABLED": "true"})
    with stack:
        prefix = stack.settings.kafka.topic_prefix
        publisher = KafkaPublisher(stack.bootstrap, codec, prefix)

        async def publish() -> None:
            await asyncio.gather(*(publisher.publish(NORMALIZED, f"{tenant}:{e.fingerprint}", e) for e in copies))

        try:
            asyncio.run(publish())
        finally:
            publisher.close_sync()

        incidents = TopicReader(stack.bootstrap, codec, INCIDENTS, prefix, alive=stack.check)
        results = TopicReader(stack.bootstrap, codec, RCA_RESULT, prefix, alive=stack.check)
        try:
            ours = [r for r in incidents.wait_for(
                lambda rs: sum(1 for r in rs if isinstance(r, Incident) and r.tenant == tenant) >= COPIES,
                timeout=90, what=f"{COPIES} incident records") if isinstance(r, Incident) and r.tenant == tenant]
            # One incident, counted up by every copy.
            assert {r.incident_id for r in ours} == {ours[0].incident_id}
            assert max(r.count for r in ours) == COPIES

            results.wait_for(lambda rs: bool(_llm_results(tenant, rs)), timeout=90, what="the LLM's rca-result")
            # Give a wrongly analysed duplicate time to reach the model too (the stand-in answers at once).
            results.poll(5.0)
        finally:
            incidents.close()
            results.close()

    llm = _llm_results(tenant, results.records)
    policy = [r for r in results.records if isinstance(r, RcaResult) and r.tenant == tenant
              and r.engine is Engine.POLICY]
    assert len(standin.requests) == 1
    assert len(llm) == 1 and len(policy) == 1
    assert llm[0].incident_id == ours[0].incident_id
