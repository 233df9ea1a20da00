"""The `rcaflow` command: one entry point for every process and tool."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import click

from streams.settings import load_settings
from streams.wiring.logging_setup import setup_logging

logger = logging.getLogger("rcaflow")

#: Subcommands that live in their own modules, imported on use ("module:attribute").
LAZY_COMMANDS: dict[str, str] = {
    "api": "streams.commands.processes:api",
    "audit": "streams.commands.audit:audit",
    "broker": "streams.commands.broker:broker",
    "demo": "streams.commands.demo:demo",
    "executor": "streams.commands.processes:executor",
    "explain": "streams.commands.explain:explain",
    "ingest": "streams.commands.ingest:ingest",
    "msgraph": "streams.commands.msgraph:msgraph",
    "parse": "streams.commands.parse:parse",
    "policy": "streams.commands.policy:policy",
    "replay": "streams.commands.replay:replay",
    "rollback": "streams.commands.rollback:rollback",
    "run": "streams.commands.processes:run",
    "stats": "streams.commands.stats:stats",
    "worker": "streams.commands.processes:worker",
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
