"""IMAP producer throughput and latency against a private IMAP server and the embedded (or a given) broker.

1. backlog: N mails (default 5000) already in the folder -> time until all are on raw-mail;
2. latency: M mails appended one at a time while the producer IDLEs -> (record CreateTime on
   raw-mail) - (moment the APPEND completed), p50/p99.

Two servers, so the producer's own share can be told apart from the server's:
- dovecot (default): waits 500 ms after a change before it tells IDLE clients (NOTIFY_DELAY_MSECS in
  its mailbox-watch.c, a compile-time constant), so ~500 ms is its floor; the backlog is dropped
  into the Maildir as an MDA would.
- cyrus: Cyrus IMAP 3.x, whose idled pushes a change to IDLE clients at once; the backlog is
  APPENDed over IMAP (Cyrus owns its spool format). Cyrus leaves Nagle on: a change within ~40 ms
  of "+ idling" waits for our delayed ACK; --append-delay-ms 100 measures mail that lands later.

    python -m benchmarks.bench_imap --mails 5000 --latency-mails 100 [--server dovecot|cyrus] [--bootstrap host:port]

Prints one JSON object. Needs dovecot (Debian: dovecot-imapd) or cyrus-imapd + sasl2-bin, and Java 17
for the embedded Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from producers.imap import ImapConfig, ImapProducer, KafkaCheckpointReader
from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.topics import DEAD_LETTER, INGEST_CHECKPOINTS, RAW_MAIL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The test suite's launchers: one way to run a private dovecot or Cyrus, not two.
from tests.integration.imap.imap_helpers import Dovecot, make_mail  # noqa: E402
from tests.support.cyrus import running_cyrus  # noqa: E402
from tests.support.imap_server import free_port  # noqa: E402

SERVERS = ("dovecot", "cyrus")

FOLDER = "INBOX/Alerts"
BODY = "告警名称 PrometheusRemoteWriteBehind 集群 HK-DCE5-PLATFORM " * 30  # ~2 KB, like a real alert mail


class _Server(Protocol):
    """What the benchmark needs from either launcher."""

    port: int
    user: str
    password: str

    def client(self) -> Any: ...

    def create_folder(self, folder: str) -> None: ...


@contextlib.contextmanager
def _imap_server(name: str) -> Iterator[_Server]:
    if name == "cyrus":
        with running_cyrus() as cyrus:
            yield cyrus
        return
    base = Path(tempfile.mkdtemp(prefix="rcaflow-bench-dovecot-"))
    base.chmod(0o755)
    dovecot = Dovecot(base=base, port=free_port())
    try:
        dovecot.start()
        yield dovecot
    finally:
        dovecot.stop()
        shutil.rmtree(base, ignore_errors=True)


def _preload(server: _Server, mails: int) -> None:
    """Put the backlog in place before the producer starts: files for dovecot, APPENDs for Cyrus."""
    if isinstance(server, Dovecot):
        for n in range(mails):
            server.deliver_file(make_mail(n, body=BODY), FOLDER)
        return
    with server.client() as client:
        for n in range(mails):
            client.append(FOLDER, make_mail(n, body=BODY))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))], 2)


class _ProducerThread:
    """The producer on its own event loop, as `rcaflow ingest imap` would run it."""

    def __init__(self, config: ImapConfig, bootstrap: str, prefix: str) -> None:
        self.config, self.bootstrap, self.prefix = config, bootstrap, prefix
        self.producer: ImapProducer | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="bench-imap", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.ready.wait(60)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - thread boundary: hand the error to stop()
            self.error = exc

    async def _run(self) -> None:
        codec = make_codec(None)
        publisher = KafkaPublisher(self.bootstrap, codec, prefix=self.prefix)
        reader = KafkaCheckpointReader(self.bootstrap, codec, prefix=self.prefix)
        self.producer = ImapProducer(self.config, publisher, reader, topic_prefix=self.prefix)
        self.ready.set()
        try:
            await self.producer.run()
        finally:
            await publisher.close()

    def stop(self) -> None:
        if self.producer is not None:
            self.producer.stop()
        self._thread.join(30)
        if self.error is not None:
            raise self.error


def _tail(bootstrap: str, topic: str) -> Consumer:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    return consumer


def _consume(consumer: Consumer, seen: dict[str, float], until: Callable[[], bool], timeout: float) -> None:
    """Record key -> CreateTime (s) into ``seen`` until ``until()`` holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        msg = consumer.poll(0.05)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            raise RuntimeError(str(err))
        seen[(msg.key() or b"").decode()] = msg.timestamp()[1] / 1000.0


