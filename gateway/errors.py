"""D-Bus error -> HTTP status, in one place (the kinds and statuses live in spd.dbus.names)."""

from spd.dbus.names import DBUS_ACCESS_DENIED, DBUS_UNAVAILABLE, ERROR_PREFIX, ERRORS


UNREACHABLE = "The SelfPrivacy daemon is not reachable"  # the 503 of every route while it is


class HTTPError(Exception):
    """An answer with a JSON body {"error": message}."""

    def __init__(self, status: int, message: str, kind: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind  # the daemon's error kind, for the audit entry (spd/audit.py)


def unreachable() -> HTTPError:
    """The answer when the daemon (or the bus) cannot be reached; a new one each time it is raised."""
    return HTTPError(503, UNREACHABLE)


def from_dbus(name: str, text: str) -> HTTPError:
    if name.startswith(ERROR_PREFIX) and name[len(ERROR_PREFIX):] in ERRORS:
        return HTTPError(ERRORS[name[len(ERROR_PREFIX):]], text, name[len(ERROR_PREFIX):])
    if name in DBUS_UNAVAILABLE:
        return unreachable()
    if name == DBUS_ACCESS_DENIED:
        return HTTPError(403, "The SelfPrivacy daemon refused this request", "AccessDenied")
    if name in ("org.freedesktop.DBus.Error.InvalidArgs", "org.freedesktop.DBus.Error.InvalidSignature"):
        return HTTPError(400, "Invalid arguments")
    # Anything else is our bug or the daemon's: say nothing about its insides.
    return HTTPError(500, "Internal error")
