"""Where a notification waits between the 202 and its processing, so a crash in between loses nothing.

Graph wants an answer within 3 s and retries (then drops) unanswered notifications;
fetching the MIME and waiting for the broker may take longer. So the webhook writes each
accepted notification here (fsync'd) and answers; a drain processes and removes it.
The delta checkpoint on ingest-checkpoints is the second line: a lost spool (ephemeral
disk) is healed by the next delta catch-up.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from producers.msgraph.errors import SpoolError

logger = logging.getLogger(__name__)


class Spool(Protocol):
    """Durable FIFO of small JSON entries; ``done`` removes one after it was processed."""

    def put(self, entry: dict[str, Any]) -> str: ...

    def pending(self) -> list[tuple[str, dict[str, Any]]]: ...

    def done(self, key: str) -> None: ...


class MemorySpool:
    """Keeps entries in memory: for tests and for deployments that rely on delta catch-up alone."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        self._seq = 0
        # The webhook writes from a worker thread while the drain reads on the loop.
        self._lock = threading.Lock()

    def put(self, entry: dict[str, Any]) -> str:
        with self._lock:
            self._seq += 1
            key = f"{self._seq:012d}"
            self._entries[key] = dict(entry)
        return key

    def pending(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return sorted(self._entries.items())

    def done(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)


class FileSpool:
    """One file per entry, written to a temp name, fsync'd and renamed: a crash leaves whole entries only."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._seq = 0
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create spool directory {directory}: {exc}") from exc

    def put(self, entry: dict[str, Any]) -> str:
        self._seq += 1
        # Names sort in arrival order within one process; uuid keeps replicas sharing a volume apart.
        key = f"{time.time_ns()}-{self._seq:06d}-{uuid.uuid4().hex[:8]}"
        tmp = self._dir / f".{key}.tmp"
        final = self._dir / f"{key}.json"
        data = json.dumps(entry, separators=(",", ":")).encode("utf-8")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            dir_fd = os.open(self._dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise SpoolError(f"cannot write notification to spool {self._dir}: {exc}") from exc
        return key

    def pending(self) -> list[tuple[str, dict[str, Any]]]:
        found: list[tuple[str, dict[str, Any]]] = []
        for path in sorted(self._dir.glob("*.json")):
            try:
                entry = json.loads(path.read_bytes())
            except (OSError, ValueError) as exc:
                logger.warning("unreadable spool entry %s removed: %s", path.name, exc)
                path.unlink(missing_ok=True)
                continue
            if isinstance(entry, dict):
                found.append((path.stem, entry))
        return found

    def done(self, key: str) -> None:
        try:
            (self._dir / f"{key}.json").unlink(missing_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot remove spool entry {key}: {exc}") from exc

