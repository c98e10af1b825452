"""The bus contract: the names the daemon and its clients (the gateway, spdctl, busctl users) share.

Names only, no imports (firewalld's config/dbus.py): bus name, object path, interface names, the bus
driver's names and errors, the catalogues a client needs to call the interfaces, and the match rules
for the daemon's signals. The daemon's own error names are their table, spd/errors.py (dependency-free
too). Importing this module loads nothing else.
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
DBUS = "org.freedesktop.DBus"  # the bus driver (AddMatch, NameOwnerChanged, credentials)
DBUS_PATH = "/org/freedesktop/DBus"

# Services1: service -> the name the app shows (Enabled's keys, Enable/Disable's argument).
SERVICE_NAMES = {"bitwarden": "Bitwarden", "gitea": "Gitea", "nextcloud": "Nextcloud",
                 "ocserv": "Ocserv", "pleroma": "Pleroma"}
# Services1.Status's keys (GET /services/status), in the app's order.
STATUS_KEYS = ("imap", "smtp", "http", "bitwarden", "gitea", "nextcloud", "ocserv", "pleroma")

# Errors of the bus itself that a client must understand.
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
DBUS_INVALID_ARGS = frozenset({"org.freedesktop.DBus.Error.InvalidArgs",
                               "org.freedesktop.DBus.Error.InvalidSignature"})


def match_rule(**keys: str) -> str:
    """A match rule for signals (D-Bus specification, "Match Rules"): type='signal' and key='value'."""
    return ",".join(["type='signal'"] + [f"{key}='{value}'" for key, value in keys.items()])


def owner_changed(name: str) -> str:
    """The bus driver's NameOwnerChanged for `name` (only the driver can send it: sender= says so)."""
    return match_rule(sender=DBUS, path=DBUS_PATH, interface=DBUS, member="NameOwnerChanged", arg0=name)


# The daemon's signals: its properties' changes, and Tokens1.Changed (a cached token may be stale).
PROPERTIES_CHANGED = match_rule(sender=BUS_NAME, path=PATH, interface=PROPERTIES, member="PropertiesChanged")
TOKENS_CHANGED = match_rule(sender=BUS_NAME, path=PATH, interface=TOKENS, member="Changed")
DAEMON_OWNER_CHANGED = owner_changed(BUS_NAME)
