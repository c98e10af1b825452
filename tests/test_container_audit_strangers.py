"""The audit trail against a local stranger, on a booted
systemd with the real journald and polkitd (tests/container.py; dbus-daemon only, journald is the
same for both brokers). Both failed on 68d095d (found by a red-team pass):

1. Any local user writes entries that `spdctl log` shows as root's: spdctl asks journalctl for the
   two MESSAGE_IDs alone, and any process may send an entry with those fields to the journal's
   socket. Only the trusted fields (_UID, _SYSTEMD_UNIT: set by journald) say who wrote it.
2. `nobody` pushes other callers' refusals out of the trail: every refused D-Bus call of a change
   writes an entry (PRIORITY 4) under spd.service, polkit or the in-flight cap refusing it at once,
   so a flood of them fills journald's per-unit (per-priority) rate limit, and spd's non-blocking
   journal socket drops what does not fit: another user's refused change right after leaves none.
"""

import json

import pytest

from container import PREFIX, booted
from spd.runtime import audit
from spd.contract import BUS_NAME, PATH, USERS
from strangers_helpers import NAMES

SPDCTL = f"{PREFIX}/bin/spdctl"
PYTHON = f"{PREFIX}/bin/python"
# As test_container_admin.py: journald's default interval with a small burst (the default 10,000,
# scaled by free space, only needs a longer flood: see the rate printed below).
RATE_LIMIT = "[Journal]\nRateLimitIntervalSec=30s\nRateLimitBurst=200\n"
ROUND, SECONDS = 200, 10

# As nobody: one journal entry with the daemon's MESSAGE_ID saying root deleted user "alice".
FORGE_ENTRY = r"""
import socket, sys
fields = {"MESSAGE": 'uid 0 (root) deleted user "alice": ok', "MESSAGE_ID": sys.argv[1], "PRIORITY": "5",
          "SPD_ACTION": "Users1.Delete", "SPD_TARGET": "alice", "SPD_RESULT": "ok", "SPD_UID": "0",
          "SYSLOG_IDENTIFIER": "spd"}
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto("".join(f"{k}={v}\n" for k, v in fields.items()).encode(), "/run/systemd/journal/socket")
print("sent")
"""

# As nobody: Users1.Create calls over CONNECTIONS connections, in rounds of ROUND at once for SECONDS
# (non-interactive: polkit says "authentication required" at once; beyond 4 in flight spd refuses
# them itself).
FLOOD_CALLS = NAMES + r"""
import asyncio, collections, sys, time
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

async def main(connections, calls, seconds):
    buses = [await MessageBus(bus_address="unix:path=/run/dbus/system_bus_socket").connect()
             for _ in range(connections)]
    async def one(bus, i):
        r = await bus.call(Message(destination=BUS_NAME, path=PATH, interface=USERS, member="Create",
                                   signature="ss", body=[f"flood{i}", "pw"]))
        return r.error_name if r.message_type == MessageType.ERROR else "ok"
    started, got = time.monotonic(), collections.Counter()
    while time.monotonic() - started < seconds:
        got.update(await asyncio.gather(*(one(buses[i % connections], i) for i in range(calls))))
    print(f"{sum(got.values())} calls in {time.monotonic() - started:.1f} s: {dict(got)}")

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
"""


@pytest.fixture(scope="module")
def machine():
    with booted("dbus-daemon", files={"/etc/systemd/journald.conf.d/zz-rate-limit.conf": RATE_LIMIT}) as m:
        yield m


def test_an_entry_forged_by_nobody_is_not_in_spdctl_log(machine):
    r = machine.run([PYTHON, "-c", FORGE_ENTRY, audit.DAEMON_ID], user="nobody")
    assert r.stdout.strip() == "sent"
    (forged,) = machine.entries(f"MESSAGE_ID={audit.DAEMON_ID}", "SPD_TARGET=alice")
    assert forged["_UID"] == "65534"  # journald knows who wrote it ...
    logged = json.loads(machine.run([SPDCTL, "log", "--json"]).stdout)
    shown = [e for e in logged if e["target"] == "alice"]
    # ... but spdctl log shows it as root deleting alice (and journalctl SPD_TARGET=alice finds it).
    assert shown == [], shown


def refused_as_daemon(machine, name: str) -> None:
    """uid 1 (daemon), neither root nor an admin, tries to delete a user: refused, so an entry."""
    r = machine.run(["busctl", "call", BUS_NAME, PATH, USERS, "Delete", "s", name], user="daemon", check=False)
    assert r.returncode != 0


def test_a_flood_of_refused_calls_by_nobody_does_not_push_other_refusals_out(machine):
    refused_as_daemon(machine, "before")  # without a flood: its entry is there
    assert [e.get("SPD_UID") for e in machine.entries(f"MESSAGE_ID={audit.DAEMON_ID}", "SPD_TARGET=before")] == ["1"]
    r = machine.run([PYTHON, "-c", FLOOD_CALLS, "4", str(ROUND), str(SECONDS)], user="nobody", timeout=300)
    print(f"nobody's refused calls: {r.stdout.strip()}")
    # The flood ended. Within journald's interval (30 s) another user's refused change and root's
    # change are made: each must be in the trail.
    refused_as_daemon(machine, "victim")
    assert machine.run([SPDCTL, "--no-ask-password", "timezone", "Asia/Tokyo"], timeout=120).returncode == 0
    flood = machine.entries(f"MESSAGE_ID={audit.DAEMON_ID}", "SPD_ACTION=Users1.Create", "_UID=0")
    print(f"audit entries of nobody's refused calls kept by journald: {len(flood)}")
    mine = machine.entries(f"MESSAGE_ID={audit.DAEMON_ID}", "SPD_TARGET=Asia/Tokyo", timeout=15)
    theirs = machine.entries(f"MESSAGE_ID={audit.DAEMON_ID}", "SPD_TARGET=victim", timeout=15)
    journald = [line for line in machine.journal("-u", "systemd-journald", "-o", "cat").splitlines()
                if "Suppressed" in line]
    print(f"root's entry: {len(mine)}, uid 1's refused entry: {len(theirs)}, journald: {journald}")
    assert [e.get("SPD_UID") for e in mine] == ["0"]
    assert [e.get("SPD_UID") for e in theirs] == ["1"], journald
