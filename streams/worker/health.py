"""The worker's HTTP port: /metrics for Prometheus, /readyz naming a stage stuck in a transient retry, /healthz.

The worker never gives up on a transient failure (an input waits rather than being dead-lettered
or skipped), so a long outage would otherwise only show as silence. ``/readyz`` turns 503 once a
stage's oldest record has been retrying for ``worker.stuck_after_s`` and says which stage, what it
waits for, since when and the last error; ``/healthz`` stays 200 while the process answers (a
restart would not bring the broker or the model back, so liveness must not fail on an outage).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from streams.worker.failures import RETRIES, RetryBoard

StartResponse = Callable[..., Any]


def readiness(board: RetryBoard, stuck_after_s: float) -> tuple[int, dict[str, Any]]:
    """The /readyz answer: 200, or 503 with each stuck stage's oldest record (what, seconds, attempts, error)."""
    stuck = board.stuck(stuck_after_s)
    body: dict[str, Any] = {"status": "stuck" if stuck else "ok", "stuck_after_s": stuck_after_s, "stuck": {
        stage: {"what": e.what, "retrying_s": round(e.seconds(), 1), "attempts": e.attempts, "last_error": e.error,
                "next_retry_in_s": round(e.next_delay_s, 1)}
        for stage, e in sorted(stuck.items())
    }}
    return (503 if stuck else 200), body


def health_app(board: RetryBoard, stuck_after_s: float, registry: CollectorRegistry = REGISTRY) -> Any:
    """A WSGI app: /readyz and /healthz as above, everything else the Prometheus exposition."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            code, body = 200, {"status": "ok"}
        elif path == "/readyz":
            code, body = readiness(board, stuck_after_s)
        else:
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        data = json.dumps(body).encode()
        start_response(f"{code} {'OK' if code == 200 else 'Service Unavailable'}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: not worth a log line each."""


def serve_health(port: int, host: str, stuck_after_s: float, *, board: RetryBoard = RETRIES,
                 registry: CollectorRegistry = REGISTRY) -> ThreadingWSGIServer:
    """Serves :func:`health_app` on ``host:port`` from a daemon thread; ``board`` is registered on ``registry``."""
    registry.register(board)
    server = make_server(host, port, health_app(board, stuck_after_s, registry), ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-health", daemon=True).start()
    return server
