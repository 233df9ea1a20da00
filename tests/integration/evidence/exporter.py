"""A scrape target serving synthetic series in the Prometheus text format, with counters that grow over time."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: What the remote-write-behind class measures: the queue is 600 s behind.
HIGHEST_TS = 1_764_064_800.0
SENT_TS = HIGHEST_TS - 600
LABELS = 'namespace="insight-system",pod="prometheus-insight-agent-0"'
REMOTE = 'remote_name="vm",url="http://vminsert:8480/api/v1/write"'
#: A second Prometheus whose receiver rejects writes (issue 19): 600 s behind, 1,005 failed samples/s, its queue
#: at max_shards, and no vminsert series at all.
REJECTED_LABELS = 'namespace="insight-system",pod="prometheus-insight-agent-1"'
FAILED_PER_S = 1005.0
#: etcd WAL fsync: every second, 10 fsyncs land in the 1.024 s bucket (slow disk), none faster.
FSYNC_BUCKETS = ("0.001", "0.008", "0.256", "0.512", "1.024", "2.048", "+Inf")


class Exporter:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="exporter", daemon=True)

    def text(self) -> str:
        elapsed = time.monotonic() - self.started
        fsyncs = 10 * elapsed
        lines = [
            "# TYPE prometheus_remote_storage_highest_timestamp_in_seconds gauge",
            f"prometheus_remote_storage_highest_timestamp_in_seconds{{{LABELS}}} {HIGHEST_TS}",
            f"prometheus_remote_storage_highest_timestamp_in_seconds{{{REJECTED_LABELS}}} {HIGHEST_TS}",
            "# TYPE prometheus_remote_storage_queue_highest_sent_timestamp_seconds gauge",
            f"prometheus_remote_storage_queue_highest_sent_timestamp_seconds{{{LABELS},{REMOTE}}} {SENT_TS}",
            f"prometheus_remote_storage_queue_highest_sent_timestamp_seconds{{{REJECTED_LABELS},{REMOTE}}} {SENT_TS}",
            "# TYPE prometheus_remote_storage_samples_failed_total counter",
            f"prometheus_remote_storage_samples_failed_total{{{REJECTED_LABELS},{REMOTE}}} "
            f"{FAILED_PER_S * elapsed:.3f}",
            "# TYPE prometheus_remote_storage_shards gauge",
            f"prometheus_remote_storage_shards{{{REJECTED_LABELS},{REMOTE}}} 4",
            "# TYPE prometheus_remote_storage_shards_max gauge",
            f"prometheus_remote_storage_shards_max{{{REJECTED_LABELS},{REMOTE}}} 4",
            "# TYPE vm_rows_inserted_total counter",
            f'vm_rows_inserted_total{{namespace="insight-system",type="promremotewrite"}} {1000 * elapsed:.3f}',
            "# TYPE etcd_disk_wal_fsync_duration_seconds histogram",
        ]
        for le in FSYNC_BUCKETS:
            count = fsyncs if le in ("1.024", "2.048", "+Inf") else 0
            lines.append(f'etcd_disk_wal_fsync_duration_seconds_bucket{{instance="etcd-0",le="{le}"}} {count:.3f}')
        lines += [
            f'etcd_disk_wal_fsync_duration_seconds_sum{{instance="etcd-0"}} {fsyncs:.3f}',
            f'etcd_disk_wal_fsync_duration_seconds_count{{instance="etcd-0"}} {fsyncs:.3f}',
        ]
        return "\n".join(lines) + "\n"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text().encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        return Handler

    def __enter__(self) -> Exporter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
