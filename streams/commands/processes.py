"""``rcaflow run|api|worker|executor``: the long-running processes, alone or all together."""

from __future__ import annotations

import sys

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
        api_url = f"http://{settings.api.host}:{settings.api.port}"
        worker_url = f"http://{settings.worker.metrics_host}:{settings.worker.metrics_port}"
        me = sys.argv[0] if sys.argv[0].endswith("rcaflow") else "rcaflow"  # .venv/bin/rcaflow under `make run`
        stack.wait(
            ready=lambda: _answers(f"{api_url}/readyz") and (not settings.worker.metrics_port
                                                             or _answers(f"{worker_url}/readyz")),
            on_ready=lambda: click.echo(
                f"rcaflow ready: send alerts to {api_url} (README), see them with `{me} incidents` or "
                f"{api_url}/console; for `{me} topic read/stats/replay/audit verify` in another shell: "
                f"export KAFKA_BOOTSTRAP_SERVERS={stack.bootstrap}", err=True))


def _answers(url: str) -> bool:
    """Whether a role's /readyz says 200: the `ready` line is what a new user waits for before the first alert."""
    import httpx

    try:
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200  # loopback: never via a proxy
    except httpx.HTTPError:
        return False


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
