"""Case 2: kill -9 the executor mid-load, start it again, count.

Guards: the executor writes ``running`` (and waits for the broker's ack) before a side effect, and on
every partition assignment reads the actions topic from the committed offset to the end first, so a
re-delivered approval whose run had started is not run again; a run whose executor died is settled
``failed`` ("interrupted") once its confirm window and stop grace are over, so none stays ``running``.

The actions run for real against a Kubernetes API stand-in that takes 1.5 s per run (tests/faults/slow_cluster.py),
so each kill lands while actions are in flight: between their ``running`` records and the commit of their
approvals' offsets. Removing the ledger check makes this case fail (docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.codec import Codec
from schemas.records import ActionState
from streams.broker import EmbeddedBroker
from tests.faults.accounting import Ledger, Row, account_mails, mail_row, mails_done, short
from tests.faults.conftest import SETTLE_ABANDONED_ENV, TENANT, Pipeline, mails_count
from tests.faults.load import normal_mails, progress, publish_raw, run_id
from tests.faults.slow_cluster import slow_cluster

KILLS = 4


def _finished(ledger: Ledger) -> int:
    return sum(1 for a in ledger.action_records() if a.state in (ActionState.SUCCEEDED, ActionState.FAILED))


def test_executor_killed_mid_load(broker: EmbeddedBroker, codec: Codec, tmp_path: Path,
                                  record_row: list[Row]) -> None:
    n = mails_count()
    run = run_id()
    with slow_cluster(tmp_path) as (cluster, real_runs), \
            Pipeline(broker.bootstrap, tmp_path, roles=("worker", "executor"),
                     env={**SETTLE_ABANDONED_ENV, **real_runs}, name="kill-executor") as pipe, \
            Ledger(pipe.bootstrap, codec, pipe.prefix) as ledger:
        sent = publish_raw(pipe.bootstrap, codec, pipe.prefix, TENANT, normal_mails(run, range(n)))
        # Several times, at each KILLS-th of the actions finished: each kill may land between a run's records
        # and the commit of its approval's offset, the window the ledger pre-scan protects.
        for k in range(1, KILLS + 1):
            progress(lambda: _finished(ledger), n * k // (KILLS + 1), timeout=300, alive=pipe.stack.check,
                     poll=ledger.poll)
            pipe.kill("executor")
            pipe.restart("executor")
        ledger.settle(mails_done(sent), timeout=max(240.0, n * 0.6), alive=pipe.stack.check)
        account = account_mails(ledger, sent)
        letters = ledger.letters()
        interrupted = sum(1 for a in ledger.action_records()
                          if a.state is ActionState.FAILED and (a.result or "").startswith("interrupted"))
        effects_twice = {workload: runs for workload, runs in cluster.runs.items() if runs > 1}
    row = mail_row("kill -9 executor mid-load (4 times), restart", account, normal_letters=letters,
                   notes=f"{account.flow.actions} actions, {account.flow.finished} finished, "
                         f"{interrupted} settled as interrupted; {sum(cluster.runs.values())} runs on the cluster "
                         f"({cluster.delay_s:g} s each)")
    record_row.append(row)
    assert row.lost == 0, short(row.details)
    assert not account.flow.ran_twice, f"actions run twice: {account.flow.ran_twice}"
    assert not effects_twice, short({"workloads acted on twice": effects_twice})
    # The kills landed mid-action (otherwise this case proves nothing about the ledger): a run cut short is
    # settled as interrupted, never run again.
    assert interrupted > 0, "no kill landed while an action was running"
    assert row.duplicates == 0, short(row.details)
    assert not letters, short(row.details)


#: The load takes minutes at the default 500 mails; the suite-wide 300 s limit is for single tests.
pytestmark = pytest.mark.timeout(1200)
