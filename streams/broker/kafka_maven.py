"""Real Apache Kafka (KRaft, combined broker+controller) run from its Maven Central jars."""

from __future__ import annotations

import base64
import fcntl
import logging
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from schemas.limits import PRODUCER_MAX_REQUEST_BYTES
from streams.broker.base import DEFAULT_STARTUP_TIMEOUT, BrokerError, EmbeddedBroker, free_loopback_port, tail

logger = logging.getLogger(__name__)

DEFAULT_KAFKA_VERSION = "4.1.1"
DEFAULT_CACHE_ROOT = Path.home() / ".cache" / "rcaflow"
_MARKER = "jars.txt"
_RESOLVE_TIMEOUT = 900.0
_FORMAT_TIMEOUT = 120.0

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>rcaflow</groupId>
  <artifactId>embedded-kafka-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-server</artifactId><version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
"""

# log4j 1.x (reload4j) config: everything to a rolling file in the data dir, nothing to our stdout.
_LOG4J = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log}
log4j.appender.file.MaxFileSize=10MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=INFO
"""

# Kafka 4 also ships log4j 2 (for its dynamic logger API); keep it quiet and off our stdout.
_LOG4J2 = """status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
"""


def jar_cache_dir(cache_root: Path, version: str = DEFAULT_KAFKA_VERSION) -> Path:
    return cache_root / f"kafka-{version}"


def jar_cache_complete(jar_dir: Path) -> bool:
    """True when a previous resolve finished: the marker lists jars that are all still there."""
    marker = jar_dir / _MARKER
    try:
        names = [line for line in marker.read_text().splitlines() if line.strip()]
    except OSError:
        return False
    return bool(names) and all((jar_dir / name).is_file() for name in names)


