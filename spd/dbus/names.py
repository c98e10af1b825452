"""Every bus name, object path, interface name and error name, in one place.

The gateway imports this module (and nothing else of spd) to know what to call and how each
error kind maps to an HTTP status.
"""

BUS_NAME = "org.selfprivacy.Daemon"
PATH = "/org/selfprivacy/Daemon"

TOKENS = "org.selfprivacy.Tokens1"
USERS = "org.selfprivacy.Users1"
SSH = "org.selfprivacy.SSH1"
SERVICES = "org.selfprivacy.Services1"
BACKUPS = "org.selfprivacy.Backups1"
SYSTEM = "org.selfprivacy.System1"
PROPERTIES = "org.freedesktop.DBus.Properties"  # Get/Set/GetAll of the interfaces above

ERROR_PREFIX = "org.selfprivacy.Error."

# Error kind -> HTTP status. One row per kind; callers branch on the name, never on the text.
ERRORS = {
    "InvalidArgument": 400,  # the request itself is wrong
    "NotReady": 400,  # valid request, but the state does not allow it yet (e.g. no backup key)
    "AccessDenied": 403,
    "NotFound": 404,
    "AlreadyExists": 409,
    "Reserved": 409,  # a name the system keeps for itself
    "Busy": 409,  # another long operation is running
    "Failed": 500,
    "Unavailable": 503,  # systemd, logind or another backend cannot be reached
}

# Errors of the bus itself that the gateway must understand.
DBUS_UNAVAILABLE = frozenset(
    {
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
        "org.freedesktop.DBus.Error.NoReply",
        "org.freedesktop.DBus.Error.Disconnected",
        "org.freedesktop.DBus.Error.Spawn.ChildExited",
        "org.freedesktop.DBus.Error.Spawn.Failed",
        "org.freedesktop.DBus.Error.TimedOut",
    }
)
DBUS_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"


def error_name(kind: str) -> str:
    return ERROR_PREFIX + kind
