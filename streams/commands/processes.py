"""``rcaflow run|api|worker|executor``: the long-running processes, alone or all together."""

from __future__ import annotations

import click

from streams.commands.context import settings_of


@click.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run everything (embedded broker when KAFKA_BOOTSTRAP_SERVERS is unset) until Ctrl-C."""
    from streams.wiring.supervisor import IMAP_ROLE_PREFIX, Stack, run_roles

    settings = settings_of(ctx)
    # Every role reads the same --config, --secrets-dir and environment as this process (Stack.start_role).
    roles = run_roles(settings)
    with Stack(settings, roles=roles) as stack:
        mailboxes = [role.removeprefix(IMAP_ROLE_PREFIX) for role in roles if role.startswith(IMAP_ROLE_PREFIX)]
        click.echo(
            f"rcaflow running: Kafka {stack.bootstrap}, API http://{settings.api.host}:{settings.api.port} "
            f"(POST /events, POST /webhook, /metrics), IMAP mailboxes: {', '.join(mailboxes) or 'none'}. "
            "Ctrl-C stops.",
            err=True,
        )
        stack.wait()


@click.command()
@click.pass_context
def api(ctx: click.Context) -> None:
    """The HTTP API: POST /events, POST /webhook, /healthz, /readyz, /metrics."""
    from streams.api.process import run_api

    run_api(settings_of(ctx))


@click.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """The Faust worker: normalize, dedup, rca, decide and audit agents."""
    from streams.worker.process import run_worker

    run_worker(settings_of(ctx))


@click.command()
@click.pass_context
def executor(ctx: click.Context) -> None:
    """The executor: runs approved actions (dry-run unless configured otherwise)."""
    from streams.executor.process import run_executor

    run_executor(settings_of(ctx))
