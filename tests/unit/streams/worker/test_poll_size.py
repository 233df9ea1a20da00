"""A poll's records never fill an agent's queue, for any partition count (streams/worker/poll_size.py)."""

from __future__ import annotations

import math

import pytest
from mode.utils.queues import FlowControlQueue

from schemas.codec import make_codec
from streams.settings import Settings, WorkerSettings
from streams.worker.app import WorkerApp
from streams.worker.poll_size import STREAM_BUFFER_MAXSIZE, max_poll_records


@pytest.mark.parametrize("partitions", [1, 3, 8, 32, 100])
def test_after_the_threshold_one_poll_per_partition_still_fits_the_queue(partitions: int) -> None:
    threshold = math.floor(STREAM_BUFFER_MAXSIZE / FlowControlQueue.pressure_high_ratio)
    limit = max_poll_records(STREAM_BUFFER_MAXSIZE, partitions)
    assert limit >= 1
    assert threshold + partitions * limit <= STREAM_BUFFER_MAXSIZE


@pytest.mark.parametrize("partitions", [3, 12])
def test_the_worker_polls_within_the_limit_of_its_most_partitioned_topic(partitions: int, tmp_path: object) -> None:
    settings = Settings(worker=WorkerSettings(data_dir=tmp_path, partitions=partitions))
    conf = WorkerApp(settings, "127.0.0.1:9", make_codec(None)).app.conf
    assert conf.stream_buffer_maxsize == STREAM_BUFFER_MAXSIZE
    assert conf.broker_max_poll_records == max_poll_records(STREAM_BUFFER_MAXSIZE, max(3, partitions))
