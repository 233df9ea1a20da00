"""The `rcaflow` command: one entry point for every process and tool."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import click

from schemas.errors import RcaflowError

logger = logging.getLogger("rcaflow")

#: Every subcommand: where it lives ("module:attribute", imported on use) and the line `rcaflow --help` shows for
#: it without importing it (a test keeps the line equal to the command's own help).
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "api": ("streams.commands.processes:api",
            "The HTTP API: POST /events, POST /webhook, /healthz, /readyz, /metrics."),
    "approve": ("streams.commands.incidents:approve",
                "Approve ACTION_ID as an API approver of its tenant (POST /actions/ACTION_ID/approve)."),
    "audit": ("streams.commands.audit:audit", "Work with the tamper-evident audit trail."),
    "broker": ("streams.commands.broker:broker",
               "Run the embedded single-node broker (for when there is no KAFKA_BOOTSTRAP_SERVERS)."),
    "config": ("streams.commands.config:config",
               "Check the configuration: the effective settings, secrets masked (docs/configuration.md)."),
    "demo": ("streams.commands.demo:demo",
             "Feed the sample mails through the whole pipeline and print what happened to each."),
    "executor": ("streams.commands.processes:executor",
                 "The executor: runs approved actions (dry-run unless configured otherwise)."),
    "explain": ("streams.commands.explain:explain",
                "Parse, triage (with evidence and the LLM when configured) and decide, printing what would happen."),
    "incident": ("streams.commands.incidents:incident", "Show one incident and its timeline (GET /incidents/ID)."),
    "incidents": ("streams.commands.incidents:incidents",
                  "List the tenant's incidents, newest first (GET /incidents)."),
    "ingest": ("streams.commands.ingest:ingest", "Mail producers: publish incoming alert mails to raw-mail."),
    "kb": ("streams.commands.kb:kb",
           "The incident knowledge base in Elasticsearch: consumer, retention, similar incidents, stats."),
    "msgraph": ("streams.commands.msgraph:msgraph", "Microsoft Graph mail subscriptions (Exchange Online)."),
    "parse": ("streams.commands.parse:parse",
              'Print each mail\'s AlertEvents as JSON lines; a mail without alerts prints {"file", "error"}.'),
    "policy": ("streams.commands.policy:policy", "Work with remediation policy files."),
    "rca": ("streams.commands.rca:rca",
            "The seed's event JSON (a file, or - for stdin) in, the strict-JSON RCA by the configured LLM out."),
    "reject": ("streams.commands.incidents:reject",
               "Reject ACTION_ID as an API approver of its tenant (POST /actions/ACTION_ID/reject)."),
    "replay": ("streams.commands.replay:replay", "Run past alerts through today's parsers and policy in a shadow run: "
               "no real action, no chat message."),
    "rollback": ("streams.commands.rollback:rollback",
                 "Roll back action ACTION_ID with the inverse the executor recorded before running it."),
    "run": ("streams.commands.processes:run",
            "Run everything (embedded broker when KAFKA_BOOTSTRAP_SERVERS is unset) until Ctrl-C."),
    "stats": ("streams.commands.stats:stats",
              "Incidents, time to a root cause, actions (auto / approved / how they ended) per alert class."),
    "topic": ("streams.commands.topic:topic", "Read a topic's records as JSON lines (`topic read TOPIC --decode`)."),
    "worker": ("streams.commands.processes:worker",
               "The Faust worker: normalize, dedup, rca, decide and audit agents."),
}


class RcaflowGroup(click.Group):
    """Imports a subcommand's module only when it runs, and lists them all from the table: `rcaflow --help`
    loads no subcommand, no framework and not even the settings."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            module, _, attr = LAZY_COMMANDS[cmd_name][0].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = [name for name in self.list_commands(ctx) if name in LAZY_COMMANDS]
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)  # as click.Group lays it out
        with formatter.section("Commands"):
            formatter.write_dl([(name, short_help(name, limit)) for name in names])


def short_help(name: str, limit: int = 45) -> str:
    """What ``rcaflow --help`` shows for a subcommand, from the table."""
    return click.utils.make_default_short_help(LAZY_COMMANDS[name][1], limit)


@click.group(cls=RcaflowGroup)
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="RCAFLOW_CONFIG", help="YAML settings file (environment variables win).")
@click.option("--secrets-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              envvar="RCAFLOW_SECRETS_DIR", help="Directory of mounted secret files.")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING ...")
@click.option("--reset-section", "reset", multiple=True, hidden=True,
              help="Set this top-level settings section back to its defaults (replay's shadow roles).")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, secrets_dir: Path | None, log_level: str | None,
        reset: tuple[str, ...]) -> None:
    """rcaflow: alert e-mails in, root-cause analyses and safe, audited remediation out."""
    from streams.commands.context import reset_sections
    from streams.settings import load_settings, secret_values
    from streams.wiring.logging_setup import setup_logging

    settings = reset_sections(load_settings(config_file, secrets_dir), reset)
    if log_level:
        settings = settings.model_copy(update={"log_level": log_level})
    setup_logging(settings.log_level, settings.log_json, secret_values(settings))
    ctx.obj = settings


def main() -> None:
    """The process boundary: an error of ours is one line (one per problem) and exit code 2; anything else is a bug.

    Ours is decided by type (``RcaflowError``), never by name, so a foreign ``KeyError``
    or ``ValidationError`` keeps its traceback instead of passing for a clean refusal.
    """
    try:
        cli(standalone_mode=True)
    except RcaflowError as exc:
        logger.debug("rcaflow: %s (retriable=%s)", type(exc).__name__, exc.retriable, exc_info=True)
        for line in str(exc).splitlines() or [type(exc).__name__]:  # several problems: one line each
            click.echo(f"rcaflow: {line}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
