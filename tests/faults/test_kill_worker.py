"""Case 1: kill -9 the worker mid-load (3 times) (mails through dovecot → `rcaflow ingest imap` → raw-mail → worker →
executor), start it again, count.

Guards: the worker sends outputs before it commits its input offsets, and every id is derived from its
input (event id from the raw-mail position, incident id from fingerprint + opening event), so a record
re-delivered after the crash yields the same ids and the dedup table counts it once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.codec import Codec
from schemas.topics import RAW_MAIL
from streams.broker import EmbeddedBroker
from tests.faults.accounting import Ledger, Row, account_mails, mail_row, mails_done, rejected_note, short
from tests.faults.conftest import Pipeline, mails_count
from tests.faults.load import deliver, normal_mails, progress, run_id
from tests.integration.imap.imap_helpers import Dovecot

KILLS = 3


def test_worker_killed_mid_load(broker: EmbeddedBroker, dovecot: Dovecot, codec: Codec, tmp_path: Path,
                                record_row: list[Row]) -> None:
    n = mails_count()
    run = run_id()
    with Pipeline(broker.bootstrap, tmp_path, roles=("worker", "executor"), name="kill-worker") as pipe, \
            Ledger(pipe.bootstrap, codec, pipe.prefix) as ledger:
        delivered = deliver(dovecot, normal_mails(run, range(n // 2)))
        pipe.start_ingest(dovecot)
        # Kill while the worker is well into the load, KILLS times (a fifth, two fifths ... of the mails have
        # become incidents); each restart meets a backlog, recovers its tables and seeks its partitions.
        for k in range(1, KILLS + 1):
            progress(lambda: len(ledger.incident_records()), n * k // (KILLS + 2), timeout=300,
                     alive=pipe.stack.check, poll=ledger.poll)
            pipe.kill("worker")
            if k == 1:
                delivered += deliver(dovecot, normal_mails(run, range(n // 2, n)))
            pipe.restart("worker")
        ledger.settle(mails_done(delivered), timeout=max(180.0, n * 0.6), alive=pipe.stack.check)
        account = account_mails(ledger, delivered)
        letters = ledger.letters()
        # Where the worker's group stands on raw-mail: below the lost records (stalled) or past them (skipped).
        offsets = ledger.committed(f"{pipe.prefix}rcaflow", RAW_MAIL)
    row = mail_row(f"kill -9 worker mid-load ({KILLS} times), restart", account, normal_letters=letters,
                   notes=f"{account.flow.actions} action ids, {account.flow.finished} finished; "
                         f"{rejected_note(account.flow)}")
    if row.lost:
        row.details["worker group on raw-mail (partition: committed, end)"] = offsets
    record_row.append(row)
    assert account.raw_records >= n
    assert row.lost == 0, short(row.details)
    assert row.duplicates == 0, short(row.details)
    assert not letters, short(row.details)


#: The load takes minutes at the default 500 mails; the suite-wide 300 s limit is for single tests.
pytestmark = pytest.mark.timeout(1200)
