"""`rcaflow run` and `rcaflow demo`: the broker (if embedded) and the roles as one process group.

Each role runs in its own child process, as it would in production, so one
machine exercises the same code paths as a cluster. Every child reads the same
configuration as the parent: the parent's environment plus its overrides, and the
same ``--config`` file, ``--secrets-dir`` and log level (:func:`origin_args`).
Children die with their parent (PR_SET_PDEATHSIG); Ctrl-C stops the roles first,
then the broker.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from streams.broker import EmbeddedBroker, ScramUser, choose_broker
from streams.broker.base import BrokerError, metadata_ok
from streams.broker.state import (
    LEGACY_DATA_DIR,
    OWNER_RUN,
    BrokerState,
    legacy_notice,
    process_started,
    release,
    running_broker,
    unrecorded_broker,
)
from streams.errors import ConfigurationError, StreamsError
from streams.settings import KafkaSecuritySettings, Settings, client_config, librdkafka_security
from streams.wiring.decision_keys import with_decision_key
from streams.wiring.topics_admin import ensure_topics

logger = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("api", "worker", "executor")
#: ``imap:<mailbox>`` is the IMAP producer of one configured mailbox (``rcaflow ingest imap --mailbox``).
IMAP_ROLE_PREFIX = "imap:"
_MAILBOX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_PR_SET_PDEATHSIG = 1
#: The exit code of ``rcaflow`` for an error of ours (configuration, refused credentials): not worth a restart.
EXIT_REFUSED = 2


class SupervisorError(StreamsError):
    """A role process could not be started or died during start-up: the log says why, a blind retry will not."""


def _another_runs_broker(state: BrokerState) -> str:
    """Why this run does not use the broker another ``rcaflow run`` started, and what to do instead."""
    if not state.owner_alive():
        return (f"the embedded {state.kind} broker (pid {state.pid}) of an `rcaflow run` that has ended (pid "
                f"{state.owner_pid}) is still stopping in {state.data_dir}: try again in a few seconds (if it keeps "
                f"running: `rcaflow broker stop --data-dir {state.data_dir}`)")
    return (f"another `rcaflow run` (pid {state.owner_pid}) runs its embedded {state.kind} broker on "
            f"{state.bootstrap} from {state.data_dir}, and stops it when it ends: stop that run first, or give this "
            "run a data dir of its own (RCAFLOW_KAFKA__EMBEDDED__DATA_DIR), or, for one broker that several runs "
            "share, start it with `rcaflow broker start` (while no run owns that data dir)")


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def embedded_scram_user(security: KafkaSecuritySettings) -> ScramUser | None:
    """The SCRAM user an embedded broker must accept so that the configured clients can log in.

    The embedded broker offers PLAINTEXT or SASL_PLAINTEXT with SCRAM-SHA-512; anything else would start
    a broker no client of ours could use, so it is refused up front.
    """
    if security.protocol == "PLAINTEXT":
        return None
    if security.protocol != "SASL_PLAINTEXT" or security.sasl_mechanism != "SCRAM-SHA-512":
        raise ConfigurationError(
            f"kafka.security is {security.describe()}, but the embedded broker offers only PLAINTEXT or "
            "SASL_PLAINTEXT with SCRAM-SHA-512: set KAFKA_BOOTSTRAP_SERVERS to your cluster, or change "
            "kafka.security")
    assert security.username is not None and security.password is not None  # the settings validate this
    return ScramUser(security.username, security.password.get_secret_value())


def security_env(security: KafkaSecuritySettings) -> dict[str, str]:
    """``kafka.security`` as the environment of a role process, which may not see our config file or secrets dir."""
    env = {}
    for name, value in security.model_dump(exclude_none=True).items():
        if name in ("protocol", "sasl_mechanism") and security.protocol == "PLAINTEXT":
            continue
        text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
        env[f"RCAFLOW_KAFKA__SECURITY__{name.upper()}"] = text
    return env


def run_roles(settings: Settings) -> tuple[str, ...]:
    """What ``rcaflow run`` starts: api, worker, executor and one IMAP producer per configured mailbox."""
    bad = sorted(name for name in settings.mailboxes if not _MAILBOX_NAME.fullmatch(name))
    if bad:
        raise ConfigurationError(f"mailbox name(s) {', '.join(map(repr, bad))}: use letters, digits, '_', '.' "
                                 "and '-' (the name becomes a process role and its log file)")
    return (*ROLES, *(f"{IMAP_ROLE_PREFIX}{name}" for name in sorted(settings.mailboxes)))


def role_command(role: str) -> list[str]:
    """The ``rcaflow`` subcommand of a role. IMAP producers serve no /metrics of their own here (several would
    want one port); run ``rcaflow ingest imap`` apart to scrape them."""
    if role.startswith(IMAP_ROLE_PREFIX):
        return ["ingest", "imap", "--mailbox", role.removeprefix(IMAP_ROLE_PREFIX), "--metrics-port", "0"]
    return [role]


def origin_args(settings: Settings) -> list[str]:
    """The ``rcaflow`` options that make a child read the configuration the parent read: the same YAML file and
    secrets dir (the environment it inherits, with the parent's overrides, still wins over both, as in the
    parent) and the parent's log level (``--log-level`` overrides the settings after loading)."""
    origin = settings.origin
    if origin is None:  # built in code (tests, benchmarks): the environment is all there is
        return []
    args = []
    if origin.config_file is not None:
        args += ["--config", str(origin.config_file)]
    if origin.secrets_dir is not None:
        args += ["--secrets-dir", str(origin.secrets_dir)]
    return [*args, "--log-level", settings.log_level]


