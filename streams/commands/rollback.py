"""``rcaflow rollback ACTION_ID --by NAME``: undo something rcaflow did, with the inverse it recorded.

The executor records, before each effect, how to undo it (the replica count
before a scale, the restart annotations before a restart, the silence it
created, the annotation it set). This command reads the action's records,
checks that there is something real to undo and that nobody undid it yet,
shows the plan, and publishes the rollback as an action approved by NAME. The
executor runs it like any approved action (once, audited, confirmed), then
marks the original ``rolled_back``.

The rollback is signed with the decision key (``security.decision_key``), as
the worker signs what it approves: the executor runs nothing unsigned.

Exit 0 when the rollback was requested, 1 when it was refused (the reason is
printed), 2 when the actions topic could not be read or written or no decision
key is configured.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click
from pydantic import ValidationError

from producers.publisher import KafkaPublisher, PublishError
from schemas.codec import make_codec
from schemas.errors import CodecError
from schemas.records import ActionEvent
from schemas.topics import ACTIONS
from streams.commands.context import kafka_client_of
from streams.executor.rollbacks import RollbackRefusedError, plan_rollback
from streams.ops.topic_read import TopicReadError, read_to_end
from streams.settings import Settings, producer_config
from streams.wiring.decision_keys import optional_decision_keys


@click.command("rollback")
@click.argument("action_id")
@click.option("--by", "by", required=True, help="Who asks for it; recorded as the approver in the audit trail.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--bootstrap", help="Kafka bootstrap servers (default: from the configuration).")
@click.option("--prefix", help="Topic prefix (default: from the configuration).")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to read the actions topic.")
@click.pass_context
def rollback(ctx: click.Context, action_id: str, by: str, yes: bool, bootstrap: str | None, prefix: str | None,
             timeout: float) -> None:
    """Roll back action ACTION_ID with the inverse the executor recorded before running it."""
    settings = ctx.find_root().obj if isinstance(ctx.find_root().obj, Settings) else None
    server = bootstrap or (settings.bootstrap if settings else None)
    if not server:
        raise click.UsageError("give --bootstrap (or configure KAFKA_BOOTSTRAP_SERVERS)")
    keys = optional_decision_keys(settings) if settings else None
    if keys is None:  # the executor runs only signed rollbacks: without the key there is nothing to ask for
        click.echo("rollback: security.decision_key is not set; the rollback is signed with the executor's "
                   "decision key (RCAFLOW_SECURITY__DECISION_KEY or the secret file security/decision_key)", err=True)
        raise SystemExit(2)
    topic_prefix = prefix if prefix is not None else (settings.kafka.topic_prefix if settings else "")
    codec = make_codec(settings.schema_registry_url if settings else None)
    topic = ACTIONS.full_name(topic_prefix)
    history: list[ActionEvent] = []
    try:
        for _partition, _offset, value in read_to_end(server, topic, timeout=timeout, purpose="rollback",
                                                      extra=kafka_client_of(settings, server)):
            try:
                record: ActionEvent = codec.decode(value, ActionEvent, topic=topic)
            except (CodecError, ValidationError):
                continue  # not ours to judge here; the audit agent reports undecodable actions
            if action_id in (record.action_id, record.rollback_of):
                history.append(record)
    except TopicReadError as exc:
        click.echo(f"rollback: {exc}", err=True)
        raise SystemExit(2) from exc
    try:
        plan = plan_rollback(history, action_id, by=by, at=datetime.now(UTC), keys=keys)
    except RollbackRefusedError as exc:
        click.echo(f"rollback refused: {exc}", err=True)
        raise SystemExit(1) from exc
    args = " ".join(f"{k}={v}" for k, v in sorted(plan.params.items()))
    click.echo(f"{plan.name}: {plan.tool}.{plan.operation} {args}")
    click.echo(f"  undoes {plan.undo_action} {' '.join(f'{k}={v}' for k, v in sorted(plan.undo_params.items()))}")
    click.echo(f"  tenant {plan.tenant}, incident {plan.incident_id}, risk {plan.risk.value}, "
               f"as action {plan.action_id}")
    if not yes and not click.confirm("Request this rollback?", default=False):
        raise SystemExit(1)
    publisher = KafkaPublisher(server, codec, topic_prefix, producer_config(settings.kafka) if settings else None)
    try:
        publisher.publish_sync(ACTIONS, f"{plan.tenant}:{plan.action_id}", plan)
    except PublishError as exc:
        click.echo(f"rollback: could not publish to {topic}: {exc}", err=True)
        raise SystemExit(2) from exc
    finally:
        publisher.close_sync()
    click.echo(f"requested: {plan.action_id}, approved by {by.strip()}; the executor runs it "
               "(as a dry run unless executor.dry_run is false) and marks the original rolled_back")
