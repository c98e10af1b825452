"""Deadlines that a slow client cannot stretch.

Sanic restarts its request timer on every byte it receives, so a client that sends one header byte
every few seconds holds its connection (and a file descriptor) forever, and enough of them leave no
descriptor for anyone else. Here the timer keeps the moment the request's first byte arrived: its
header must be complete HEADER_DEADLINE seconds later, and it must be answered RESPONSE_DEADLINE
seconds later, however its bytes trickle in. A connection that sends nothing is closed after
IDLE_DEADLINE, as before.
"""

from sanic.http.constants import Stage
from sanic.server.protocols.http_protocol import HttpProtocol

from .daemon import CALL_TIMEOUT

HEADER_DEADLINE = 10.0
RESPONSE_DEADLINE = CALL_TIMEOUT + HEADER_DEADLINE  # the body, then the longest daemon call
IDLE_DEADLINE = 30.0


def configure(app) -> None:
    """Sanic's timeouts, which DeadlineProtocol makes absolute."""
    app.config.REQUEST_TIMEOUT = HEADER_DEADLINE
    app.config.RESPONSE_TIMEOUT = RESPONSE_DEADLINE
    app.config.KEEP_ALIVE_TIMEOUT = IDLE_DEADLINE


class DeadlineProtocol(HttpProtocol):
    __slots__ = ()

    def data_received(self, data: bytes):
        # Sanic's timer (_time) is reset here for every chunk. Within a request (any stage but
        # IDLE) put it back, so that it counts from the request's first byte.
        http = self.http
        if http is None or http.stage is Stage.IDLE:
            return HttpProtocol.data_received(self, data)
        started = self._time
        HttpProtocol.data_received(self, data)
        self._time = started
