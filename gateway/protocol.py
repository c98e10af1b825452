"""The connection's protocol: request lines Sanic must never see, and deadlines a slow client cannot
stretch.

Sanic hands a request's target to httptools, which refuses one with a control byte, DEL, or that is
neither "/..." nor a full URL (`GET /users/a\\x1b[31mb`, `GET /\\x7f`, `GET http://a@/x`); Sanic then
fails to build even its error answer, sends nothing and logs a 43-line traceback with the raw bytes.
So the first line of every request is checked here, before Sanic parses it: anything but `METHOD
/visible-ascii HTTP/1.x` gets a 400 (a target longer than MAX_LINE a 414) with a JSON body, and the
connection is closed. The log says so in one escaped line, at most one a second plus a count of the
others: a flood of bad requests must not push the audit lines past journald's rate limit.

Sanic restarts its request timer on every byte it receives, so a client that sends one header byte
every few seconds holds its connection (and a file descriptor) forever, and enough of them leave no
descriptor for anyone else. Here the timer keeps the moment the request's first byte arrived: its
header must be complete HEADER_DEADLINE seconds later, and it must be answered RESPONSE_DEADLINE
seconds later, however its bytes trickle in. A connection that sends nothing is closed after
IDLE_DEADLINE, as before.
"""

import logging
import re

from sanic.http.constants import Stage
from sanic.server.protocols.http_protocol import HttpProtocol

from .answer import whole
from .daemon import CALL_TIMEOUT

HEADER_DEADLINE = 10.0
RESPONSE_DEADLINE = CALL_TIMEOUT + HEADER_DEADLINE  # the body, then the longest daemon call
IDLE_DEADLINE = 30.0
MAX_LINE = 4096  # a request line; the longest the route table makes is far below
# RFC 9112's request-line in origin-form: a token, "/" and visible ASCII, HTTP/1.0 or 1.1.
REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ /[!-~]* HTTP/1\.[01]\r\n")
NOTE_EVERY = 1.0  # seconds between two log lines about refused requests

log = logging.getLogger("spd-gateway")


def configure(app) -> None:
    """Sanic's timeouts, which DeadlineProtocol makes absolute."""
    app.config.REQUEST_TIMEOUT = HEADER_DEADLINE
    app.config.RESPONSE_TIMEOUT = RESPONSE_DEADLINE
    app.config.KEEP_ALIVE_TIMEOUT = IDLE_DEADLINE


class Refusals:
    """The log of refused request lines: the first at once, then one line per NOTE_EVERY seconds at
    most, with the count of those not shown."""

    def __init__(self):
        self.last = float("-inf")
        self.unshown = 0
        self.summary = None  # the pending report of the unshown

    def note(self, loop, line: bytes) -> None:
        now = loop.time()
        if now - self.last >= NOTE_EVERY:
            self.last = now
            log.warning("refused a bad request line: %s", ascii(line[:200]))
        else:
            self.unshown += 1
            if self.summary is None:
                self.summary = loop.call_at(self.last + NOTE_EVERY, self.report, loop)

    def report(self, loop) -> None:
        self.summary = None
        self.last = loop.time()
        log.warning("refused %d more bad request lines, not shown one by one", self.unshown)
        self.unshown = 0


refusals = Refusals()


class DeadlineProtocol(HttpProtocol):
    __slots__ = ("line_unchecked",)

    def connection_made(self, transport):
        self.line_unchecked = False
        HttpProtocol.connection_made(self, transport)

    def data_received(self, data: bytes):
        # Sanic's timer (_time) is reset here for every chunk. Within a request (any stage but
        # IDLE) put it back, so that it counts from the request's first byte.
        http = self.http
        if http is None or http.stage is Stage.IDLE:
            self.line_unchecked = self.line_unchecked or not self.recv_buffer  # a request begins
            HttpProtocol.data_received(self, data)
        else:
            started = self._time
            HttpProtocol.data_received(self, data)
            self._time = started
        if self.line_unchecked:
            self.check_line()

    def check_line(self) -> None:
        """The request line, once it is complete (or too long to be one), before Sanic parses it."""
        buffer = self.recv_buffer
        end = buffer.find(b"\n", 0, MAX_LINE)
        if end < 0 and len(buffer) < MAX_LINE:
            return  # more is coming
        self.line_unchecked = False
        if end >= 0 and REQUEST_LINE.fullmatch(buffer, 0, end + 1):
            return
        refusals.note(self.loop, bytes(buffer[:end if end >= 0 else MAX_LINE]).removesuffix(b"\r"))
        status, message = (400, "Bad request line") if end >= 0 else (414, "Request line too long")
        self.transport.write(whole(status, message))
        self.transport.close()
        buffer.clear()  # for Sanic, nothing came
