"""A stopped broker's port is free again at once, though its connections linger in TIME_WAIT."""

from __future__ import annotations

import socket

from streams.broker.base import port_is_free


def test_a_port_in_use_is_not_free_and_one_left_in_time_wait_is() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM's server sockets (the broker's)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    assert not port_is_free(port)  # a broker listens there
    served.close()  # the broker's side closes first, so its end of the connection stays in TIME_WAIT
    client.close()
    listener.close()
    assert port_is_free(port)  # the broker restarted on the same port can bind (the JVM uses SO_REUSEADDR)
