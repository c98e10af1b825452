"""The bus contract: everything the daemon and its clients share, in one place.

Bus name, object path, interface names, the bus's errors (ours: spd/errors.py), the catalogs a client
needs to call the interfaces (services, status keys), how a bus address is spelled (--bus / SPD_BUS),
and the idle-exit helpers of the two activated programs. The gateway (and spdctl) import this module
as their contract with spd; besides it, the gateway imports only what both processes share with
systemd and the tests: spd.journal, spd.watchdog and spd.stall (and spd.compat, through message_bus).
"""

import asyncio
import time
from typing import Callable

from dbus_fast import BusType
from dbus_fast.aio import MessageBus

from ..compat import PatientBus

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

# Services1: service -> the name the app shows (Enabled's keys, Enable/Disable's argument).
SERVICE_NAMES = {"bitwarden": "Bitwarden", "gitea": "Gitea", "nextcloud": "Nextcloud",
                 "ocserv": "Ocserv", "pleroma": "Pleroma"}
# Services1.Status's keys (GET /services/status), in the app's order.
STATUS_KEYS = ("imap", "smtp", "http", "bitwarden", "gitea", "nextcloud", "ocserv", "pleroma")

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


def message_bus(address: str) -> MessageBus:
    """A connection to the bus named by --bus / SPD_BUS: system, session, or a D-Bus address."""
    if address == "system":
        return PatientBus(bus_type=BusType.SYSTEM)
    if address == "session":
        return PatientBus(bus_type=BusType.SESSION)
    return PatientBus(bus_address=address)


# --- idle exit: a process started on demand (D-Bus or socket activation) may leave when nothing
# has happened for a while, so an idle server spends no memory on it.

class Activity:
    """Work in progress, and when the last piece ended."""

    def __init__(self):
        self.running = 0
        self.last = time.monotonic()

    def begin(self) -> None:
        self.running += 1

    def end(self) -> None:
        self.running -= 1
        self.last = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self.running else time.monotonic() - self.last


async def until_idle(timeout: float, idle_for: Callable[[], float]) -> None:
    """Return once idle_for() has reached `timeout` seconds."""
    while True:
        left = timeout - idle_for()
        if left <= 0:
            return
        await asyncio.sleep(max(left, min(timeout, 1.0) / 4))
