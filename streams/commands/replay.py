"""``rcaflow replay``: what past alerts would produce today, in a shadow run that acts on nothing."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta

import click

from streams.ops.replay import REPLAYABLE, Window, parse_offsets, run_replay
from streams.settings import Settings

_AGO = re.compile(r"^(\d{1,5})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``2h`` / ``90m`` / ``1d`` ago, or an ISO 8601 time (UTC when it has no offset)."""
    match = _AGO.fullmatch(text.strip())
    if match:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a duration like 2h/90m/1d nor an ISO 8601 time",
                                 param_hint="--since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command("replay")
@click.option("--topic", type=click.Choice(sorted(REPLAYABLE)), default="raw-mail", show_default=True,
              help="raw-mail re-parses the mails; normalized replays structured alerts (webhook, POST /events).")
@click.option("--since", help="Start at this time in every partition: 2h, 90m, 1d ago or an ISO 8601 time.")
@click.option("--from-offset", "offsets", multiple=True, metavar="PARTITION:OFFSET",
              help="Start here instead (repeat per partition; partitions not named are skipped).")
@click.option("--limit", default=1000, show_default=True, help="Copy at most this many records.")
@click.option("--with-llm", is_flag=True, help="Let the shadow run ask the LLM too (costs tokens).")
@click.option("--keep", is_flag=True, help="Keep the shadow topics afterwards (their prefix is printed).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout (logs stay on stderr).")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for all results.")
@click.option("--bootstrap", help="Kafka bootstrap servers (default: from the configuration).")
@click.option("--prefix", help="Topic prefix of the installation to replay (default: from the configuration).")
@click.pass_context
def replay(ctx: click.Context, topic: str, since: str | None, offsets: tuple[str, ...], limit: int, with_llm: bool,
           keep: bool, as_json: bool, timeout: float, bootstrap: str | None, prefix: str | None) -> None:
    """Run past alerts through today's parsers and policy in a shadow run: no real action, no chat message."""
    if (since is None) == (not offsets):
        raise click.UsageError("give exactly one of --since and --from-offset")
    if limit < 1:
        raise click.BadParameter("must be at least 1", param_hint="--limit")
    window = Window(since=parse_since(since) if since else None, offsets=parse_offsets(offsets) if offsets else None,
                    limit=limit)
    root = ctx.find_root().obj
    settings = root if isinstance(root, Settings) else Settings()
    if bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap_servers": bootstrap})
    if prefix is not None:
        settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"topic_prefix": prefix})})
    sys.exit(run_replay(settings, topic=topic, window=window, with_llm=with_llm, keep=keep, as_json=as_json,
                        timeout=timeout))
