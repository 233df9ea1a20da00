"""Serve a stand-in ASGI app on a free loopback port in a thread, for tests and benchmarks that need a real socket."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


class StandInDidNotStartError(RuntimeError):
    pass


@contextlib.contextmanager
def serve(app: Any, name: str = "standin") -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT); the server stops when the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise StandInDidNotStartError(f"{name} did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
