"""``rcaflow worker``: the Faust worker process, every agent registered, its metrics on their own port."""

from __future__ import annotations

import logging

from streams.settings import Settings, client_config
from streams.wiring.runtime import Stages, build_codec, build_stages, require_bootstrap
from streams.worker.agents import (
    NotifyRequests,
    register_approvals,
    register_audit,
    register_decide,
    register_dedup,
    register_normalize,
    register_notify,
    register_rca,
    register_second_opinion,
)
from streams.worker.app import WorkerApp

logger = logging.getLogger(__name__)


def build_worker(settings: Settings, bootstrap: str, stages: Stages) -> WorkerApp:
    """The Faust app with every agent and timer of the pipeline; ``app.main()`` or a ``faust.Worker`` runs it."""
    from streams.wiring.notify import build_notifier

    worker = WorkerApp(settings, bootstrap, build_codec(settings))
    notifier = build_notifier(settings, worker.tables.notified)
    notify = NotifyRequests(worker, enabled=notifier is not None)
    register_normalize(worker, stages.normalize)
    register_dedup(worker, stages.dedup)
    register_rca(worker, stages.rca)
    register_notify(worker, notifier, notify, stages.context)
    register_decide(worker, stages.decide, notify)
    if stages.second_opinion is not None:
        register_second_opinion(worker, stages.second_opinion, concurrency=settings.llm.concurrency)
    register_approvals(worker, stages.approval, notify)
    register_audit(worker, stages.audit)
    return worker


def run_worker(settings: Settings) -> None:
    import faust

    from streams.stages.metrics import StageMetrics
    from streams.wiring.topics_admin import ensure_topics, worker_topics
    from streams.worker.health import serve_health

    bootstrap = require_bootstrap(settings)
    prefix = settings.kafka.topic_prefix
    # Every topic the Faust app uses, its internal ones included, exists with its record limit before it starts.
    # Also the start-up check: refused credentials end the process here, in one line (KafkaAuthError).
    internal = worker_topics(prefix, settings.worker.app_id, settings.worker.partitions)
    ensure_topics(bootstrap, prefix, extra=client_config(settings.kafka, bootstrap), internal=internal)
    if settings.worker.metrics_port:
        from streams.wiring.build_info import register_build_info
        from streams.wiring.consumer_lag import export_consumer_lag

        register_build_info()
        export_consumer_lag(client_config(settings.kafka, bootstrap), [f"{prefix}{settings.worker.app_id}"],
                            topic_prefix=prefix, also=[topic.name for topic in internal])
        serve_health(settings.worker.metrics_port, settings.worker.metrics_host, settings.worker.stuck_after_s)
    # Faust creates only the last path component; on a fresh machine ~/.local/state/rcaflow is not there yet.
    settings.worker.data_dir.mkdir(parents=True, exist_ok=True)
    stages = build_stages(settings, StageMetrics(tenants=settings.tenants), engines=True)
    worker = build_worker(settings, bootstrap, stages)
    logger.info("worker %s starting on %s", worker.app.conf.id, bootstrap)
    faust.Worker(worker.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False).execute_from_commandline()