def resolve_jars(jar_dir: Path, version: str, mvn: str = "mvn") -> Path:
    """Fill ``jar_dir`` with Kafka and its dependencies from Maven Central, once.

    A lock file makes concurrent callers wait for one resolve; the marker file is
    written last, so an interrupted resolve is simply redone.
    """
    jar_dir.parent.mkdir(parents=True, exist_ok=True)
    with (jar_dir.parent / f".{jar_dir.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if jar_cache_complete(jar_dir):
            return jar_dir
        message = "resolving Apache Kafka %s from Maven Central into %s (once)"
        logger.warning(message, version, jar_dir)
        staging = jar_dir.parent / f".{jar_dir.name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        (staging / "pom.xml").write_text(_POM.format(version=version))
        command = [
            mvn, "-q", "-B", "-f", str(staging / "pom.xml"),
            "dependency:copy-dependencies", f"-DoutputDirectory={staging / 'lib'}",
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, timeout=_RESOLVE_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrokerError(f"resolving Kafka jars failed: {' '.join(command)}: {exc}") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode("utf-8", errors="replace")
            raise BrokerError(
                f"resolving Kafka jars failed (exit {done.returncode}): {' '.join(command)}\n"
                + "\n".join(output.splitlines()[-30:]),
                retriable=True,
            )
        jars = sorted(p.name for p in (staging / "lib").glob("*.jar"))
        if not jars:
            raise BrokerError(f"{' '.join(command)} succeeded but produced no jars in {staging / 'lib'}")
        shutil.rmtree(jar_dir, ignore_errors=True)
        (staging / "lib").rename(jar_dir)
        (jar_dir / _MARKER).write_text("\n".join(jars) + "\n")
        shutil.rmtree(staging, ignore_errors=True)
        logger.warning("resolved %d jars for Apache Kafka %s into %s", len(jars), version, jar_dir)
        return jar_dir


def new_cluster_id() -> str:
    """A 22-character url-safe base64 UUID, as `kafka-storage random-uuid` makes."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # Kafka refuses ids that look like a command-line flag
            return cid


@dataclass(frozen=True)
class ScramUser:
    """The one SCRAM-SHA-512 user of a SASL_PLAINTEXT embedded broker, created when its log dir is formatted.

    For tests and for trying secured Kafka on a laptop: there is no TLS, so the password crosses loopback
    in the clear (SCRAM itself never sends it), and it is on the format command line for a moment.
    """

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        # The --add-scram argument is Kafka's own "[name=...,password=...]" syntax: these would break it.
        for what, value in (("username", self.username), ("password", self.password)):
            if not value or any(ch in value for ch in ',=[]"\\'):
                raise BrokerError(f"the embedded broker's SCRAM {what} must be non-empty and free of , = [ ] \" \\")


class KafkaMavenBroker(EmbeddedBroker):
    """Apache Kafka in KRaft combined mode; the data dir survives restarts.

    The log dir is formatted only when ``meta.properties`` is missing, so a restart
    on the same data dir keeps every topic and committed offset.

    With ``scram`` the client listener is SASL_PLAINTEXT (SCRAM-SHA-512) and that user is created at format
    time; clients without its credentials are refused. The SCRAM user lives in the log dir's metadata, so a
    restart on a formatted data dir keeps the user it was formatted with.
    """

    kind = "kafka"

    def __init__(
        self,
        data_dir: Path,
        *,
        cache_root: Path = DEFAULT_CACHE_ROOT,
        version: str = DEFAULT_KAFKA_VERSION,
        java: str = "java",
        mvn: str | None = "mvn",
        heap: str = "512m",
        port: int | None = None,
        controller_port: int | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        detached: bool = False,
        scram: ScramUser | None = None,
    ) -> None:
        super().__init__(data_dir, port=port, startup_timeout=startup_timeout, detached=detached)
        self.scram = scram
        self.version = version
        self.jar_dir = jar_cache_dir(cache_root, version)
        self.java = java
        self.mvn = mvn
        self.heap = heap
        self.controller_port = controller_port

    @property
    def client_security(self) -> Mapping[str, str]:
        if self.scram is None:
            return {}
        return {"security.protocol": "sasl_plaintext", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": self.scram.username, "sasl.password": self.scram.password}

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "kafka-logs"

    @property
    def server_log(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def log_files(self) -> Sequence[Path]:
        return (self.server_log,)

    def _classpath(self) -> str:
        if not jar_cache_complete(self.jar_dir):
            if self.mvn is None:
                raise BrokerError(f"the Kafka jar cache {self.jar_dir} is incomplete and Maven is not available")
            resolve_jars(self.jar_dir, self.version, self.mvn)
        return f"{self.jar_dir}/*"

    def _java_command(self, main: str, *args: str) -> list[str]:
        log4j = self.data_dir / "log4j.properties"
        return [
            self.java,
            f"-Xmx{self.heap}", "-Xms64m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp", self._classpath(), main, *args,
        ]  # fmt: skip

    def _listener_props(self, port: int, controller_port: int) -> dict[str, str]:
        """The client listener: PLAINTEXT, or SASL_PLAINTEXT with SCRAM-SHA-512 (the controller stays local)."""
        name = "PLAINTEXT" if self.scram is None else "SASL_PLAINTEXT"
        props = {
            "listeners": f"{name}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"{name}://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": f"{name}:{name},CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": name,
        }
        if self.scram is not None:
            jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                    f'username="{self.scram.username}" password="{self.scram.password}";')
            props.update({
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": jaas,
            })
        return props

    def _write_config(self, port: int, controller_port: int) -> Path:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            **self._listener_props(port, controller_port),
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "8",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Lets test clients use session.timeout.ms=2000 (fast group joins; see MEASURED.md).
            "group.min.session.timeout.ms": "500",
            # Small machine: few threads, small buffers.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "background.threads": "4",
            # Compaction that a test can observe within seconds (topics still choose their
            # own segment.ms / min.cleanable.dirty.ratio).
            "log.segment.bytes": str(16 * 1024 * 1024),
            "log.cleaner.backoff.ms": "500",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "log.retention.check.interval.ms": "10000",
            # Size limits as in production: the broker default (message.max.bytes, ~1 MiB) stays, and
            # rcaflow's topics raise theirs (max.message.bytes from schemas/limits.py); followers and
            # fetches must be able to copy the largest of those records.
            "replica.fetch.max.bytes": str(PRODUCER_MAX_REQUEST_BYTES),
        }
        path = self.data_dir / "server.properties"
        path.touch(mode=0o600)  # may hold the SCRAM user's password
        path.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
        (self.data_dir / "log4j.properties").write_text(_LOG4J.format(log=self.server_log))
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.data_dir / "server-log4j2.log"))
        return path

    def _format_if_needed(self, config: Path) -> None:
        if (self.log_dir / "meta.properties").exists():
            return
        command = self._java_command("kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(config))
        shown = list(command)  # what errors may quote: never the SCRAM password
        if self.scram is not None:
            user = f"SCRAM-SHA-512=[name={self.scram.username},password={{}}]"
            command += ["--add-scram", user.format(self.scram.password)]
            shown += ["--add-scram", user.format("***")]
        try:
            done = subprocess.run(command, capture_output=True, timeout=_FORMAT_TIMEOUT, check=False, cwd=self.data_dir)
        except OSError as exc:
            raise BrokerError(f"formatting the Kafka log dir failed: {exc.strerror or exc}") from exc
        except subprocess.TimeoutExpired:
            raise BrokerError(f"formatting the Kafka log dir took longer than {_FORMAT_TIMEOUT:.0f} s: "
                              f"{' '.join(shown)}", retriable=True) from None  # its repr holds the password
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode("utf-8", errors="replace")
            if self.scram is not None:
                output = output.replace(self.scram.password, "***")
            raise BrokerError(
                f"formatting the Kafka log dir failed (exit {done.returncode}): {' '.join(shown)}\n"
                + "\n".join(output.splitlines()[-20:])
                + f"\n{tail(self.server_log, 20)}"
            )

    def _prepare(self, port: int) -> Sequence[str]:
        controller_port = self.controller_port or free_loopback_port()
        while controller_port == port:
            controller_port = free_loopback_port()
        config = self._write_config(port, controller_port)
        self._format_if_needed(config)
        return self._java_command("kafka.Kafka", str(config))
