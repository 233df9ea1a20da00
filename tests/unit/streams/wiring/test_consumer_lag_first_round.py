"""The lag exporter leaves the broker alone until its first round is due.

A process starting on a fresh broker must not ask for its group's offsets at once: the broker answers
NOT_COORDINATOR while the group's coordinator is still loading, so the first round would fail and log a warning
at every fresh start. (Asked through the admin client, that answer used to crash the whole process with SIGSEGV,
librdkafka issue #5040; the exporter now asks with a consumer of the group, see
``tests/integration/flow/test_consumer_lag_coordinator_moved.py``.)
"""

from __future__ import annotations

import socket

from streams.wiring.consumer_lag import ConsumerLag


def test_nothing_is_asked_of_the_broker_before_the_first_round_is_due() -> None:
    with socket.socket() as broker:  # a loopback "broker" that only notes who connects
        broker.bind(("127.0.0.1", 0))
        broker.listen(8)
        broker.setblocking(False)
        lag = ConsumerLag({"bootstrap.servers": f"127.0.0.1:{broker.getsockname()[1]}"}, ["g"], every_s=3600)
        thread = lag.start()
        lag.stop()
        thread.join(60)
        assert not thread.is_alive()
        try:
            connection, _ = broker.accept()
        except BlockingIOError:
            connection = None
        if connection is not None:
            connection.close()
        assert connection is None, "the lag exporter connected to the broker at start-up"
