"""The knowledge base in the pipeline: past incidents in the LLM prompt and "seen N times; last fixed by X" in the
first response, from a real Elasticsearch, of the same tenant only; a KB that is down only means no history."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from elasticsearch import Elasticsearch
from pydantic import SecretStr

from executors.llm.prompt import ClassBrief, build_messages
from executors.notify.slack import SlackChannel
from schemas.records import Incident, RcaResult
from streams.kb.similar import SimilarLookup, lookup_from_settings
from streams.kb.store import KbStore
from streams.notify.notifier import Notifier
from streams.settings import KbSettings
from tests.integration.kb.records import T0, lifecycle
from tests.support.es.server import EsNode, free_port
from tests.support.slack import BOT_TOKEN, SlackApiStandIn


@pytest.fixture(scope="module")
def kb(elasticsearch_node: EsNode) -> Iterator[KbStore]:
    with Elasticsearch(elasticsearch_node.url, request_timeout=60) as client:
        store = KbStore(client, prefix=f"kbl{uuid.uuid4().hex[:8]}", replicas=0)
        store.install_template()
        store.apply(lifecycle("acme", "past-1", start=T0))
        store.apply(lifecycle("acme", "past-2", start=T0 + timedelta(days=1), action="scale-vminsert"))
        store.apply(lifecycle("globex", "theirs", start=T0 + timedelta(days=2), action="globex-secret-fix"))
        yield store


def new_triage() -> RcaResult:
    """Today's incident of acme's same alert: the policy triage the first response is posted from."""
    result = next(r for r in lifecycle("acme", "today", start=T0 + timedelta(days=9)) if isinstance(r, RcaResult))
    return result


def lookup(node: EsNode, kb: KbStore) -> SimilarLookup:
    found = lookup_from_settings(KbSettings(elasticsearch_url=node.url, index_prefix=kb.prefix))
    assert found is not None
    return found


def test_the_llm_prompt_carries_the_tenants_past_incidents(elasticsearch_node: EsNode, kb: KbStore) -> None:
    incident: Incident = new_triage().incident
    past = asyncio.run(lookup(elasticsearch_node, kb).past_incidents(incident))
    assert {p.incident_id for p in past} == {"past-1", "past-2"}
    prompt = build_messages(ClassBrief(id="vminsert_write_errors"), incident.event, [], past)[1].content
    assert "fixed by scale-vminsert" in prompt and "past-2" in prompt
    assert "globex" not in prompt and "today" not in json.dumps([p.model_dump() for p in past])


def slack_notifier(standin: SlackApiStandIn, history: SimilarLookup | None) -> Notifier:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=standin.app()), base_url="https://slack.com")
    channel = SlackChannel(client, token=SecretStr(BOT_TOKEN), channel="C0123")
    return Notifier({"acme": {"slack": channel}}, {}, history=history.history_line if history else None)


def test_the_first_response_says_how_often_it_was_seen_and_what_fixed_it(elasticsearch_node: EsNode,
                                                                         kb: KbStore) -> None:
    standin = SlackApiStandIn()
    asyncio.run(slack_notifier(standin, lookup(elasticsearch_node, kb)).handle(new_triage(), []))
    [(method, body)] = standin.calls
    assert method == "chat.postMessage"
    assert "History: seen 2 times before; last fixed by scale-vminsert" in json.dumps(body["blocks"])


def test_without_a_kb_nothing_asks_and_a_kb_that_is_down_only_drops_the_line(elasticsearch_node: EsNode) -> None:
    assert lookup_from_settings(KbSettings()) is None  # not configured: off
    down = lookup_from_settings(KbSettings(elasticsearch_url=f"http://127.0.0.1:{free_port()}",
                                           similar_timeout_s=1.0))
    standin = SlackApiStandIn()
    asyncio.run(slack_notifier(standin, down).handle(new_triage(), []))
    [(_, body)] = standin.calls
    blocks = json.dumps(body["blocks"])
    assert "vminsert cannot reach vmstorage" in blocks and "History:" not in blocks
