"""The `rcaflow` command: one entry point for every process and tool."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import click

from streams.logging_setup import setup_logging
from streams.settings import Settings, load_settings

logger = logging.getLogger("rcaflow")

#: Subcommands that live in their own modules, imported on use ("module:attribute").
LAZY_COMMANDS: dict[str, str] = {
    "audit": "streams.commands.audit:audit",
    "broker": "streams.broker.commands:broker",
    "explain": "streams.commands.explain:explain",
    "msgraph": "streams.commands.msgraph:msgraph",
    "parse": "streams.commands.parse:parse",
    "policy": "streams.commands.policy:policy",
    "replay": "streams.commands.replay:replay",
    "stats": "streams.commands.stats:stats",
    "rollback": "streams.commands.rollback:rollback",
}


class RcaflowGroup(click.Group):
    """Imports a subcommand's module only when it is used, so `rcaflow --help` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            module, _, attr = LAZY_COMMANDS[cmd_name].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=RcaflowGroup)
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="RCAFLOW_CONFIG", help="YAML settings file (environment variables win).")
@click.option("--secrets-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              envvar="RCAFLOW_SECRETS_DIR", help="Directory of mounted secret files.")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING ...")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, secrets_dir: Path | None, log_level: str | None) -> None:
    """rcaflow: alert e-mails in, root-cause analyses and safe, audited remediation out."""
    settings = load_settings(config_file, secrets_dir)
    if log_level:
        settings = settings.model_copy(update={"log_level": log_level})
    setup_logging(settings.log_level, settings.log_json)
    ctx.obj = settings


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


@cli.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run everything (embedded broker when KAFKA_BOOTSTRAP_SERVERS is unset) until Ctrl-C."""
    from streams.supervisor import Stack

    settings = _settings(ctx)
    with Stack(settings) as stack:
        click.echo(
            f"rcaflow running: Kafka {stack.bootstrap}, API http://{settings.api.host}:{settings.api.port} "
            f"(POST /events, POST /webhook, /metrics). Ctrl-C stops.",
            err=True,
        )
        stack.wait()


@cli.command()
@click.pass_context
def api(ctx: click.Context) -> None:
    """The HTTP API: POST /events, POST /webhook, /healthz, /readyz, /metrics."""
    from streams.processes import run_api

    run_api(_settings(ctx))


@cli.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """The Faust worker: normalize, dedup, rca, decide and audit agents."""
    from streams.processes import run_worker

    run_worker(_settings(ctx))


@cli.command()
@click.pass_context
def executor(ctx: click.Context) -> None:
    """The executor: runs approved actions (dry-run unless configured otherwise)."""
    from streams.processes import run_executor

    run_executor(_settings(ctx))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout (logs stay on stderr).")
@click.option("--samples", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of .eml files (default: the bundled samples/).")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for all results.")
@click.option("--rounds", default=2, show_default=True, help="Feed the mails this many times (2 shows dedup).")
@click.pass_context
def demo(ctx: click.Context, as_json: bool, samples: Path | None, timeout: float, rounds: int) -> None:
    """Feed the sample mails through the whole pipeline and print what happened to each."""
    from streams.demo import run_demo

    sys.exit(run_demo(_settings(ctx), samples_dir=samples, as_json=as_json, timeout=timeout, rounds=rounds))


@cli.group()
def ingest() -> None:
    """Mail producers: publish incoming alert mails to raw-mail."""


@ingest.command("imap")
@click.option("--mailbox", default=None, help="Which configured mailbox (RCAFLOW_MAILBOXES__<name>__...).")
@click.option("--metrics-port", default=9467, show_default=True, help="Prometheus /metrics port (0: off).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.pass_context
def ingest_imap(ctx: click.Context, mailbox: str | None, metrics_port: int, metrics_host: str) -> None:
    """IMAP IDLE producer for one mailbox; never loses or repeats a mail."""
    import asyncio

    from producers.imap.run import ingest as run_ingest
    from streams.runtime import require_bootstrap
    from streams.settings import producer_config

    settings = _settings(ctx)
    if not settings.mailboxes:
        raise click.ClickException("no mailbox configured: set RCAFLOW_MAILBOXES__<name>__HOST, __USERNAME, ...")
    if mailbox is None:
        if len(settings.mailboxes) > 1:
            raise click.ClickException(f"several mailboxes configured, pick one with --mailbox: "
                                       f"{', '.join(sorted(settings.mailboxes))}")
        mailbox = next(iter(settings.mailboxes))
    if mailbox not in settings.mailboxes:
        raise click.ClickException(f"no mailbox {mailbox!r}; configured: {', '.join(sorted(settings.mailboxes))}")
    from prometheus_client import REGISTRY, start_http_server

    if metrics_port:
        start_http_server(metrics_port, addr=metrics_host)
    code = asyncio.run(
        run_ingest(
            settings.mailboxes[mailbox],
            bootstrap=require_bootstrap(settings),
            prefix=settings.kafka.topic_prefix,
            kafka_extra=producer_config(settings.kafka),
            schema_registry_url=settings.schema_registry_url,
            metrics_registry=REGISTRY,
        )
    )
    sys.exit(code)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except Exception as exc:  # the process boundary: one clear line, details in the debug log
        if getattr(exc, "retriable", None) is not None or type(exc).__name__.endswith("Error"):
            logger.debug("fatal", exc_info=True)
            click.echo(f"rcaflow: {type(exc).__name__}: {exc}", err=True)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
