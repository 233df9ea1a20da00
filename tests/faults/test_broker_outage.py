"""Case 4: stop the broker for 30 s under load (mails keep arriving in dovecot), start it again on the same
data dir and port, count.

Guards: the IMAP producer moves its checkpoint only after the broker acked the mail and retries with
backoff while the broker is away (neither dead-lettering a good mail nor exiting); the worker and
executor commit offsets only after their outputs were acked, so nothing read before the outage is lost
and nothing is repeated after it. That includes the decide agent's repartition: aiokafka fails every
pending send at once when the broker goes away, and Faust's own ``group_by`` forward (not awaited, not
retried) was dropped there while its rca-result was acked; the worker's decide-route agent now sends it
itself. A role that exits anyway is started again (as a supervisor would) so the count can still be made,
and the case fails saying so.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from schemas.codec import Codec
from streams.broker import BrokerError, EmbeddedBroker
from tests.faults.accounting import Ledger, Row, account_mails, mail_row, mails_done, short
from tests.faults.conftest import SETTLE_ABANDONED_ENV, Pipeline, mails_count
from tests.faults.load import deliver, normal_mails, progress, run_id
from tests.integration.imap.imap_helpers import Dovecot

OUTAGE_S = 30.0


def restart_on_same_port(broker: EmbeddedBroker, patience: float = 120.0) -> float:
    """Start the stopped broker again on its port; returns how long it was down.

    The broker seam refuses a fixed port that a plain bind() cannot take, and the connections the stop
    closed keep it in TIME_WAIT for up to a minute; so this tries again until the port is free.
    """
    stopped = time.monotonic() - OUTAGE_S
    deadline = time.monotonic() + patience
    while True:
        try:
            broker.start()
            return time.monotonic() - stopped
        except BrokerError as exc:
            if "already in use" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def test_broker_stopped_for_30s_under_load(own_broker: EmbeddedBroker, dovecot: Dovecot, codec: Codec,
                                            tmp_path: Path, record_row: list[Row]) -> None:
    n = mails_count()
    run = run_id()
    with Pipeline(own_broker.bootstrap, tmp_path, roles=("worker", "executor"), env=SETTLE_ABANDONED_ENV,
                  name="broker-outage") as pipe:
        with Ledger(pipe.bootstrap, codec, pipe.prefix) as ledger:
            delivered = deliver(dovecot, normal_mails(run, range(n // 2)))
            pipe.start_ingest(dovecot)
            progress(lambda: len(ledger.incident_records()), n // 5, timeout=300, alive=pipe.stack.check,
                     poll=ledger.poll)
        port = own_broker.port
        own_broker.stop()
        stopped = time.monotonic()
        delivered += deliver(dovecot, normal_mails(run, range(n // 2, n)))
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        exited = [role for role, child in pipe.stack.children.items() if child.poll() is not None]
        started_after = restart_on_same_port(own_broker)
        assert own_broker.port == port
        ingest = pipe.stack.children["ingest"]
        revived: list[str] = []

        def supervise() -> None:
            revived.extend(pipe.revive())
            if ingest.poll() is not None and pipe.stack.children["ingest"] is ingest:
                revived.append("ingest")
                pipe.start_ingest(dovecot)

        with Ledger(pipe.bootstrap, codec, pipe.prefix) as ledger:
            ledger.settle(mails_done(delivered), timeout=max(240.0, n * 0.8), alive=supervise)
            account = account_mails(ledger, delivered)
            letters = ledger.letters()
    row = mail_row(f"broker stopped {OUTAGE_S:.0f} s under load, started again", account, normal_letters=letters,
                   notes=f"broker back after {started_after:.0f} s; exited during the outage: "
                         f"{', '.join(exited) or 'none'}; restarted after: {', '.join(revived) or 'none'}; "
                         f"{account.flow.finished} actions finished")
    record_row.append(row)
    assert row.lost == 0, short(row.details)
    assert row.duplicates == 0, short(row.details)
    # Every mail here is a good one: an outage is no reason to park it in dead-letter for a human.
    assert not letters, short(row.details)
    # Nor to exit: `rcaflow run` does not restart a role, so one that gives up stops the whole pipeline.
    assert not exited and not revived, f"exited during the outage: {exited}; after it: {revived}"


pytestmark = pytest.mark.timeout(1200)