def _last_refusal(log: Path) -> str | None:
    """The role's own one-line explanation (``rcaflow: ...``) from the end of its log, if it wrote one."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-50:]
    except OSError:
        return None
    said = [line.removeprefix("rcaflow: ") for line in lines if line.startswith("rcaflow: ")]
    return said[-1] if said else None


class Stack:
    """A broker (embedded or given) plus the role processes; a context manager that cleans up."""

    def __init__(
        self,
        settings: Settings,
        *,
        roles: Sequence[str] = ROLES,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        data_dir: Path | None = None,
        reset_sections: Sequence[str] = (),
    ) -> None:
        """``reset_sections``: top-level settings sections every child sets back to defaults after reading the
        configuration (``rcaflow --reset-section``), e.g. a replay's ``notify`` and ``approvals``."""
        self.roles = tuple(roles)
        self.reset_sections = tuple(reset_sections)
        # One decision key for every child: the configured one, or one made for this run (never logged).
        self.settings, self.base_env = with_decision_key(settings, env if env is not None else os.environ)
        self.log_dir = log_dir
        self.data_dir = data_dir
        self.broker: EmbeddedBroker | None = None
        #: The record of :attr:`broker` in its data dir, so `rcaflow broker status|stop` and another run see it.
        self.broker_record: BrokerState | None = None
        self.bootstrap: str = settings.bootstrap or ""
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    # ------------------------------------------------------------------ broker
    def start_broker(self) -> str:
        if self.bootstrap:
            logger.info("using Kafka at %s", self.bootstrap)
        elif not self._reuse_started_broker():
            embedded = self.settings.kafka.embedded
            self.broker = choose_broker(
                embedded.prefer,
                data_dir=self.data_dir or embedded.data_dir,
                cache_dir=embedded.cache_dir,
                port=embedded.port,
                scram=embedded_scram_user(self.settings.kafka.security),
            )
            self.bootstrap = self.broker.start()
            self._record_broker(self.broker)
            if self.broker.kind == "tansu":
                self._use_single_record_batches()
            logger.warning(
                "no KAFKA_BOOTSTRAP_SERVERS: started an embedded %s broker on %s (data in %s)",
                "Apache Kafka (KRaft)" if self.broker.kind == "kafka" else "Tansu", self.bootstrap,
                self.data_dir or embedded.data_dir,
            )
        # Also the check of kafka.security: refused credentials stop here, before any role is started.
        ensure_topics(self.bootstrap, self.settings.kafka.topic_prefix, partitions=self.settings.worker.partitions,
                      extra=client_config(self.settings.kafka, self.bootstrap))
        return self.bootstrap

    def _broker_data_dir(self) -> Path:
        return (self.data_dir or self.settings.kafka.embedded.data_dir).expanduser().resolve()

    def _reuse_started_broker(self) -> bool:
        """Use the broker `rcaflow broker start` left running from this data dir instead of starting a second one.

        Without an explicit ``data_dir`` (``rcaflow run``), a broker still running from the old default dir of
        `rcaflow broker` counts too; either way the old dir's data is never passed over without a word. The
        broker is not ours: :meth:`stop` leaves it running. The broker of another run is refused: that run
        stops it when it ends, and a second broker on the same data dir would hit Kafka's log dir lock.
        """
        data_dir = self._broker_data_dir()
        candidates = [data_dir]
        if self.data_dir is None and LEGACY_DATA_DIR.expanduser().resolve() != data_dir:
            candidates.append(LEGACY_DATA_DIR.expanduser().resolve())
            notice = legacy_notice(data_dir, candidates[-1])
            if notice is not None:
                logger.warning("%s", notice)
        state = running_broker(candidates)
        if state is None:
            unrecorded = unrecorded_broker(data_dir)
            if unrecorded is not None:
                raise SupervisorError(
                    f"a broker without a record (pid {unrecorded}, as an older rcaflow's `rcaflow run` starts it) "
                    f"already runs from {data_dir}: stop the run it belongs to, or give this run a data dir of "
                    "its own (RCAFLOW_KAFKA__EMBEDDED__DATA_DIR)")
            return False
        if state.run_owned:
            raise SupervisorError(_another_runs_broker(state))
        security = self.settings.kafka.security
        if not metadata_ok(state.bootstrap, timeout=5.0, security=librdkafka_security(security)):
            raise SupervisorError(
                f"a {state.kind} broker started by `rcaflow broker start` (pid {state.pid}) runs from "
                f"{state.data_dir} but does not answer on {state.bootstrap} as {security.describe()} (it expects "
                f"{state.security}): stop it with `rcaflow broker stop --data-dir {state.data_dir}`, "
                "or check kafka.security")
        self.bootstrap = state.bootstrap
        if state.kind == "tansu":
            self._use_single_record_batches()
        logger.warning(
            "no KAFKA_BOOTSTRAP_SERVERS: using the embedded %s broker that `rcaflow broker start` left running on %s "
            "(pid %d, data in %s); it keeps running after this run (`rcaflow broker stop` stops it)",
            state.kind, state.bootstrap, state.pid, state.data_dir,
        )
        return True

    def _record_broker(self, broker: EmbeddedBroker) -> None:
        """Write the record that tells `rcaflow broker status|stop` and other runs that this broker is this run's."""
        assert broker.pid is not None
        me = os.getpid()
        self.broker_record = BrokerState(
            pid=broker.pid,
            bootstrap=self.bootstrap,
            kind=broker.kind,
            data_dir=str(self._broker_data_dir()),
            started_at=time.time(),
            foreground=True,
            security=self.settings.kafka.security.describe(),
            owner=OWNER_RUN,
            owner_pid=me,
            owner_started=process_started(me),
        )
        self.broker_record.save()

    def _forget_broker(self) -> None:
        """Remove this run's record of its (stopped) broker, unless someone else's record has replaced it."""
        record, self.broker_record = self.broker_record, None
        if record is None:
            return
        try:
            release(record)
        except BrokerError as exc:  # an unreadable record: leave it to `rcaflow broker stop`, say so
            logger.warning("could not remove the record of the stopped broker: %s", exc)

    def _use_single_record_batches(self) -> None:
        kafka = self.settings.kafka.model_copy(update={"single_record_batches": True})
        self.settings = self.settings.model_copy(update={"kafka": kafka})
        self.base_env["RCAFLOW_KAFKA__SINGLE_RECORD_BATCHES"] = "true"

    # ------------------------------------------------------------------ roles
    def start_roles(self) -> None:
        for role in self.roles:
            self.start_role(role)

    def start_role(self, role: str) -> subprocess.Popen[bytes]:
        """Start (or restart) one role's process."""
        env = {**self.base_env, **security_env(self.settings.kafka.security), "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap}
        log = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = (self.log_dir / f"{role.replace(':', '-')}.log").open("ab")
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", *origin_args(self.settings),
                 *(arg for name in self.reset_sections for arg in ("--reset-section", name)), *role_command(role)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only async-signal-safe work inside
            )
        finally:
            if log is not None:
                log.close()
        self.children[role] = child
        logger.info("started %s (pid %d)", role, child.pid)
        return child

    def check(self) -> None:
        """Raise if a role or this run's own broker died: a half-running pipeline must not look healthy."""
        broker = self.broker
        if broker is not None and broker.exit_code is not None:
            # Stopped under the run (`rcaflow broker stop --force`), killed, or crashed: every role has lost Kafka,
            # and their reconnect loops would only log, forever.
            raise SupervisorError(
                f"the embedded {broker.kind} broker of this run (pid {broker.pid}, {self.bootstrap}) exited with "
                f"code {broker.exit_code}; every role has lost Kafka; see {broker.stdout_path}")
        for role, child in self.children.items():
            code = child.poll()
            if code is not None:
                log = self.log_dir / f"{role.replace(':', '-')}.log" if self.log_dir else None
                why = ""
                if code == EXIT_REFUSED:
                    # Its one line says what to fix (refused credentials, bad settings); a restart would only
                    # be refused again, so the group stops instead of looping.
                    said = _last_refusal(log) if log is not None else None
                    why = f": {said}" if said else " (a configuration or credentials problem; not restarted)"
                hint = f"; see {log}" if log is not None else ""
                raise SupervisorError(f"{role} exited with code {code}{why}{hint}")

    def wait(self, ready: Callable[[], bool] | None = None, on_ready: Callable[[], None] | None = None) -> None:
        """Block until Ctrl-C/SIGTERM or until a role dies; call ``on_ready`` once, when ``ready()`` first holds."""
        stop = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        previous = signal.signal(signal.SIGTERM, on_signal)
        try:
            while not stop:
                self.check()
                if ready is not None and ready():
                    ready = None
                    if on_ready is not None:
                        on_ready()
                time.sleep(0.5)
        except KeyboardInterrupt:
            logger.info("interrupted; stopping")
        finally:
            signal.signal(signal.SIGTERM, previous)

    def stop(self, timeout: float = 20.0) -> None:
        for child in self.children.values():
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for role, child in self.children.items():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0fs; killing it", role, timeout)
                child.kill()
                child.wait(5)
        self.children.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
            self._forget_broker()

    def __enter__(self) -> Self:
        try:
            self.start_broker()
            self.start_roles()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
