"""`rcaflow broker start|stop|status`: run the embedded broker for other processes to share."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType
from typing import cast

import click

from streams.broker.base import BrokerError, metadata_ok, terminate_group
from streams.broker.kafka_maven import DEFAULT_CACHE_ROOT, DEFAULT_KAFKA_VERSION
from streams.broker.select import Prefer, choose_broker
from streams.broker.state import (
    LEGACY_DATA_DIR,
    STATE_FILE,
    BrokerState,
    clear_state,
    legacy_notice,
    running_broker,
    unrecorded_broker,
)
from streams.commands.context import settings_or_none
from streams.settings import EmbeddedBrokerSettings, KafkaSecuritySettings, librdkafka_security

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_DATA_DIR", "STATE_FILE", "BrokerState", "broker"]

#: The same dir as ``rcaflow run``'s (``kafka.embedded.data_dir``), so one data dir has one broker.
DEFAULT_DATA_DIR = EmbeddedBrokerSettings().data_dir


def _where(ctx: click.Context, data_dir: Path | None) -> tuple[Path, tuple[Path, ...]]:
    """The data dir to use, and every dir a broker of ours may be running from.

    Without ``--data-dir``: the configured ``kafka.embedded.data_dir`` (where ``rcaflow run`` puts its broker),
    plus the old default of these commands, where a broker started by an older rcaflow may still run.
    """
    if data_dir is not None:
        chosen = data_dir.expanduser().resolve()
        return chosen, (chosen,)
    settings = settings_or_none(ctx)
    configured = settings.kafka.embedded.data_dir if settings is not None else DEFAULT_DATA_DIR
    chosen = configured.expanduser().resolve()
    legacy = LEGACY_DATA_DIR.expanduser().resolve()
    return chosen, (chosen, legacy) if legacy != chosen else (chosen,)


def _tell_legacy(data_dir: Path, candidates: tuple[Path, ...]) -> None:
    """One line on stderr when the old default data dir still holds a broker's data (stdout stays eval-able)."""
    for legacy in candidates[1:]:
        notice = legacy_notice(data_dir, legacy)
        if notice is not None:
            click.echo(f"# {notice}", err=True)


def _announce(state: BrokerState) -> None:
    # stdout stays eval-able: `set -a; eval "$(rcaflow broker start)"; set +a`.
    click.echo(f"KAFKA_BOOTSTRAP_SERVERS={state.bootstrap}")
    click.echo(f"# broker: {state.kind} (pid {state.pid}, data {state.data_dir}, clients: {state.security})")
    if state.run_owned:
        click.echo(f"# {_run_owner(state)}")


def _run_owner(state: BrokerState) -> str:
    """Whose broker a run's is, and how it ends."""
    if state.owner_alive():
        return (f"owned by `rcaflow run` (pid {state.owner_pid}): it lives and ends with that run; stop the run to "
                "stop it")
    return (f"started by an `rcaflow run` that has ended (pid {state.owner_pid}): it is stopping with it "
            "(`rcaflow broker stop` stops it if it does not)")


_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    show_default="kafka.embedded.data_dir (~/.local/state/rcaflow/broker), as `rcaflow run`",
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
    data_dir: Path | None,
    cache_dir: Path,
    port: int | None,
    kafka_version: str,
    startup_timeout: float,
) -> None:
    """Start the broker and print KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT.

    With kafka.security set to SASL_PLAINTEXT (SCRAM-SHA-512) the broker wants that user's login.
    """
    data_dir, candidates = _where(ctx, data_dir)
    _tell_legacy(data_dir, candidates)
    existing = _running(candidates)
    if existing is not None and existing.run_owned:
        raise click.ClickException(
            f"a {existing.kind} broker that `rcaflow run` started (pid {existing.owner_pid}) is using "
            f"{existing.data_dir} and ends with that run: take KAFKA_BOOTSTRAP_SERVERS={existing.bootstrap} while it "
            "runs, stop that run first, or give this one a --data-dir of its own")
    if existing is not None:
        click.echo(f"a {existing.kind} broker is already running from {existing.data_dir}", err=True)
        _announce(existing)
        return
    unrecorded = unrecorded_broker(data_dir)
    if unrecorded is not None:
        raise click.ClickException(
            f"a broker that `rcaflow run` started (pid {unrecorded}) is using {data_dir}: take "
            "KAFKA_BOOTSTRAP_SERVERS from its 'rcaflow ready' line, or give this one a --data-dir of its own")
    clear_state(data_dir)
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
        clear_state(data_dir)


