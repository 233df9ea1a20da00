"""Case 5: poison and oversize inputs of every entry point, mixed into normal traffic.

IMAP: a mail declaring charset=utf-7, broken MIME, a lying charset, an unknown charset, a mail over
10 MiB. POST /events and /webhook: an oversize body, malformed JSON, the wrong shape, an oversize label.
The normal inputs all come through; each poison one is in dead-letter with a reason (or, for the
charsets the parser can still read, comes through as an alert), or is refused with a 4xx and a reason.

Guards: the worker's normalize stage sends what it cannot parse to dead-letter and carries on (one
decode at the edge); the IMAP producer keeps a mail over ``max_message_bytes`` in dead-letter instead of
fetching it; the API's body limits, its validation (422 naming the field) and its refusals (4xx with the
reason, kept in dead-letter).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from schemas.codec import Codec
from streams.broker import EmbeddedBroker
from tests.faults import mails
from tests.faults.accounting import Ledger, Row, account_flow, account_mails, short
from tests.faults.conftest import TOKEN, Pipeline, mails_count
from tests.faults.load import deliver, run_id
from tests.faults.test_kill_api import seed
from tests.integration.imap.imap_helpers import Dovecot

POISON_MAILS: dict[str, Callable[[str, int], bytes]] = {
    "utf-7 charset": mails.utf7_mail,
    "broken MIME": mails.broken_mime_mail,
    "lying charset (us-ascii, GB18030 bytes)": mails.lying_charset_mail,
    "unknown charset": mails.unknown_charset_mail,
    "oversize mail (> 10 MiB)": mails.oversize_mail,
}
#: Poison the parser cannot read at all: these must be in dead-letter (the others may also come through).
MUST_DEAD_LETTER = {"utf-7 charset", "broken MIME", "oversize mail (> 10 MiB)"}


def webhook(run: str, n: int, workload: str | None = None) -> dict[str, object]:
    labels = {"alertname": "JenkinsRestarted", "severity": "warning", "cluster": mails.CLUSTER,
              "namespace": mails.NAMESPACE, "workload": workload or f"jenkins-wh-{run}-{n}"}
    return {"version": "4", "groupKey": f"{{}}:{{alertname=\"JenkinsRestarted\",n=\"{run}-{n}\"}}",
            "status": "firing", "receiver": "rcaflow",
            "alerts": [{"status": "firing", "labels": labels, "annotations": {"summary": "restarted"},
                        "startsAt": "2026-11-25T09:20:00Z", "fingerprint": f"{run}{n:08d}"}]}


def poison_requests(run: str) -> dict[str, tuple[str, bytes]]:
    big_annotation = {**seed(run, 10**6), "raw": {"mail_subject": "x" * 3000}}
    oversize_event = json.dumps({**seed(run, 10**6 + 1), "pad": "x" * (300 * 1024)}).encode()
    label_event = seed(run, 10**6 + 2)
    label_event["labels"] = {"workload": "w" * 5000}
    oversize_hook_body = json.dumps({**webhook(run, 10**6), "pad": "x" * (5 * 1024 * 1024)}).encode()
    return {
        "/events oversize body (300 KiB)": ("/events", oversize_event),
        "/events malformed JSON": ("/events", b'{"alert": "JenkinsRestarted", "severity": '),
        "/events wrong shape": ("/events", json.dumps({"alert": 7, "labels": ["not", "a", "map"]}).encode()),
        "/events oversize label (5000 chars)": ("/events", json.dumps(label_event).encode()),
        "/events oversize subject (3000 chars)": ("/events", json.dumps(big_annotation).encode()),
        "/webhook oversize body (5 MiB)": ("/webhook", oversize_hook_body),
        "/webhook malformed JSON": ("/webhook", b'{"alerts": [{"labels": '),
        "/webhook wrong shape": ("/webhook", json.dumps({"alerts": "nope"}).encode()),
        "/webhook oversize label (9 KiB)": ("/webhook", json.dumps(webhook(run, 10**6 + 1, "w" * 9216)).encode()),
    }


def wait_ready(url: str, alive: Callable[[], None], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the API at {url} never became ready")


def test_poison_and_oversize_mixed_into_normal_traffic(broker: EmbeddedBroker, dovecot: Dovecot, codec: Codec,
                                                       tmp_path: Path, record_row: list[Row]) -> None:
    n = mails_count()
    normal_mails, normal_posts = max(10, n // 2), max(5, n // 10)
    run = run_id()
    raws: list[bytes] = []
    poison_ids: dict[str, str] = {}
    step = max(1, normal_mails // len(POISON_MAILS))
    kinds = iter(POISON_MAILS.items())
    for i in range(normal_mails):
        raws.append(mails.normal_mail(run, i))
        if i % step == step // 2 and (kind := next(kinds, None)) is not None:
            raw = kind[1](run, 10**5 + i)
            poison_ids[kind[0]] = mails.message_id_of(raw)
            raws.append(raw)
    for name, build in kinds:  # any left over
        raw = build(run, 2 * 10**5 + len(poison_ids))
        poison_ids[name] = mails.message_id_of(raw)
        raws.append(raw)
    answers: dict[str, tuple[int, str]] = {}
    acked: set[str] = set()
    with Pipeline(broker.bootstrap, tmp_path, roles=("api", "worker", "executor"), name="poison") as pipe, \
            Ledger(pipe.bootstrap, codec, pipe.prefix) as ledger:
        delivered = deliver(dovecot, raws)
        pipe.start_ingest(dovecot)
        wait_ready(pipe.api_url, pipe.stack.check)
        poison = iter(poison_requests(run).items())
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        with httpx.Client(base_url=pipe.api_url, headers=headers, timeout=30) as client:
            for i in range(normal_posts):
                path, body = ("/events", seed(run, i)) if i % 2 else ("/webhook", webhook(run, i))
                response = client.post(path, content=json.dumps(body).encode())
                assert response.status_code == 202, f"a normal {path} post was refused: {response.text}"
                acked.update(e["fingerprint"] for e in response.json()["events"])
                if (bad := next(poison, None)) is not None:
                    response = client.post(bad[1][0], content=bad[1][1])
                    answers[bad[0]] = (response.status_code, response.text[:300])
            for name, (bad_path, bad_body) in poison:
                response = client.post(bad_path, content=bad_body)
                answers[name] = (response.status_code, response.text[:300])

        def done(led: Ledger) -> bool:
            return (account_mails(led, delivered).lost == 0
                    and account_flow(led, expected_fingerprints=acked).lost == 0)

        ledger.settle(done, timeout=max(180.0, n * 0.6), alive=pipe.stack.check)
        account = account_mails(ledger, delivered)
        flow = account_flow(ledger, expected_fingerprints=acked)
        letters = ledger.letters()
        raw_by_id = {m.message_id: pos for pos, m in ledger.raw_mails() if m is not None}
        out_positions = {(e.source.topic, e.source.partition, e.source.offset) for e in ledger.events()}

    def fate(message_id: str) -> str:
        pos = raw_by_id.get(message_id)
        for letter in letters:
            imap_letter = letter.offset is None and (letter.key or b"").decode().endswith(message_id)
            worker_letter = pos is not None and (letter.source_topic, letter.partition, letter.offset) == pos
            if (imap_letter or worker_letter) and letter.reason:
                return f"dead-letter ({letter.stage}: {letter.reason[:80]})"
        if pos is not None and pos in out_positions:
            return "came through as an alert"
        return "LOST"

    mail_fates = {name: fate(mid) for name, mid in poison_ids.items()}
    problems: dict[str, object] = {**account.flow.problems(), **flow.problems()}
    if account.not_ingested or account.unaccounted:
        problems["mails unaccounted"] = account.not_ingested + [str(p) for p in account.unaccounted]
    bad_mails = {k: v for k, v in mail_fates.items()
                 if v == "LOST" or (k in MUST_DEAD_LETTER and not v.startswith("dead-letter"))}
    if bad_mails:
        problems["poison mails not dead-lettered"] = bad_mails
    not_refused = {k: v for k, v in answers.items() if not (400 <= v[0] < 500 and _has_reason(v[1]))}
    if not_refused:
        problems["poison requests not refused with a reason"] = not_refused
    refused = sum(1 for v in answers.values() if 400 <= v[0] < 500)
    row = Row(fault="poison + oversize input (IMAP, /events, /webhook) in normal traffic",
              inputs=len(delivered) + normal_posts + len(answers),
              outputs=account.normalized + len(acked) - len(flow.missing_events), dead_letters=len(letters),
              refused=refused, duplicates=account.duplicates + flow.duplicates,
              lost=account.lost + flow.lost + len(bad_mails) + len(not_refused),
              notes="; ".join(f"{k}: {v.split(' (')[0]}" for k, v in mail_fates.items()), details=problems)
    record_row.append(row)
    assert len(answers) == len(poison_requests(run))
    assert not bad_mails, bad_mails
    assert not not_refused, not_refused
    assert row.lost == 0, short(problems)
    assert row.duplicates == 0, short(problems)


def _has_reason(text: str) -> bool:
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("detail") or body.get("reason"))


pytestmark = pytest.mark.timeout(1200)
