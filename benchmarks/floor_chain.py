"""The engine's floor: a Faust app with the worker's topic hops and record sizes, and trivial agent bodies.

The topology mirrors ``streams/worker/agents.py`` with the LLM off and no chat channel (the topics each
record crosses, the agents that read each topic, how many records each agent writes per record in), so
what is left is Faust, aiokafka and the broker: no Avro, no parsing, no policy, no per-record acks.
``benchmarks/floor_bench.py`` starts it as a process on a spec file (topic names, record size per hop,
actions per alert) measured from a run of the real worker:

    raw-mail → normalize → normalized ┬→ dedup → correlate-input → correlate → incidents → rca → rca-result
                                      └→ audit-ingest → audit-input → audit → audit
    rca-result → decide-route → decide-input → decide → actions ×k ┬→ audit-actions → audit-input
                                                                   └→ pending, notify-outcomes (read only)

With ``tables`` on, the agents that update a table in the worker (dedup, correlate, decide, audit) write a
row of the same size into a table of their own, so the changelog traffic is there too.

    python -m benchmarks.floor_chain SPEC.json   # run by floor_bench, not by hand
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Hops of the worker's chain, in order: (agent, topic it reads, topic it writes).
CHAIN: tuple[tuple[str, str, str], ...] = (
    ("normalize", "raw-mail", "normalized"),
    ("dedup", "normalized", "correlate-input"),
    ("correlate", "correlate-input", "incidents"),
    ("rca", "incidents", "rca-result"),
    ("decide-route", "rca-result", "decide-input"),
    ("decide", "decide-input", "actions"),
    ("audit-ingest", "normalized", "audit-input"),
    ("audit-actions", "actions", "audit-input"),
    ("audit", "audit-input", "audit"),
)
#: Agents that read a topic and write nothing (the worker's pending and notify-outcomes on actions).
READERS: tuple[tuple[str, str], ...] = (("pending", "actions"), ("notify-outcomes", "actions"))
#: Agents that update a table per record in the worker, with the table's row size key in the spec.
TABLE_AGENTS = ("dedup", "correlate", "decide", "audit")


@dataclass(frozen=True)
class FloorSpec:
    """What the floor app needs: where, which topics, how big each hop's records are, actions per alert."""

    bootstrap: str
    app_id: str
    #: logical topic name (as in :data:`CHAIN`) → the real topic name
    topics: dict[str, str]
    #: logical topic name → bytes per record written there
    sizes: dict[str, int]
    #: table rows' bytes per agent in :data:`TABLE_AGENTS`
    row_bytes: dict[str, int]
    #: records written per record read, per agent (normalize: alerts per mail, decide: actions per alert); an
    #: agent writes ``int`` or ``int + 1`` records so that the mean matches; agents not named write one
    fanout: dict[str, float]
    partitions: int
    tables: bool

    @classmethod
    def load(cls, path: Path) -> FloorSpec:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2), encoding="utf-8")


def build_app(spec: FloorSpec) -> Any:
    """The Faust app with the worker's Faust settings (linger, fast rebalance, raw serializers)."""
    import faust

    app = faust.App(
        spec.app_id, broker=[f"kafka://{h}" for h in spec.bootstrap.split(",")], store="memory://",
        key_serializer="raw", value_serializer="raw", topic_partitions=spec.partitions, topic_allow_declare=True,
        web_enabled=False, producer_linger_ms=5, consumer_auto_offset_reset="earliest",
        broker_session_timeout=2.0, broker_heartbeat_interval=0.5, broker_rebalance_timeout=2.0,
        broker_commit_interval=0.5, datadir=tempfile.mkdtemp(prefix="rcaflow-floor-"),  # not the working directory
    )
    topics = {name: app.topic(real, key_type=bytes, value_type=bytes, partitions=spec.partitions)
              for name, real in spec.topics.items()}
    payload = {name: b"x" * size for name, size in spec.sizes.items()}
    tables = {agent: app.Table(f"floor-{agent}", default=None, partitions=spec.partitions)
              for agent in TABLE_AGENTS} if spec.tables else {}
    rows = {agent: "x" * spec.row_bytes.get(agent, 200) for agent in TABLE_AGENTS}

    def hop(agent: str, source: str, target: str) -> None:
        out = topics[target]
        value = payload[target]
        table = tables.get(agent)
        row = rows.get(agent, "")
        ratio = spec.fanout.get(agent, 1.0)
        owed = [0, 0]  # records read, records written: writes int or int+1 per record so the mean is ``ratio``

        async def body(stream: Any) -> None:
            async for event in stream.events():
                key = event.key
                owed[0] += 1
                copies = int(owed[0] * ratio) - owed[1]
                owed[1] += copies
                for _ in range(copies):
                    await out.send(key=key, value=value)
                if table is not None:
                    table[(key or b"").decode("utf-8", "replace")] = row

        app.agent(topics[source], name=agent)(body)

    for agent, source, target in CHAIN:
        hop(agent, source, target)

    def reader(agent: str, source: str) -> None:
        async def body(stream: Any) -> None:
            async for _ in stream:
                pass

        app.agent(topics[source], name=agent)(body)

    for agent, source in READERS:
        reader(agent, source)
    return app


def main(argv: list[str] | None = None) -> int:
    import faust

    args = argv if argv is not None else sys.argv[1:]
    spec = FloorSpec.load(Path(args[0]))
    app = build_app(spec)
    sys.argv = [sys.argv[0]]  # faust.Worker reads no options of ours
    faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
