"""Case 7: the LLM server returns garbage, times out, answers 429/500/502, truncated JSON, no choices: every
incident still gets its triage result (the policy engine's), nothing is lost, the worker stays up.

Guards: the LLM is a second opinion after the policy triage (its own agent, on rca-result), its client
maps every upstream failure to a typed LlmFailure (retries, circuit breaker), and the llm stage then
keeps the triage instead of failing the record.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.codec import Codec
from schemas.records import Engine
from streams.broker import EmbeddedBroker
from tests.faults.accounting import Ledger, Row, account_mails, mail_row, mails_done, short
from tests.faults.conftest import TENANT, Pipeline, mails_count
from tests.faults.llm_standin import FaultyLlm
from tests.faults.load import normal_mails, publish_raw, run_id
from tests.support.loopback import serve


def test_llm_faults_never_cost_a_triage(broker: EmbeddedBroker, codec: Codec, tmp_path: Path,
                                         record_row: list[Row]) -> None:
    n = max(10, mails_count() // 5)
    run = run_id()
    llm = FaultyLlm(hang_s=6.0)
    with serve(llm.app(), "faulty-llm") as url:
        env = {"QWEN_API_KEY": "faults-not-a-key", "RCAFLOW_LLM__BASE_URL": f"{url}/v1",
               "RCAFLOW_LLM__ENABLED": "true", "RCAFLOW_LLM__TIMEOUT_S": "2"}
        with Pipeline(broker.bootstrap, tmp_path, roles=("worker", "executor"), env=env, name="llm") as pipe, \
                Ledger(pipe.bootstrap, codec, pipe.prefix) as ledger:
            sent = publish_raw(pipe.bootstrap, codec, pipe.prefix, TENANT, normal_mails(run, range(n)))
            ledger.settle(mails_done(sent), timeout=max(240.0, n * 2.0), alive=pipe.stack.check, quiet_s=10.0)
            pipe.stack.check()
            account = account_mails(ledger, sent)
            letters = ledger.letters()
            answered = {r.incident_id for r in ledger.results() if r.engine is Engine.LLM}
    row = mail_row("LLM: garbage, hang, 429, 500/502, truncated JSON, no choices", account, normal_letters=letters,
                   notes=f"{len(answered)} incidents also got an LLM answer; stand-in served "
                         f"{dict(sorted(llm.served.items()))}")
    record_row.append(row)
    assert sum(llm.served.values()) > 0, "the worker never asked the LLM: the case tested nothing"
    assert row.lost == 0, short(row.details)
    assert row.duplicates == 0, short(row.details)
    assert not letters, short(row.details)


pytestmark = pytest.mark.timeout(900)
