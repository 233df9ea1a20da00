"""``rcaflow msgraph``: create, renew and inspect the Graph subscriptions; run a delta catch-up.

Subscriptions need the webhook to be reachable (Graph validates the notificationUrl
while creating one), so run ``subscribe`` once the API is up; ``renew`` suits a cron job,
although the API process also renews by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click
import httpx
import yaml
from pydantic import ValidationError

from producers.msgraph import GraphClient, GraphError, MsalTokenProvider, MsgraphConfig, SubscriptionManager

T = TypeVar("T")


def load_msgraph_config(ctx: click.Context, path: Path | None) -> MsgraphConfig:
    """From ``--msgraph-config FILE`` (YAML), else the ``msgraph`` section of the app settings."""
    if path is not None:
        try:
            return MsgraphConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise click.UsageError(f"{path}: {exc}") from exc
    section = getattr(ctx.find_root().obj, "msgraph", None)
    if isinstance(section, MsgraphConfig):
        return section
    raise click.UsageError("no Graph configuration: pass --msgraph-config FILE or set the msgraph settings section")


def _run(config: MsgraphConfig, work: Callable[[SubscriptionManager], Awaitable[T]]) -> T:
    async def go() -> T:
        tokens = MsalTokenProvider(
            client_id=config.client_id,
            client_secret=config.client_secret.get_secret_value(),
            authority=config.authority,
            validate_authority=config.authority_host == "https://login.microsoftonline.com",
        )
        try:
            async with httpx.AsyncClient(timeout=config.timeout_seconds) as http:
                client = GraphClient(http, tokens, base_url=config.graph_url, retry=config.retry)
                return await work(SubscriptionManager(config, client))
        finally:
            tokens.close()

    try:
        return asyncio.run(go())
    except GraphError as exc:
        raise click.ClickException(str(exc)) from exc


_config_option = click.option(
    "--msgraph-config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML file with the Graph settings (default: the msgraph section of the rcaflow settings).",
)


@click.group("msgraph")
def msgraph() -> None:
    """Microsoft Graph mail subscriptions (Exchange Online)."""


@msgraph.command("subscribe")
@_config_option
@click.pass_context
def subscribe(ctx: click.Context, config_path: Path | None) -> None:
    """Create the subscription of every configured mailbox, or renew it if it expires soon."""
    config = load_msgraph_config(ctx, config_path)
    subs = _run(config, lambda manager: manager.ensure_all())
    for mailbox, sub in subs.items():
        click.echo(f"{mailbox}\t{sub.id}\texpires {sub.expiration.isoformat()}")


@msgraph.command("renew")
@_config_option
@click.option("--force", is_flag=True, help="Renew even when plenty of time is left.")
@click.pass_context
def renew(ctx: click.Context, config_path: Path | None, force: bool) -> None:
    """Renew subscriptions close to expiry (recreating any Graph has deleted)."""
    config = load_msgraph_config(ctx, config_path)

    async def work(manager: SubscriptionManager) -> list[str]:
        lines = []
        for mailbox in config.mailboxes:
            sub = await manager.find(mailbox)
            if sub is None:
                sub = await manager.create(mailbox)
                lines.append(f"{mailbox.mailbox_id}\t{sub.id}\tcreated, expires {sub.expiration.isoformat()}")
            elif force or manager.needs_renewal(sub):
                sub = await manager.renew(mailbox, sub.id)
                lines.append(f"{mailbox.mailbox_id}\t{sub.id}\trenewed, expires {sub.expiration.isoformat()}")
            else:
                lines.append(f"{mailbox.mailbox_id}\t{sub.id}\tok, expires {sub.expiration.isoformat()}")
        return lines

    for line in _run(config, work):
        click.echo(line)


@msgraph.command("status")
@_config_option
@click.pass_context
def status(ctx: click.Context, config_path: Path | None) -> None:
    """Show each mailbox's subscription and how long it has left; exit 1 if one is missing."""
    config = load_msgraph_config(ctx, config_path)

    async def work(manager: SubscriptionManager) -> tuple[list[str], bool]:
        lines, missing = [], False
        now = datetime.now(UTC)
        for mailbox in config.mailboxes:
            sub = await manager.find(mailbox)
            if sub is None:
                missing = True
                lines.append(f"{mailbox.mailbox_id}\t-\tNO SUBSCRIPTION")
                continue
            left = sub.expiration - now
            due = " (renewal due)" if manager.needs_renewal(sub) else ""
            lines.append(f"{mailbox.mailbox_id}\t{sub.id}\t{int(left.total_seconds() // 60)} min left{due}")
        return lines, missing

    lines, missing = _run(config, work)
    for line in lines:
        click.echo(line)
    if missing:
        raise SystemExit(1)
