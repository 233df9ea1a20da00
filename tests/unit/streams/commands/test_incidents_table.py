"""`rcaflow incidents` as a table: the columns stay in line whatever the class and cluster names' lengths.

The API is a local HTTP server answering GET /incidents with a page of the documented shape.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from streams.commands.incidents import incidents

PAGE: dict[str, Any] = {"items": [
    {"incident_id": "inc-1", "state": "open", "alert_class": "etcd_latency", "cluster": "dce-prod",
     "count": 3, "opened_at": "2026-12-07T01:00:00Z", "actions_awaiting_approval": 0},
    {"incident_id": "inc-2", "state": "open", "alert_class": "victoriametrics_vmselect_slow_queries_storm",
     "cluster": "dce-prod-shanghai-zone-b-cluster-07", "count": 12, "opened_at": "2026-12-07T02:00:00Z",
     "actions_awaiting_approval": 1},
], "next_cursor": None}


class _Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(PAGE).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_long_class_and_cluster_names_do_not_push_the_later_columns_out_of_line(api_url: str) -> None:
    result = CliRunner().invoke(incidents, ["--api-url", api_url, "--token", "t"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    # The count column ("x3", "x12") and the opened-at column start at the same place on every line.
    assert lines[0].index(" x3 ") == lines[1].index(" x12 ")
    assert lines[0].index("2026-12-07T01") == lines[1].index("2026-12-07T02")
    assert "victoriametrics_vmselect_slow_queries_storm" in lines[1]
