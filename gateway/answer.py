"""Every answer of the gateway, JSON with HEADERS: from a handler (Answer) or, for a request Sanic
must never see, from the connection's protocol (whole())."""

import itertools
import json

from sanic.headers import format_http1_response
from sanic.response import HTTPResponse

# Every answer may carry a token or private settings: no cache (a proxy's, the app's HTTP stack's)
# may keep it, and no browser may guess it is something other than JSON.
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # as compact as Sanic's own
STRIP = str.maketrans("", "", "\r\n\x00")  # what may never reach the wire in a header: no splitting


class Answer(HTTPResponse):
    """Every JSON answer of the gateway, with HEADERS. What Sanic's JSONResponse does for each answer
    is done once here instead, together a seventh of a mirrored read's time: HEADERS and the content
    type are encoded at import (Sanic would copy them into the answer's header map, then strip CR,
    LF and NUL from each name and value with str.translate, 0.3 µs a string); any other header that
    is printable, so has none of the three, is sent as it is, one that is not without them (on every
    Sanic release: 24.12.0 strips nothing); and the body is encoded once, without JSONResponse's
    machinery for bodies changed after the fact."""

    __slots__ = ()
    FIXED = tuple((name.lower().encode(), value.encode())
                  for name, value in {**HEADERS, "Content-Type": "application/json"}.items())
    FIXED_NAMES = {name.decode() for name, _ in FIXED}

    def __init__(self, body, status: int = 200, headers=None):
        if headers:  # (an error's Allow, say) never a second value of a fixed header: ours is sent
            headers = {k: v for k, v in headers.items() if k.lower() not in self.FIXED_NAMES}
        super().__init__(ENCODE(body), status, headers, "application/json")

    @property
    def processed_headers(self):
        """The header lines Sanic sends (its public hook): FIXED, then the header map, which Sanic
        fills with content-length and connection just before."""
        return itertools.chain(self.FIXED, ((printable(name).encode("ascii"),
                                             printable(f"{value}").encode(errors="surrogateescape"))
                                            for name, value in self.headers.items()))


def printable(text: str) -> str:
    return text if text.isprintable() else text.translate(STRIP)


def whole(status: int, message: str) -> bytes:
    """An {"error": message} answer as bytes on the wire, after which the connection is closed."""
    answer = Answer({"error": message}, status, {"connection": "close"})
    answer.headers["content-length"] = len(answer.body)
    return format_http1_response(status, answer.processed_headers) + answer.body
