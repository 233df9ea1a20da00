"""``rcaflow ingest imap``: the mail producers that publish incoming alert mails to raw-mail."""

from __future__ import annotations

import sys

import click

from streams.commands.context import settings_of


@click.group()
def ingest() -> None:
    """Mail producers: publish incoming alert mails to raw-mail."""


@ingest.command("imap")
@click.option("--mailbox", default=None, help="Which configured mailbox (RCAFLOW_MAILBOXES__<name>__...).")
@click.option("--metrics-port", default=9467, show_default=True, help="Prometheus /metrics port (0: off).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--once", is_flag=True,
              help="Publish every mail not yet published, then exit (for cron or a first import); "
                   "exit 1 on a connection or broker failure, with the checkpoint where it was.")
@click.pass_context
def ingest_imap(ctx: click.Context, mailbox: str | None, metrics_port: int, metrics_host: str, once: bool) -> None:
    """IMAP IDLE producer for one mailbox; never loses or repeats a mail."""
    import asyncio

    from prometheus_client import REGISTRY, start_http_server

    from producers.imap.run import ingest as run_ingest
    from streams.settings import client_config, producer_config
    from streams.wiring.kafka_client import check_cluster
    from streams.wiring.runtime import require_bootstrap

    settings = settings_of(ctx)
    if not settings.mailboxes:
        raise click.ClickException("no mailbox configured: set RCAFLOW_MAILBOXES__<name>__HOST, __USERNAME, ...")
    if mailbox is None:
        if len(settings.mailboxes) > 1:
            raise click.ClickException(f"several mailboxes configured, pick one with --mailbox: "
                                       f"{', '.join(sorted(settings.mailboxes))}")
        mailbox = next(iter(settings.mailboxes))
    if mailbox not in settings.mailboxes:
        raise click.ClickException(f"no mailbox {mailbox!r}; configured: {', '.join(sorted(settings.mailboxes))}")
    bootstrap = require_bootstrap(settings)
    # Refused credentials end the process here, in one line (KafkaAuthError), before any mail is fetched; with
    # --once (cron) no broker there does too, at once.
    check_cluster(client_config(settings.kafka, bootstrap), fail_fast=once)
    if metrics_port and not once:
        from streams.wiring.build_info import register_build_info

        register_build_info()
        start_http_server(metrics_port, addr=metrics_host)
    from streams.wiring.tenants import build_ingest_quota, build_mail_cost

    quota = build_ingest_quota(settings, REGISTRY, replicated=False)  # one per mailbox
    code = asyncio.run(
        run_ingest(
            settings.mailboxes[mailbox],
            bootstrap=bootstrap,
            prefix=settings.kafka.topic_prefix,
            kafka_extra=producer_config(settings.kafka),
            schema_registry_url=settings.schema_registry_url,
            metrics_registry=REGISTRY,
            once=once,
            quota=quota,
            mail_cost=build_mail_cost(settings) if quota is not None else None,
        )
    )
    sys.exit(code)