def run(
    bootstrap: str, mails: int, latency_mails: int, server_name: str = "dovecot", append_delay_ms: float = 0.0
) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [
        NewTopic(s.full_name(prefix), s.partitions, replication_factor=1, config=s.configs)
        for s in (RAW_MAIL, DEAD_LETTER, INGEST_CHECKPOINTS)
    ]
    for future in admin.create_topics(topics).values():
        future.result(60)
    with _imap_server(server_name) as server:
        server.create_folder(FOLDER)
        with server.client() as probe:
            greeting = probe.welcome.decode(errors="replace")
        _preload(server, mails)
        config = ImapConfig(
            host="127.0.0.1",
            port=server.port,
            tls="plain",
            allow_plain=True,
            username=server.user,
            password=server.password,
            folder=FOLDER,
            tenant="bench",
        )
        consumer = _tail(bootstrap, RAW_MAIL.full_name(prefix))
        worker = _ProducerThread(config, bootstrap, prefix)
        started = time.monotonic()
        worker.start()
        backlog: dict[str, float] = {}
        _consume(consumer, backlog, lambda: len(backlog) >= mails, timeout=600)
        backlog_s = time.monotonic() - started
        assert worker.producer is not None
        deadline = time.monotonic() + 60
        while not worker.producer.idling.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)

        latencies: list[float] = []
        with server.client() as client:
            for n in range(latency_mails):
                mail = make_mail(mails + n, body=BODY)
                idle_deadline = time.monotonic() + 30
                while not worker.producer.idling.is_set() and time.monotonic() < idle_deadline:
                    time.sleep(0.005)  # measure "under IDLE": the producer sits in IDLE when mail lands
                # 0 = the worst case: mail right after (re-)IDLE. Cyrus does not set TCP_NODELAY, so an
                # EXISTS sent while its "+ idling" is still unacknowledged waits for our delayed ACK (~40 ms).
                time.sleep(append_delay_ms / 1000)
                client.append(FOLDER, mail)
                appended = time.time()
                key = next(line for line in mail.decode().split("\r\n") if line.startswith("Message-ID:"))
                key = "bench:" + key.split(":", 1)[1].strip()
                got: dict[str, float] = {}
                _consume(consumer, got, lambda k=key, g=got: k in g, timeout=30)  # type: ignore[misc]
                if key in got:
                    latencies.append((got[key] - appended) * 1000)
                else:
                    logging.getLogger("bench").warning("mail %s not on raw-mail within 30 s", key)
        worker.stop()
        consumer.close()
        return {
            "server": server_name,
            "server_greeting": greeting,
            "append_delay_ms": append_delay_ms,
            "backlog_mails": mails,
            "backlog_received": len(backlog),
            "backlog_seconds": round(backlog_s, 2),
            "backlog_mails_per_s": round(len(backlog) / backlog_s, 1) if backlog_s else None,
            "idle_latency_samples": len(latencies),
            "idle_latency_ms_p50": _pct(latencies, 0.5) if latencies else None,
            "idle_latency_ms_p99": _pct(latencies, 0.99) if latencies else None,
            "idle_latency_ms_mean": round(statistics.fmean(latencies), 2) if latencies else None,
            "stats": vars(worker.producer.stats)
            if hasattr(worker.producer.stats, "__dict__")
            else {f: getattr(worker.producer.stats, f) for f in worker.producer.stats.__slots__},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=5000)
    parser.add_argument("--latency-mails", type=int, default=100)
    parser.add_argument("--server", choices=SERVERS, default="dovecot", help="which private IMAP server to run")
    parser.add_argument(
        "--append-delay-ms",
        type=float,
        default=0.0,
        help="wait this long after the producer entered IDLE before each latency mail (default 0: right away)",
    )
    parser.add_argument("--bootstrap", help="an existing broker; default: start the embedded one")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--out", type=Path, default=None, help="also record the numbers in this results file")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    if args.bootstrap:
        result = run(args.bootstrap, args.mails, args.latency_mails, args.server, args.append_delay_ms)
    else:
        from streams.broker import DEFAULT_CACHE_ROOT, choose_broker

        data_dir = Path(tempfile.mkdtemp(prefix="rcaflow-bench-broker-"))
        broker = choose_broker("auto", data_dir, DEFAULT_CACHE_ROOT)
        broker.start()
        try:
            measured = run(broker.bootstrap, args.mails, args.latency_mails, args.server, args.append_delay_ms)
            result = {"broker": broker.kind, **measured}
        finally:
            broker.stop()
            shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.out is not None:
        from benchmarks.results import write_results

        # dovecot keeps the historical "imap" key; other servers get their own entry beside it.
        write_results("imap" if args.server == "dovecot" else f"imap_{args.server}", result, args.out)


if __name__ == "__main__":
    main()
