"""Where the worker's CPU goes: py-spy's collapsed stacks (``--format raw``) summed into named buckets.

Each sample goes to the first bucket (in the order of :data:`BUCKETS`) one of whose markers appears
anywhere in its stack, so a pydantic validation under the codec counts as Avro decode/encode, and a
send under the audit stage counts as the audit. py-spy leaves idle samples out unless ``--idle``.

    python -m benchmarks.profile_summary build/profile/worker.txt
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

#: (bucket, markers in a frame's "function (file:line)"); the first bucket that matches wins.
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("event loop waiting in select (py-spy counts part of it as active)", ("EpollSelector.select",)),
    ("cross-thread wake-ups (Faust's consumer thread → main loop, call_soon_threadsafe)", ("_write_to_self",)),
    ("Avro decode/encode + record models (schemas/codec, fastavro, pydantic)",
     ("schemas/codec", "fastavro", "schemas/avro")),
    ("mail parsing (MIME, HTML table, templates)", ("producers/mail", "producers/templates", "selectolax", "lxml",
                                                    "/email/")),
    ("audit chain (hash, canonical JSON)", ("stages/audit", "executors/audit")),
    ("policy: triage, dedup, correlation, decide, signatures", ("/policies/", "celpy")),
    ("evidence runner (off in the bench: no backends)", ("executors/evidence",)),
    ("Faust table writes (changelog sends)", ("faust/tables",)),
    ("producer: send, batches, produce requests (aiokafka producer)", ("aiokafka/producer",
                                                                       "faust/transport/producer", "send_soon")),
    ("consumer: fetch requests, record batches (aiokafka consumer)", ("aiokafka/consumer", "aiokafka/record",
                                                                     "aiokafka/protocol", "kafka/record")),
    ("our stages, agents, guard, sends (rest of streams/)", ("streams/stages", "streams/notify", "worker/agents",
                                                             "worker/guard", "worker/app", "worker/edge",
                                                             "worker/failures")),
    ("Faust streams, acks, commits, agents", ("faust/",)),
    ("metrics and logging", ("prometheus_client", "/logging/")),
    ("asyncio loop and callbacks", ("asyncio/",)),
)
OTHER = "other"


def bucket_of(stack: str) -> str:
    for name, markers in BUCKETS:
        if any(marker in stack for marker in markers):
            return name
    return OTHER


def summarize(lines: list[str]) -> dict[str, object]:
    """Samples per bucket, as counts and percentages of all samples, and the top leaf functions."""
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        buckets[bucket_of(stack)] += count
        leaves[stack.rsplit(";", 1)[-1]] += count
    return {
        "samples": total,
        "buckets_percent": {name: round(100 * n / total, 1) for name, n in buckets.most_common()} if total else {},
        "top_leaf_functions_percent": {name: round(100 * n / total, 1) for name, n in leaves.most_common(15)}
        if total else {},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("collapsed", type=Path, help="py-spy record --format raw output")
    args = parser.parse_args(argv)
    print(json.dumps(summarize(args.collapsed.read_text(errors="replace").splitlines()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
