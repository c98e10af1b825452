"""D-Bus error -> HTTP status, in one place: the daemon's kinds by their rows in spd/errors.py, the
bus's own errors here."""

from ..contract import DBUS_ACCESS_DENIED, DBUS_INVALID_ARGS, DBUS_UNAVAILABLE
from ..errors import BY_NAME


UNREACHABLE = "The SelfPrivacy daemon is not reachable"  # the 503 of every route while it is


class HTTPError(Exception):
    """An answer with a JSON body {"error": message}."""

    def __init__(self, status: int, message: str, kind: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind  # the daemon's error kind, for the audit entry (spd/runtime/audit.py)


def unreachable() -> HTTPError:
    """The answer when the daemon (or the bus) cannot be reached; a new one each time it is raised."""
    return HTTPError(503, UNREACHABLE)


def from_dbus(name: str, text: str, statuses: dict[str, int] | None = None) -> HTTPError:
    """The answer to a D-Bus error; `statuses` (kind -> status) is what a call means otherwise by a
    kind, e.g. AUTHENTICATE."""
    if name in BY_NAME:
        kind = BY_NAME[name]
        return HTTPError((statuses or {}).get(kind.cls.kind, kind.status), text, kind.cls.kind)
    if name in DBUS_UNAVAILABLE:
        return unreachable()
    if name == DBUS_ACCESS_DENIED:
        return HTTPError(403, "The SelfPrivacy daemon refused this request", "AccessDenied")
    if name in DBUS_INVALID_ARGS:
        return HTTPError(400, "Invalid arguments")
    # Anything else is our bug or the daemon's: say nothing about its insides.
    return HTTPError(500, "Internal error")


# Tokens1.Authenticate's NotFound is a token that is not (or no longer) valid: the credentials are
# wrong, 401 (the daemon's text is "Invalid token", as the app expects).
AUTHENTICATE = {"NotFound": 401}
