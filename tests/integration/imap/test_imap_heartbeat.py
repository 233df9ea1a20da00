"""The IMAP canary against a real dovecot: the heartbeat moves with the server's keepalives during one IDLE,
and ``rcaflow_imap_connected`` follows the connection."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from producers.imap.metrics import ImapStatsCollector
from tests.integration.imap.imap_helpers import DOVECOT_BIN, Dovecot, KafkaForImap, imap_config, running
from tests.support.imap_server import free_port

FOLDER = "INBOX/Alerts"
HEARTBEAT = "rcaflow_imap_idle_last_activity_timestamp_seconds"


@dataclass
class ChattyDovecot(Dovecot):
    """dovecot sending its IDLE keepalive (``* OK Still here``) every second instead of every two minutes."""

    def write_config(self) -> Path:
        conf = super().write_config()
        conf.write_text(conf.read_text() + "\nimap_idle_notify_interval = 1 secs\n")
        return conf


@pytest.fixture
def chatty_dovecot() -> Iterator[Dovecot]:
    if DOVECOT_BIN is None:
        pytest.skip("dovecot is not installed (Debian: apt-get install -y dovecot-imapd)")
    base = Path(tempfile.mkdtemp(prefix="rcaflow-dovecot-"))
    base.chmod(0o755)
    server = ChattyDovecot(base=base, port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_heartbeat_moves_with_keepalives_during_one_idle(chatty_dovecot: Dovecot, kafka: KafkaForImap) -> None:
    chatty_dovecot.create_folder(FOLDER)
    # IDLE is renewed only every 10 minutes: whatever moves the heartbeat here comes from inside one IDLE.
    config = imap_config(chatty_dovecot, FOLDER, idle_renew_seconds=600)
    registry = CollectorRegistry()
    box = {"mailbox": config.mailbox_id}

    async def scenario() -> tuple[float, float, int, int]:
        async with running(config, kafka) as producer:
            registry.register(ImapStatsCollector(producer, config.mailbox_id))
            await asyncio.wait_for(producer.idling.wait(), 60)
            assert registry.get_sample_value("rcaflow_imap_connected", box) == 1.0
            first = registry.get_sample_value(HEARTBEAT, box)
            assert first is not None
            waits = producer.stats.waits
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            latest = first
            while latest <= first + 1.5 and loop.time() < deadline:  # two keepalives later, at least
                await asyncio.sleep(0.2)
                latest = registry.get_sample_value(HEARTBEAT, box) or first
            return first, latest, waits, producer.stats.waits

    first, latest, waits_before, waits_after = asyncio.run(scenario())
    assert latest > first + 1.5, "the heartbeat did not move with the server's IDLE keepalives"
    assert waits_after == waits_before, "the IDLE was renewed: the test no longer shows keepalives count"
    assert registry.get_sample_value("rcaflow_imap_connected", box) == 0.0  # stopped: disconnected
