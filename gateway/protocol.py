"""The connection's protocol: request lines Sanic must never see, and deadlines a slow client cannot
stretch.

Sanic hands a request's target to httptools, which refuses one with a control byte, DEL, or that is
neither "/..." nor a full URL (`GET /users/a\\x1b[31mb`, `GET /\\x7f`, `GET http://a@/x`); Sanic then
fails to build even its error answer, sends nothing and logs a 43-line traceback with the raw bytes.
So the first line of every request is checked here, before Sanic parses it: anything but `METHOD
/visible-ascii HTTP/1.x` gets a 400 (a target longer than MAX_LINE a 414) with a JSON body, and the
connection is closed. The log says so in one escaped line, at most one a second plus a count of the
others: a flood of bad requests must not push the audit lines past journald's rate limit.

Sanic restarts its timers on every byte it receives, so a client that sends one header byte every
few seconds would hold its connection (and a file descriptor) forever, and enough of them leave no
descriptor for anyone else. Here the protocol keeps its own clock from the moment a request's first
byte arrived: its header must be complete HEADER_DEADLINE seconds later (else 408) and its answer
begun RESPONSE_DEADLINE seconds later (else 503), however its bytes trickle in; an answer the client
stops reading (the transport pauses writing) is cut when it has not read again RESPONSE_DEADLINE
later. A connection that sends nothing is closed after IDLE_DEADLINE (Sanic's own keep-alive timer).
"""

import logging
import re

from sanic.exceptions import BadRequest
from sanic.http.constants import Stage
from sanic.log import error_logger
from sanic.server.protocols.http_protocol import HttpProtocol

from spd.rest.routes import CALL_TIMEOUT
from spd.runtime.journal import Throttle

from .answer import whole

HEADER_DEADLINE = 10.0
RESPONSE_DEADLINE = CALL_TIMEOUT + HEADER_DEADLINE  # the body, then the longest daemon call
IDLE_DEADLINE = 30.0
MAX_LINE = 4096  # a request line; the longest the route table makes is far below
# RFC 9112's request-line in origin-form: a token, "/" and visible ASCII, HTTP/1.0 or 1.1.
REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ /[!-~]* HTTP/1\.[01]\r\n")
NOTE_EVERY = 1.0  # seconds between two log lines about refused requests

log = logging.getLogger("spd-gateway")


def configure(app) -> None:
    """Sanic's own timeouts, which restart at every byte: DeadlineProtocol adds absolute ones."""
    app.config.REQUEST_TIMEOUT = HEADER_DEADLINE
    app.config.RESPONSE_TIMEOUT = RESPONSE_DEADLINE
    app.config.KEEP_ALIVE_TIMEOUT = IDLE_DEADLINE
    error_logger.addFilter(unanswerable)


# The first refused request line at once, then one line per NOTE_EVERY seconds at most, with the
# count of those not shown.
refusals = Throttle(log, lambda key: "bad request lines", burst=1, every=NOTE_EVERY)


def refused(line: bytes | str) -> None:
    if refusals.allow():
        log.warning("refused a bad request line: %s", ascii(line[:200]))


def unanswerable(record: logging.LogRecord) -> bool:
    """A filter for Sanic's error log. A request pipelined behind another (sent before that one was
    answered) reaches Sanic unchecked; with a target httptools refuses, Sanic cannot answer and logs
    a traceback with a BadRequest: noted as a refusal instead."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, BadRequest):
        refused(str(error))
        return False
    return True


class DeadlineProtocol(HttpProtocol):
    """Sanic's HTTP/1.1 protocol, seen through the asyncio callbacks it has: data_received sees a
    request begin (and checks its line), a timer on the protocol's own clock cuts it at its
    deadlines, and pause_writing/resume_writing see a client that stopped reading."""

    __slots__ = ("line_unchecked", "began", "deadline", "stalled")

    def connection_made(self, transport):
        self.line_unchecked = False
        self.began = 0.0  # when the current request's first byte came (the loop's clock)
        self.deadline = self.stalled = None  # the pending timers
        HttpProtocol.connection_made(self, transport)

    def connection_lost(self, exc):
        for timer in (self.deadline, self.stalled):
            if timer is not None:
                timer.cancel()
        self.deadline = self.stalled = None
        HttpProtocol.connection_lost(self, exc)

    def data_received(self, data: bytes):
        http = self.http
        if (http is None or http.stage is Stage.IDLE) and not self.recv_buffer:  # a request begins
            self.began = self.loop.time()
            self.line_unchecked = True
            if self.deadline is None:  # else the pending one looks at this request when it fires
                self.deadline = self.loop.call_at(self.began + HEADER_DEADLINE, self.check_deadline)
        HttpProtocol.data_received(self, data)
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
        refused(bytes(buffer[:end if end >= 0 else MAX_LINE]).removesuffix(b"\r"))
        buffer.clear()  # for Sanic, nothing came
        self.end(*((400, "Bad request line") if end >= 0 else (414, "Request line too long")))

    def check_deadline(self) -> None:
        """A request not answered by its deadline is answered here, and its connection closed."""
        self.deadline = None
        http, transport = self.http, self.transport
        if http is None or transport is None or transport.is_closing():
            return
        if http.stage is Stage.REQUEST:  # its header is still coming
            limit, status, message = HEADER_DEADLINE, 408, "Request Timeout"
        elif http.stage is Stage.HANDLER:  # nothing of its answer is sent yet
            limit, status, message = RESPONSE_DEADLINE, 503, "Response Timeout"
        else:  # answered (the next request starts the clock again) or being sent (see pause_writing)
            return
        if self.loop.time() < self.began + limit:
            self.deadline = self.loop.call_at(self.began + limit, self.check_deadline)
        else:
            self.end(status, message)

    def end(self, status: int, message: str) -> None:
        self.transport.write(whole(status, message))
        self.transport.close()

    def pause_writing(self):
        # The client reads nothing while an answer (a stream, say) waits to be sent: cut after
        # RESPONSE_DEADLINE unless it reads again.
        HttpProtocol.pause_writing(self)
        if self.stalled is None:
            self.stalled = self.loop.call_later(RESPONSE_DEADLINE, self.transport.abort)

    def resume_writing(self):
        HttpProtocol.resume_writing(self)
        if self.stalled is not None:
            self.stalled.cancel()
            self.stalled = None
