"""python-dbusmock's systemd and logind templates as real processes on a test bus, and helpers to
set up their units and read the calls they received."""

import time

import pytest

from stack import PYTHON, Bus, Process, busctl, env_for_children

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
LOGIND = "org.freedesktop.login1"
LOGIND_PATH = "/org/freedesktop/login1"
MOCK = "org.freedesktop.DBus.Mock"
UNIT = "org.freedesktop.systemd1.Unit"

# The units behind GET /services/status.
STATUS_UNITS = ("dovecot2.service", "postfix.service", "nginx.service", "vaultwarden.service",
                "bitwarden_rs.service", "gitea.service", "phpfpm-nextcloud.service", "ocserv.service",
                "pleroma.service")

# A realistic server for the dev stack, the fuzz tests and bench/run: the units behind
# GET /services/status (some running) and the sp-nixos-* units the system routes start.
DEMO_UNITS = {"dovecot2.service": "active", "postfix.service": "active", "nginx.service": "active",
              "vaultwarden.service": "active", "gitea.service": "inactive",
              "phpfpm-nextcloud.service": "active", "ocserv.service": "failed", "pleroma.service": "inactive",
              "sp-nixos-rebuild.service": "inactive", "sp-nixos-upgrade.service": "inactive",
              "sp-nixos-rollback.service": "inactive"}


class Mock:
    """`python -m dbusmock --system --template NAME` on `bus`, ready once it owns its name."""

    def __init__(self, bus: Bus, template: str, workdir, name: str, path: str):
        self.bus, self.name, self.path = bus, name, path
        self.process = Process(f"dbusmock-{template}",
                               [PYTHON, "-m", "dbusmock", "--system", "--template", template],
                               workdir / f"dbusmock-{template}.log",
                               env=env_for_children(DBUS_SYSTEM_BUS_ADDRESS=bus.address))
        deadline = time.monotonic() + 20
        while not self.has_owner():
            if not self.process.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"dbusmock {template} did not start:\n{self.process.log()}")
            time.sleep(0.05)

    def has_owner(self) -> bool:
        out = busctl(self.bus, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                     "org.freedesktop.DBus", "NameHasOwner", "s", self.name)
        return out["data"][0]

    def call(self, interface: str, member: str, signature: str = "", *args, path: str | None = None):
        out = busctl(self.bus, "call", self.name, path or self.path, interface, member,
                     *([signature, *args] if signature else []))
        return out["data"] if out else []

    def method_calls(self, member: str) -> list:
        """The arguments of every call of `member` the mock received, oldest first."""
        (calls,) = self.call(MOCK, "GetMethodCalls", "s", member)
        return [args for _, args in calls]

    def clear_calls(self) -> None:
        self.call(MOCK, "ClearCalls")

    def stop(self) -> int:
        return self.process.stop()


class SystemdMock(Mock):
    def __init__(self, bus: Bus, workdir):
        super().__init__(bus, "systemd", workdir, SYSTEMD, SYSTEMD_PATH)

    def add_unit(self, name: str, active_state: str = "inactive") -> None:
        self.call(MOCK, "AddMockUnit", "s", name)
        self.set_state(name, active_state)

    def unit_path(self, name: str) -> str:
        (path,) = self.call("org.freedesktop.systemd1.Manager", "GetUnit", "s", name)
        return path

    def set_state(self, name: str, active_state: str) -> None:
        """Like systemd: the unit's ActiveState changes and PropertiesChanged is sent."""
        self.call(MOCK, "UpdateProperties", "sa{sv}", UNIT, 1, "ActiveState", "s", active_state,
                  path=self.unit_path(name))

    def active_state(self, name: str) -> str:
        out = busctl(self.bus, "get-property", SYSTEMD, self.unit_path(name), UNIT, "ActiveState")
        return out["data"]


def demo_systemd(bus: Bus, workdir) -> "SystemdMock":
    systemd = SystemdMock(bus, workdir)
    for unit, state in DEMO_UNITS.items():
        systemd.add_unit(unit, state)
    return systemd


class LogindMock(Mock):
    def __init__(self, bus: Bus, workdir):
        super().__init__(bus, "logind", workdir, LOGIND, LOGIND_PATH)


@pytest.fixture
def systemd(bus, tmp_path):
    mock = SystemdMock(bus, tmp_path)
    yield mock
    mock.stop()


@pytest.fixture
def logind(bus, tmp_path):
    mock = LogindMock(bus, tmp_path)
    yield mock
    mock.stop()
