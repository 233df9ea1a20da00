"""Test helpers: a private dovecot (generated config, loopback port, throw-away user), mails, topic reads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from producers.imap import ImapConfig, ImapProducer, KafkaCheckpointReader
from producers.imap.errors import CheckpointError
from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import Record
from tests.support.imap_server import MailboxOps, free_port

R = TypeVar("R", bound=Record)

DOVECOT_BIN = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)

_CONF = """\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_verbose = yes
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = 1
mail_location = maildir:~/Maildir:LAYOUT=fs
mailbox_idle_check_interval = 1 secs
{capability}
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {base}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
"""



class Clock:
    """A quota's clock the test moves by hand: refills happen when the test says, not when the machine is slow."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Dovecot(MailboxOps):
    """One dovecot master in the foreground; ``stop``/``start`` keep the Maildir and the port."""

    base: Path
    port: int
    user: str = "alerts"
    password: str = field(default_factory=lambda: uuid.uuid4().hex)
    idle: bool = True
    #: With TLS: a self-signed certificate for 127.0.0.1 made on the fly, imaps on ``tls_port``.
    tls_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        return self.base / "home" / self.user

    def write_config(self) -> Path:
        if os.geteuid() == 0:
            login_user, internal_user = "dovenull", "dovecot"
            mail_uid, mail_gid = pwd.getpwnam("dovecot").pw_uid, pwd.getpwnam("dovecot").pw_gid
        else:
            me = pwd.getpwuid(os.geteuid())
            login_user = internal_user = me.pw_name
            mail_uid, mail_gid = me.pw_uid, me.pw_gid
        ssl = "ssl = no"
        if self.tls_port is not None:
            self._make_certificate()
            ssl = f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{self.base / 'key.pem'}"
        capability = "" if self.idle else "imap_capability = IMAP4rev1 LITERAL+ SASL-IR UIDPLUS MOVE ENABLE"
        conf = self.base / "dovecot.conf"
        conf.write_text(
            _CONF.format(
                base=self.base,
                port=self.port,
                login_user=login_user,
                internal_user=internal_user,
                capability=capability,
                ssl=ssl,
                tls_port=self.tls_port or 0,
            )
        )
        (self.base / "passwd").write_text(
            f"{self.user}:{{PLAIN}}{self.password}:{mail_uid}:{mail_gid}::{self.home}::\n"
        )
        for sub in ("run", "state", "home"):
            (self.base / sub).mkdir(exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.base / "home", self.home):
                os.chown(path, mail_uid, mail_gid)
        return conf

    @property
    def cert(self) -> Path:
        return self.base / "cert.pem"

    def _make_certificate(self) -> None:
        if self.cert.exists():
            return
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-keyout",
                str(self.base / "key.pem"),
                "-out",
                str(self.cert),
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        assert DOVECOT_BIN is not None
        conf = self.write_config()
        log = (self.base / "stdout.log").open("ab")
        # Own session: stop() takes the master and every imap child down together, like a host going away.
        self.proc = subprocess.Popen(
            [DOVECOT_BIN, "-F", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited {self.proc.returncode}: {self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not answer on port {self.port}: {self.logs()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # imap children outlive a terminated master
        # The master is gone; make sure no straggler child still holds the port.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                return

    def logs(self) -> str:
        parts = []
        for name in ("stdout.log", "dovecot.log"):
            p = self.base / name
            if p.exists():
                parts.append(p.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def deliver_file(self, raw: bytes, folder: str = "INBOX") -> None:
        """Drop a mail straight into the Maildir, as an MDA would, while the server may be down."""
        maildir = self.home / "Maildir"
        if folder != "INBOX":
            maildir = maildir / folder  # LAYOUT=fs: the folder name is the path
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.rcaflow-test"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(raw)
        if os.geteuid() == 0:
            info = pwd.getpwnam("dovecot")
            for path in (tmp, maildir, maildir / "tmp", maildir / "new", maildir / "cur"):
                os.chown(path, info.pw_uid, info.pw_gid)
        tmp.rename(maildir / "new" / name)


def make_dovecot(idle: bool = True, tls: bool = False) -> Iterator[Dovecot]:
    if DOVECOT_BIN is None:
        message = "dovecot is not installed (Debian: apt-get install -y dovecot-imapd)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # Not tmp_path: pytest's base dir is 0700 and dovecot's mail processes run as another user.
    base = Path(tempfile.mkdtemp(prefix="rcaflow-dovecot-"))
    base.chmod(0o755)
    server = Dovecot(base=base, port=free_port(), idle=idle, tls_port=free_port() if tls else None)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def read_topic(bootstrap: str, topic: str, record_type: type[R], codec: Codec) -> list[tuple[str, R]]:
    """Every record now on ``topic`` (all partitions, up to the high watermark), as (key, record)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"imap-test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends: dict[int, int] = {}
        assign = []
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                assign.append(TopicPartition(topic, p, low))
        out: list[tuple[str, R]] = []
        if not assign:
            return out
        consumer.assign(assign)
        deadline = time.monotonic() + 30
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            part, err = msg.partition() or 0, msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    ends.pop(part, None)
                    continue
                raise RuntimeError(str(err))
            out.append(((msg.key() or b"").decode(), codec.decode(msg.value() or b"", record_type, topic=topic)))
            if (msg.offset() or 0) >= ends.get(part, 0) - 1:
                ends.pop(part, None)
        return out
    finally:
        consumer.close()


def wait_for_records(
    bootstrap: str, topic: str, record_type: type[R], codec: Codec, count: int, *, timeout: float = 60.0
) -> list[tuple[str, R]]:
    """Poll ``topic`` until it holds at least ``count`` records (a timeout, not a timing assert)."""
    deadline = time.monotonic() + timeout
    records = read_topic(bootstrap, topic, record_type, codec)
    while len(records) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        records = read_topic(bootstrap, topic, record_type, codec)
    return records


def make_mail(
    n: int,
    *,
    subject: str = "Control Cluster Details",
    sender: str = "insight@dce.example.com",
    body: str = "alert body",
    message_id: str | None = None,
) -> bytes:
    """A small plain mail with CRLF line ends (what IMAP returns byte for byte)."""
    mid = message_id if message_id is not None else f"<mail-{n}-{uuid.uuid4().hex}@dce.example.com>"
    lines = [
        f"From: DCE Insight <{sender}>",
        "To: ops@example.com",
        f"Subject: {subject} #{n}",
        f"Message-ID: {mid}",
        "Date: Tue, 23 Sep 2025 08:00:00 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"{body} {n}",
        "",
    ]
    return "\r\n".join(lines).encode()


@dataclass(frozen=True)
class KafkaForImap:
    """The test broker as the IMAP producer sees it: bootstrap, this test's prefix, its topics."""

    bootstrap: str
    prefix: str
    codec: Codec
    raw_mail: str
    dead_letter: str
    checkpoints: str

    def read(self, topic: str, record_type: type[R]) -> list[tuple[str, R]]:
        return read_topic(self.bootstrap, topic, record_type, self.codec)

    def wait(self, topic: str, record_type: type[R], count: int, timeout: float = 60.0) -> list[tuple[str, R]]:
        return wait_for_records(self.bootstrap, topic, record_type, self.codec, count, timeout=timeout)


def imap_config(server: MailboxOps, folder: str = "INBOX/Alerts", tenant: str = "acme",
                **overrides: Any) -> ImapConfig:
    """The producer's config for a private server on loopback (plain IMAP, quick backoff)."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "tls": "plain",
        "allow_plain": True,
        "username": server.user,
        "password": server.password,
        "folder": folder,
        "tenant": tenant,
        "backoff": {"base_seconds": 0.05, "cap_seconds": 0.5},
    }
    values.update(overrides)
    return ImapConfig.model_validate(values)


@asynccontextmanager
async def running(
    config: ImapConfig,
    kafka: KafkaForImap,
    *,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    rand: Callable[[], float] | None = None,
) -> AsyncIterator[ImapProducer]:
    """The producer as a task on this loop; stopped (and its errors re-raised) on exit."""
    publisher = KafkaPublisher(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
    reader = KafkaCheckpointReader(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
    options: dict[str, Any] = {"rand": rand}
    if sleep is not None:
        options["sleep"] = sleep
    producer = ImapProducer(config, publisher, reader, topic_prefix=kafka.prefix, **options)
    task = asyncio.create_task(producer.run())
    try:
        yield producer
    finally:
        producer.stop()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await publisher.close()


def wait_until_the_topics_answer(kafka: KafkaForImap) -> None:
    """Topics created a moment ago may not have a leader yet; a producer with ``once`` stops on that (as it
    should on an outage), so the test waits until the start-up reads get an answer."""
    reader = KafkaCheckpointReader(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
    deadline = time.monotonic() + 60
    while True:
        try:
            reader.load("warm-up")
            reader.message_ids_since("acme", "warm-up", datetime.now(UTC) - timedelta(minutes=1))
            return
        except CheckpointError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
