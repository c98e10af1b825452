"""Every answer of the gateway, JSON with HEADERS: from a handler (Answer) or, for a request Sanic
must never see, from the connection's protocol (whole())."""

import itertools

from sanic.headers import format_http1_response
from sanic.response import HTTPResponse

# Every answer may carry a token or private settings: no cache (a proxy's, the app's HTTP stack's)
# may keep it, and no browser may guess it is something other than JSON.
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class Answer(HTTPResponse):
    """Every JSON answer of the gateway, with HEADERS. What Sanic's JSONResponse does for each answer
    is done once here instead, together a seventh of a mirrored read's time: HEADERS are encoded at
    import (Sanic would copy them into the answer's header map, then strip CR, LF and NUL from each
    name and value with str.translate, 0.3 µs a string); any other header that is printable, so has
    none of the three, is sent as it is (one that is not still goes through Sanic's stripping); and
    the body is encoded with Sanic's own JSON encoder, without JSONResponse's machinery for bodies
    changed after the fact."""

    __slots__ = ()
    FIXED = tuple((name.lower().encode(), value.encode()) for name, value in HEADERS.items())
    _FIXED_NAMES = {name.lower() for name in HEADERS}

    def __init__(self, body, status: int = 200, headers=None):
        if headers:  # (an error's Allow, say) never a second value of a fixed header: ours is sent
            headers = {k: v for k, v in headers.items() if k.lower() not in self._FIXED_NAMES}
        super().__init__(HTTPResponse._dumps(body), status, headers, "application/json")

    @property
    def processed_headers(self):
        return itertools.chain(self.FIXED, super().processed_headers)

    @staticmethod
    def _sanitize_header_value(value: str) -> str:
        return value if value.isprintable() else HTTPResponse._sanitize_header_value(value)


def whole(status: int, message: str) -> bytes:
    """An {"error": message} answer as bytes on the wire, after which the connection is closed."""
    answer = Answer({"error": message}, status, {"connection": "close"})
    answer.headers["content-length"] = len(answer.body)
    return format_http1_response(status, answer.processed_headers) + answer.body
