"""D-Bus error -> HTTP status, in one place (the kinds and statuses live in spd.dbus.names)."""

from spd.dbus.names import DBUS_ACCESS_DENIED, DBUS_UNAVAILABLE, ERROR_PREFIX, ERRORS


UNREACHABLE = "The SelfPrivacy daemon is not reachable"  # the 503 of every route while it is


class HTTPError(Exception):
    """An answer with a JSON body {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def from_dbus(name: str, text: str) -> HTTPError:
    if name.startswith(ERROR_PREFIX) and name[len(ERROR_PREFIX):] in ERRORS:
        return HTTPError(ERRORS[name[len(ERROR_PREFIX):]], text)
    if name in DBUS_UNAVAILABLE:
        return HTTPError(503, UNREACHABLE)
    if name == DBUS_ACCESS_DENIED:
        return HTTPError(403, "The SelfPrivacy daemon refused this request")
    if name in ("org.freedesktop.DBus.Error.InvalidArgs", "org.freedesktop.DBus.Error.InvalidSignature"):
        return HTTPError(400, "Invalid arguments")
    # Anything else is our bug or the daemon's: say nothing about its insides.
    return HTTPError(500, "Internal error")
