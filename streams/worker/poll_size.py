"""How many records one poll may hand to the agents: few enough that no agent's queue ever fills.

Faust delivers a poll's records one by one, and when the queue of an agent reading a record's topic is
full it waits for that agent before it delivers anything else (``faust.transport.conductor``: the record
is ``put`` on the full queue and the consumer awaits it). With no limit (Faust's default) one poll handed
over everything the fetcher had buffered: up to ``consumer_max_fetch_size`` per partition (11 MiB here,
thousands of alerts). After a 5-minute overload (``benchmarks/load_bench.py``, 4,000 mails/min) one such
poll of ``normalized`` filled dedup's queue, and every other agent got no record for minutes while dedup
worked through it at its own pace: no incidents, lag rising on correlate-input and audit-input, SIGTERM
not honoured before the kill.

Faust stops fetching a partition once a record of it arrives at a queue holding ``maxsize / 1.25`` records
(``FlowControlQueue.pressure_high_size``), but the poll under way is still delivered, and each partition of
the topic is stopped only by its own next record. So after the threshold a queue takes at most one poll per
partition of its topic. Polls of ``(maxsize - threshold) // partitions`` records never fill it.

Not covered: a topic read by two agents shares one "pressure dropped" callback per partition, so the fast
agent's queue draining resumes the partition while the slow one's is still high (Faust's design); then the
slow agent's queue may fill again, and the wait is bounded by one poll of these records.

Test: tests/integration/flow/test_slow_agent_starves_none.py.
"""

from __future__ import annotations

import math

from mode.utils.queues import FlowControlQueue

#: Faust's default for the agents' queues (``stream_buffer_maxsize``), set explicitly so the limit follows it.
STREAM_BUFFER_MAXSIZE = 4096


def max_poll_records(buffer_maxsize: int, partitions: int) -> int:
    """Records per poll so that a queue of ``buffer_maxsize`` fed by ``partitions`` partitions never fills."""
    threshold = math.floor(buffer_maxsize / FlowControlQueue.pressure_high_ratio)
    return max(1, (buffer_maxsize - threshold) // max(1, partitions))