def _load(data_dir: Path) -> BrokerState | None:
    try:
        return BrokerState.load(data_dir)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc


def _running(candidates: tuple[Path, ...]) -> BrokerState | None:
    try:
        return running_broker(candidates)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc


def _nowhere(candidates: tuple[Path, ...]) -> str:
    return f"no broker is running from {' or '.join(str(path) for path in candidates)}"


@broker.command()
@_data_dir_option
@click.option("--timeout", type=float, default=20.0, show_default=True, help="Seconds before SIGKILL.")
@click.option("--force", is_flag=True,
              help="Also stop a broker that a running `rcaflow run` owns (that run then stops too: it has lost Kafka).")
@click.pass_context
def stop(ctx: click.Context, *, data_dir: Path | None, timeout: float, force: bool) -> None:
    """Stop the broker recorded in the data dir's state file (by default also one still in the old data dir).

    A broker that a running `rcaflow run` started is that run's: stop the run instead, or give --force.
    """
    data_dir, candidates = _where(ctx, data_dir)
    stopped = 0
    refused: list[str] = []
    for where in candidates:
        state = _load(where)
        if state is None or not state.alive():
            if where == data_dir:
                clear_state(where)  # a stale record; one in the old dir is left as it is
            continue
        owner_running = state.owner_alive()
        if owner_running and not force:
            refused.append(
                f"the {state.kind} broker on {state.bootstrap} (pid {state.pid}, data {where}) belongs to the "
                f"`rcaflow run` with pid {state.owner_pid}, which stops it when it ends: stop that run instead "
                f"(Ctrl-C where it runs, or `kill {state.owner_pid}`); --force stops the broker now, and that run "
                "stops with it")
            continue
        try:
            terminate_group(state.pid, timeout)
        except BrokerError as exc:
            raise click.ClickException(str(exc)) from exc
        clear_state(where)
        stopped += 1
        old = "" if where == data_dir else f", which ran from the old data dir {where}"
        click.echo(f"stopped the {state.kind} broker (pid {state.pid}) on {state.bootstrap}{old}", err=True)
        if state.run_owned:
            click.echo(f"# it was started by `rcaflow run` pid {state.owner_pid}" + (
                ", which stops too: it has lost Kafka" if owner_running else ", which had ended"),
                err=True)
    if refused:
        raise click.ClickException("\n".join(refused))
    if not stopped:
        click.echo(_nowhere(candidates), err=True)
    _tell_legacy(data_dir, candidates)


def _security(ctx: click.Context) -> KafkaSecuritySettings:
    settings = settings_or_none(ctx)
    return settings.kafka.security if settings is not None else KafkaSecuritySettings()


@broker.command()
@_data_dir_option
@click.pass_context
def status(ctx: click.Context, *, data_dir: Path | None) -> None:
    """Say whether the broker is running and answering; exit 1 when it is not."""
    data_dir, candidates = _where(ctx, data_dir)
    state = _running(candidates)
    if state is None:
        click.echo(_nowhere(candidates))
        # `rcaflow run` records no state: its broker lives and ends with it, and its ready line names it.
        unrecorded = unrecorded_broker(data_dir)
        if unrecorded is not None:
            click.echo(f"# but a broker that `rcaflow run` started (pid {unrecorded}) is using {data_dir}: it lives "
                       "and ends with that run, and its 'rcaflow ready' line gives KAFKA_BOOTSTRAP_SERVERS")
        else:
            click.echo("# `rcaflow broker start` starts one for other processes to share; `rcaflow run` starts "
                       "its own here when none runs, and it lives and ends with that run")
        _tell_legacy(data_dir, candidates)
        click.get_current_context().exit(1)
    answering = metadata_ok(state.bootstrap, timeout=5.0, security=librdkafka_security(_security(ctx)))
    _announce(state)
    if Path(state.data_dir) != data_dir:
        click.echo(f"# it runs from the old data dir {state.data_dir}, not from {data_dir}")
    click.echo(f"# answering metadata requests: {'yes' if answering else 'no'}")
    _tell_legacy(data_dir, candidates)
    if not answering:
        click.get_current_context().exit(1)
