"""`rcaflow broker start|stop|status`: run the embedded broker for other processes to share."""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import cast

import click

from streams.broker.base import BrokerError, metadata_ok, pid_alive, terminate_group
from streams.broker.kafka_maven import DEFAULT_CACHE_ROOT, DEFAULT_KAFKA_VERSION
from streams.broker.select import Prefer, choose_broker
from streams.commands.context import settings_or_none
from streams.settings import KafkaSecuritySettings, librdkafka_security

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "rcaflow" / "broker"
STATE_FILE = "broker-state.json"
# What the broker's command line must contain, so a recycled pid is never signalled.
_CMDLINE_MARK = {"kafka": "kafka.Kafka", "tansu": "tansu"}


@dataclass(frozen=True)
class BrokerState:
    """What a detached `broker start` leaves in the data dir for `stop` and `status`."""

    pid: int
    bootstrap: str
    kind: str
    data_dir: str
    started_at: float
    foreground: bool = False
    #: How clients log in (``SASL_PLAINTEXT SCRAM-SHA-512 as user alice``); never the password.
    security: str = "PLAINTEXT"

    @classmethod
    def load(cls, data_dir: Path) -> BrokerState | None:
        try:
            raw = json.loads((data_dir / STATE_FILE).read_text())
            return cls(**raw)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise BrokerError(f"unreadable broker state file {data_dir / STATE_FILE}: {exc}") from exc

    def save(self) -> None:
        path = Path(self.data_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    def alive(self) -> bool:
        """The recorded process is still running and is still our broker."""
        if not pid_alive(self.pid):
            return False
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        return _CMDLINE_MARK.get(self.kind, self.kind) in cmdline


def _clear_state(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)


def _announce(state: BrokerState) -> None:
    # stdout stays eval-able: `set -a; eval "$(rcaflow broker start)"; set +a`.
    click.echo(f"KAFKA_BOOTSTRAP_SERVERS={state.bootstrap}")
    click.echo(f"# broker: {state.kind} (pid {state.pid}, data {state.data_dir}, clients: {state.security})")


_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Where the broker keeps its log dir, its logs and the state file.",
)


@click.group()
def broker() -> None:
    """Run the embedded single-node broker (for when there is no KAFKA_BOOTSTRAP_SERVERS)."""


@broker.command()
@click.option("--foreground", is_flag=True, help="Stay attached; Ctrl-C or SIGTERM stops the broker.")
@click.option(
    "--prefer",
    type=click.Choice(["auto", "kafka", "tansu"]),
    default="auto",
    show_default=True,
    help="auto: real Kafka when Java 17+ and Maven (or a filled jar cache) are present, else Tansu.",
)
@_data_dir_option
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CACHE_ROOT,
    show_default=True,
    help="Cache root; Kafka jars go to <cache-dir>/kafka-<version>/.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Default: a free loopback port.")
@click.option("--kafka-version", default=DEFAULT_KAFKA_VERSION, show_default=True)
@click.option("--startup-timeout", type=float, default=90.0, show_default=True)
@click.pass_context
def start(
    ctx: click.Context,
    *,
    foreground: bool,
    prefer: str,
    data_dir: Path,
    cache_dir: Path,
    port: int | None,
    kafka_version: str,
    startup_timeout: float,
) -> None:
    """Start the broker and print KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT.

    With kafka.security set to SASL_PLAINTEXT (SCRAM-SHA-512) the broker wants that user's login.
    """
    data_dir = data_dir.expanduser().resolve()
    existing = _load(data_dir)
    if existing is not None and existing.alive():
        click.echo(f"a {existing.kind} broker is already running from {data_dir}", err=True)
        _announce(existing)
        return
    _clear_state(data_dir)
    previous = signal.signal(signal.SIGTERM, _on_term) if foreground else None
    try:
        _start(
            foreground=foreground,
            prefer=cast(Prefer, prefer),
            data_dir=data_dir,
            cache_dir=cache_dir.expanduser(),
            port=port,
            kafka_version=kafka_version,
            startup_timeout=startup_timeout,
            security=_security(ctx),
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _on_term(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same path as Ctrl-C, so the broker is stopped either way.
    raise KeyboardInterrupt


def _start(
    *,
    foreground: bool,
    prefer: Prefer,
    data_dir: Path,
    cache_dir: Path,
    port: int | None,
    kafka_version: str,
    startup_timeout: float,
    security: KafkaSecuritySettings,
) -> None:
    from streams.wiring.supervisor import embedded_scram_user

    try:
        embedded = choose_broker(
            prefer,
            data_dir,
            cache_dir,
            port,
            kafka_version=kafka_version,
            startup_timeout=startup_timeout,
            detached=not foreground,
            scram=embedded_scram_user(security),
        )
        bootstrap = embedded.start()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    assert embedded.pid is not None
    state = BrokerState(
        pid=embedded.pid,
        bootstrap=bootstrap,
        kind=embedded.kind,
        data_dir=str(data_dir),
        started_at=time.time(),
        foreground=foreground,
        security=security.describe(),
    )
    if not foreground:
        state.save()
        _announce(state)
        return
    try:
        state.save()
        _announce(state)
        while embedded.running:
            time.sleep(0.5)
        raise click.ClickException(f"the {embedded.kind} broker exited on its own; see the logs in {data_dir}")
    except KeyboardInterrupt:
        click.echo("stopping the broker ...", err=True)
    finally:
        embedded.stop()
        _clear_state(data_dir)


def _load(data_dir: Path) -> BrokerState | None:
    try:
        return BrokerState.load(data_dir)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc


@broker.command()
@_data_dir_option
@click.option("--timeout", type=float, default=20.0, show_default=True, help="Seconds before SIGKILL.")
def stop(*, data_dir: Path, timeout: float) -> None:
    """Stop the broker recorded in the data dir's state file."""
    data_dir = data_dir.expanduser().resolve()
    state = _load(data_dir)
    if state is None or not state.alive():
        _clear_state(data_dir)
        click.echo(f"no broker is running from {data_dir}", err=True)
        return
    try:
        terminate_group(state.pid, timeout)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    _clear_state(data_dir)
    click.echo(f"stopped the {state.kind} broker (pid {state.pid}) on {state.bootstrap}", err=True)


def _security(ctx: click.Context) -> KafkaSecuritySettings:
    settings = settings_or_none(ctx)
    return settings.kafka.security if settings is not None else KafkaSecuritySettings()


@broker.command()
@_data_dir_option
@click.pass_context
def status(ctx: click.Context, *, data_dir: Path) -> None:
    """Say whether the broker is running and answering; exit 1 when it is not."""
    data_dir = data_dir.expanduser().resolve()
    state = _load(data_dir)
    if state is None or not state.alive():
        click.echo(f"no broker is running from {data_dir}")
        # The broker `rcaflow run` starts for itself is not one of these: its ready line names its bootstrap.
        click.echo("# `rcaflow broker` manages brokers it started (`rcaflow broker start`); the one `rcaflow run` "
                   "starts lives and ends with it, and its 'rcaflow ready' line gives KAFKA_BOOTSTRAP_SERVERS")
        click.get_current_context().exit(1)
    answering = metadata_ok(state.bootstrap, timeout=5.0, security=librdkafka_security(_security(ctx)))
    _announce(state)
    click.echo(f"# answering metadata requests: {'yes' if answering else 'no'}")
    if not answering:
        click.get_current_context().exit(1)
