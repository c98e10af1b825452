"""python-dbusmock stand-ins for systemd and logind on a private bus, as real processes (for the
fuzz tests and bench/run, which need every route to have its backends)."""

import time
from pathlib import Path

from stack import PYTHON, Bus, Process, busctl, env_for_children

SYSTEMD = "org.freedesktop.systemd1"
LOGIND = "org.freedesktop.login1"
MOCK = "org.freedesktop.DBus.Mock"

# Every unit REST API 1.2 reads or starts (spec: GET /services/status, /system/configuration/*).
UNITS = (
    "dovecot2.service", "postfix.service", "nginx.service", "vaultwarden.service", "gitea.service",
    "phpfpm-nextcloud.service", "ocserv.service", "pleroma.service",
    "sp-nixos-rebuild.service", "sp-nixos-upgrade.service", "sp-nixos-rollback.service",
)


class Mock:
    """`python -m dbusmock --system --template NAME` on the given bus, ready once it owns its name."""

    def __init__(self, bus: Bus, workdir: Path, template: str, name: str, path: str):
        self.bus, self.name, self.path = bus, name, path
        self.process = Process(f"dbusmock {template}",
                               [PYTHON, "-m", "dbusmock", "--system", "--template", template],
                               workdir / f"dbusmock-{template}.log",
                               env=env_for_children(DBUS_SYSTEM_BUS_ADDRESS=bus.address))
        deadline = time.monotonic() + 20
        while not _has_owner(bus, name):
            if not self.process.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{template} mock did not start:\n{self.process.log()}")
            time.sleep(0.05)

    def call(self, member: str, signature: str = "", *args):
        out = busctl(self.bus, "call", self.name, self.path, MOCK, member,
                     *([signature, *args] if signature else []))
        return out["data"] if out else []

    def stop(self):
        self.process.stop()


def systemd(bus: Bus, workdir: Path, units=UNITS, active=()) -> Mock:
    """The systemd mock with these units loaded (inactive, except those in `active`)."""
    mock = Mock(bus, workdir, "systemd", SYSTEMD, "/org/freedesktop/systemd1")
    for unit in units:
        mock.call("AddMockUnit", "s", unit)
    for unit in active:
        busctl(bus, "call", SYSTEMD, "/org/freedesktop/systemd1", f"{SYSTEMD}.Manager", "StartUnit", "ss",
               unit, "replace")
    return mock


def logind(bus: Bus, workdir: Path) -> Mock:
    return Mock(bus, workdir, "logind", LOGIND, "/org/freedesktop/login1")


def _has_owner(bus: Bus, name: str) -> bool:
    out = busctl(bus, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                 "NameHasOwner", "s", name)
    return out["data"] == [True]
