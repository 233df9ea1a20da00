"""The embedded-broker seam: one process on a loopback port, started and stopped safely."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Protocol, Self

from streams.errors import StreamsError

logger = logging.getLogger(__name__)

DEFAULT_STARTUP_TIMEOUT = 90.0
_PR_SET_PDEATHSIG = 1


class BrokerError(StreamsError):
    """Starting, probing or stopping the embedded broker failed.

    ``retriable`` is True when trying again may help (a port race, a slow
    machine), False when the environment must change first (no Java, bad jars).
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message, retriable=retriable)


class RunningBroker(Protocol):
    """What a client of any broker (embedded or a real cluster) may rely on."""

    @property
    def kind(self) -> str: ...

    @property
    def bootstrap(self) -> str: ...


def free_loopback_port() -> int:
    """Let the kernel pick a port; another process may still grab it before we bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a broker may listen on ``port`` now: nothing listens there.

    With SO_REUSEADDR, as the JVM's server sockets bind on Linux: connections of a broker that just stopped
    linger in TIME_WAIT for a minute, and without it a restart on the same port was refused that long.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def tail(path: Path, max_lines: int = 40, max_chars: int = 6000) -> str:
    """The end of a log file, for error messages; empty when there is no file yet."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_chars))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-max_lines:])


def process_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group, read from /proc."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (nobody reaped it yet) counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def terminate_group(pgid: int, timeout: float, wait: Callable[[float], bool] | None = None) -> None:
    """SIGTERM the group, wait up to ``timeout``, then SIGKILL whatever is left.

    ``wait(seconds) -> exited`` lets the owner of a child reap it; for a process we
    did not start (a detached broker) we poll /proc instead.
    """

    def _poll_wait(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not process_group_members(pgid):
                return True
            time.sleep(0.1)
        return not process_group_members(pgid)

    waiter = wait or _poll_wait
    _signal_group(pgid, signal.SIGTERM)
    if waiter(timeout) and not process_group_members(pgid):
        return
    logger.warning("broker process group %d ignored SIGTERM for %.0f s; sending SIGKILL", pgid, timeout)
    _signal_group(pgid, signal.SIGKILL)
    if not waiter(10.0):
        raise BrokerError(f"broker process group {pgid} survived SIGKILL", retriable=True)
    _poll_wait(5.0)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: the kernel sends SIGTERM to the broker when its parent dies."""
    # Resolved before fork: the child of a threaded parent should do as little as possible.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def _preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        # The parent may have died between fork() and prctl(): then nobody would ever stop us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return _preexec


class EmbeddedBroker(ABC):
    """A single-node Kafka-protocol broker run as a child process on 127.0.0.1.

    The base owns the lifecycle: pick a port, spawn the process in its own process
    group (with PR_SET_PDEATHSIG unless ``detached``), wait until it answers a
    metadata request, and stop it with SIGTERM, then SIGKILL. A subclass only says
    how to prepare its data dir and which command to run.

    ``start()`` must be called from a long-lived thread (the main thread): Linux
    delivers the parent-death signal when the *thread* that forked exits.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        detached: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self._fixed_port = port is not None
        self.startup_timeout = startup_timeout
        self.detached = detached
        self._proc: subprocess.Popen[bytes] | None = None

    # -- what a subclass fills in ---------------------------------------------------------

    @abstractmethod
    def _prepare(self, port: int) -> Sequence[str]:
        """Get the data dir ready and return the command line that serves on ``port``."""

    @property
    @abstractmethod
    def log_files(self) -> Sequence[Path]:
        """Files whose tail explains a failed start, most useful first."""

    @property
    def stdout_path(self) -> Path:
        return self.data_dir / f"{self.kind}.out"

    # -- the lifecycle --------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise BrokerError("the broker has no port yet: call start() first")
        return f"127.0.0.1:{self.port}"

    @property
    def client_security(self) -> Mapping[str, str]:
        """librdkafka security properties a client of this broker needs (none: a PLAINTEXT listener)."""
        return {}

    @property
    def client_config(self) -> dict[str, str]:
        """Everything a confluent-kafka client needs to reach this broker."""
        return {"bootstrap.servers": self.bootstrap, **self.client_security}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        """How the broker process ended (None while it runs, or when it was never started or was stopped)."""
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> str:
        """Spawn the broker and block until it answers metadata requests; returns the bootstrap."""
        if self._proc is not None and self._proc.poll() is None:
            return self.bootstrap
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port is not None and not port_is_free(self.port):
            if self._fixed_port:
                raise BrokerError(f"port 127.0.0.1:{self.port} is already in use; pick another --port")
            self.port = None  # a restart keeps its old port only while that port is free
        if self.port is None:
            self.port = free_loopback_port()
        command = list(self._prepare(self.port))
        logger.info("starting embedded %s broker on %s (data in %s)", self.kind, self.bootstrap, self.data_dir)
        logger.debug("broker command: %s", command)
        with self.stdout_path.open("ab") as out:
            try:
                self._proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    start_new_session=True,
                    # Only prctl() runs between fork and exec; no locks taken, so threads are fine.
                    preexec_fn=None if self.detached else _die_with_parent(os.getpid()),  # noqa: PLW1509
                )
            except OSError as exc:
                raise BrokerError(f"cannot run {command[0]}: {exc}") from exc
        try:
            self._wait_ready()
        except BaseException:
            self.stop(timeout=5.0)
            raise
        logger.info("embedded %s broker ready: KAFKA_BOOTSTRAP_SERVERS=%s", self.kind, self.bootstrap)
        return self.bootstrap

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the broker and every process in its group; a no-op when not running."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is not None and not process_group_members(proc.pid):
            return

        def _wait(seconds: float) -> bool:
            try:
                proc.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                return False
            return True

        terminate_group(proc.pid, timeout, _wait)
        logger.info("embedded %s broker on %s stopped", self.kind, self.bootstrap)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- readiness --------------------------------------------------------------------------

    def _failure(self, what: str, *, retriable: bool) -> BrokerError:
        parts = [f"embedded {self.kind} broker on {self.bootstrap} {what}"]
        for path in (*self.log_files, self.stdout_path):
            text = tail(path)
            if text:
                parts.append(f"--- tail of {path} ---\n{text}")
        return BrokerError("\n".join(parts), retriable=retriable)

    def _check_alive(self) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise self._failure(f"exited with code {code} during startup", retriable=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        # A TCP accept first, so the Kafka client does not log connection-refused noise.
        while True:
            self._check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port or 0), timeout=1.0):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise self._failure(f"did not open its port within {self.startup_timeout:.0f} s", retriable=True)
            time.sleep(0.2)
        while True:
            self._check_alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._failure(
                    f"did not answer metadata requests within {self.startup_timeout:.0f} s",
                    retriable=True,
                )
            if metadata_ok(self.bootstrap, timeout=min(5.0, max(remaining, 0.5)), security=self.client_security):
                return
            time.sleep(0.2)


def metadata_ok(bootstrap: str, timeout: float = 5.0, *, security: Mapping[str, str] | None = None) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request listing at least one broker.

    ``security``: librdkafka security properties, for a broker whose listener wants credentials.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **(security or {})})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(metadata.brokers)
