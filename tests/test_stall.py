"""Reads never wait for writes: the daemon's event loop is never held by one callback for long.

The daemon runs with SPD_STALL_MS (spd/runtime/stall.py): asyncio reports every callback that took longer,
and spd subtracts the time its loop thread only waited for a CPU (a loaded machine preempts it; that
is not a stall of ours). A mixed workload over the bus then runs: readers of every store while
writers change tokens, users, the timezone, SSH and service settings, and backups run (restic).
Every report is printed; the test fails on any callback that held the loop for the threshold or
longer, naming it. With the token store's old write (an fsync on the loop) put back, it fails
whenever one fsync takes the threshold or longer (here 1 run in 2 on a busy disk: 739 ms); the
steady cost of such writes shows in bench/mixed.py instead.
"""

import asyncio
import itertools
import logging
import os
import re
import shutil
import subprocess
import time

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from spd.runtime import stall
from spd.contract import BACKUPS, PROPERTIES, SERVICES, SSH, SYSTEM, TOKENS, USERS
from stack import BUS_NAME, PATH, Daemon

STALL_MS = 20
SECONDS = 8
READERS = 4
REPORT = re.compile(r"spd\.stall: (\w+): held the loop ([\d.]+) ms \(wall ([\d.]+) ms, ([\d.]+) ms waiting "
                    r"for a CPU\)(?:, not a stall)?: (.*)")
READS = [
    (PROPERTIES, "Get", "ss", [TOKENS, "Devices"]), (PROPERTIES, "Get", "ss", [USERS, "Users"]),
    (PROPERTIES, "Get", "ss", [TOKENS, "Recovery"]), (PROPERTIES, "Get", "ss", [SYSTEM, "Timezone"]),
    (PROPERTIES, "GetAll", "s", [SSH]), (PROPERTIES, "Get", "ss", [SERVICES, "DkimRecord"]),
    (PROPERTIES, "GetAll", "s", [BACKUPS]),
]
ZONES = ["Europe/Berlin", "Europe/Paris", "Asia/Tokyo", "America/New_York", "Africa/Cairo"]


async def _call(bus, interface, member, signature="", body=()):
    reply = await bus.call(Message(destination=BUS_NAME, path=PATH, interface=interface, member=member,
                                   signature=signature, body=list(body)))
    if reply.message_type == MessageType.ERROR:
        raise AssertionError(f"{interface}.{member}: {reply.error_name}: {reply.body}")
    return reply.body


async def _workload(address: str, seconds: float) -> dict:
    counts = {"reads": 0, "token writes": 0, "users created and deleted": 0, "timezone changes": 0,
              "ssh/service/auto-upgrade changes": 0, "backups started": 0}
    deadline = time.monotonic() + seconds
    # Many callers at once on one loop: a load that stack.call (a connection per call) cannot make.
    buses = [await MessageBus(bus_address=address).connect() for _ in range(READERS + 5)]

    async def reader(bus):
        for interface, member, signature, body in itertools.cycle(READS):
            if time.monotonic() > deadline:
                return
            await _call(bus, interface, member, signature, body)
            counts["reads"] += 1

    async def tokens(bus):
        while time.monotonic() < deadline:
            await _call(bus, TOKENS, "CreateRecovery", "si", ["", 5])
            (words,) = await _call(bus, TOKENS, "CreateNewDevice")
            (token,) = await _call(bus, TOKENS, "AuthorizeNewDevice", "ss", [words, "stall test"])
            (token,) = await _call(bus, TOKENS, "Refresh", "s", [token])
            (name,) = await _call(bus, TOKENS, "Authenticate", "s", [token])
            await _call(bus, TOKENS, "Delete", "s", [name])
            counts["token writes"] += 5

    async def users(bus):
        for n in itertools.count():
            if time.monotonic() > deadline:
                return
            await _call(bus, USERS, "Create", "ss", [f"stall{n}", "a password"])
            await _call(bus, USERS, "Delete", "s", [f"stall{n}"])
            counts["users created and deleted"] += 1

    async def timezone(bus):
        for zone in itertools.cycle(ZONES):  # each one differs from the one before: a real write
            if time.monotonic() > deadline:
                return
            await _call(bus, SYSTEM, "SetTimezone", "s", [zone])
            counts["timezone changes"] += 1

    async def backups(bus):
        while time.monotonic() < deadline:
            (state,) = await _call(bus, PROPERTIES, "Get", "ss", [BACKUPS, "State"])
            state = state.value
            if state in ("NOT_INITIALIZED", "INITIALIZED"):
                await _call(bus, BACKUPS, "StartBackup")  # restic as a child, progress on the loop
                counts["backups started"] += 1
            else:
                await _call(bus, BACKUPS, "Reload")
            await asyncio.sleep(0.2)

    async def settings(bus):
        for on in itertools.cycle((False, True)):
            if time.monotonic() > deadline:
                return
            await _call(bus, SSH, "SetPasswordAuthentication", "b", [on])
            await _call(bus, SERVICES, "Enable" if on else "Disable", "s", ["gitea"])
            await _call(bus, SYSTEM, "SetAllowReboot", "b", [on])
            counts["ssh/service/auto-upgrade changes"] += 3

    try:
        await asyncio.gather(*(reader(b) for b in buses[:READERS]), tokens(buses[-5]), users(buses[-4]),
                             timezone(buses[-3]), settings(buses[-2]), backups(buses[-1]))
    finally:
        for b in buses:
            b.disconnect()
    return counts


def _realtime() -> list:
    """chrt's argv when this machine lets us run spd at real-time priority, else []. Its threads and
    children start at normal priority (--reset-on-fork): restic (Go) at SCHED_FIFO spun both cores
    for ten minutes here, livelocked, starving every other process of the machine."""
    argv = ["chrt", "--reset-on-fork", "--fifo", "1"]
    ok = shutil.which("chrt") and subprocess.run([*argv, "true"], capture_output=True).returncode == 0
    return argv if ok else []


def test_no_callback_holds_the_loop_under_mixed_reads_and_writes(bus, root, tmp_path):
    # At real-time priority no other process on a loaded machine preempts the loop's thread (the
    # detector subtracts such waits anyway, its own and those of the worker threads, which run at
    # normal priority).
    wrapper = _realtime()
    print(f"\nspd runs {'at real-time priority (' + ' '.join(wrapper) + ')' if wrapper else 'at normal priority'}")
    (root / "var" / "lib" / "data.bin").write_bytes(os.urandom(8 << 20))  # something to back up
    env = {"SPD_STALL_MS": STALL_MS, "SPD_RESTIC_REPOSITORY": tmp_path / "repo", "TMPDIR": tmp_path,
           "XDG_CACHE_HOME": tmp_path / "cache"}
    daemon = Daemon(bus, root, tmp_path, env=env, wrapper=wrapper)
    try:
        counts = asyncio.run(_workload(bus.address, SECONDS))
    finally:
        assert daemon.stop() == 0
    log = daemon.process.log()
    assert f"stall detector on: callbacks that hold the event loop {STALL_MS} ms" in log
    reports = [m.groups() for m in map(REPORT.match, log.splitlines()) if m]
    stalls = [r for r in reports if r[0] == "WARNING"]
    print(f"\nworkload over {SECONDS}s: {counts}")
    print(f"{len(reports)} callbacks took {STALL_MS} ms or longer by the clock; {len(stalls)} of them held the "
          "loop that long (the rest waited for a CPU):")
    for level, held, wall, waited, callback in reports:
        print(f"  {'STALL' if level == 'WARNING' else 'ok   '} held {held:>6} ms  wall {wall:>6} ms  "
              f"waited {waited:>6} ms  {callback[:160]}")
    assert counts["reads"] > 100 and all(counts.values()), counts
    assert "Traceback" not in log, log
    assert not stalls, "callbacks held the daemon's event loop:\n" + "\n".join(
        f"{held} ms: {callback}" for _, held, _, _, callback in stalls)


def test_the_detector_names_a_callback_that_blocks(monkeypatch):
    """The detector itself: a callback that sleeps 60 ms on the loop is reported as a stall, by name
    (a sleeping thread waits for no CPU, so nothing of it is subtracted); a quick one is not."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    report = logging.getLogger("test.stall")
    report.addHandler(handler)
    report.setLevel(logging.INFO)

    def blocking_callback():
        time.sleep(0.06)

    def quick_callback():
        pass

    async def main():
        asyncio.get_running_loop().call_soon(quick_callback)
        asyncio.get_running_loop().call_soon(blocking_callback)
        await asyncio.sleep(0.1)

    monkeypatch.setenv("SPD_STALL_MS", str(STALL_MS))
    loop = stall.loop_factory(report)()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        for f in logging.getLogger("asyncio").filters[:]:
            if isinstance(f, stall._Report) and f.report is report:
                logging.getLogger("asyncio").removeFilter(f)
    stalls = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    print(*(r.getMessage() for r in records), sep="\n")
    assert len(stalls) == 1 and "blocking_callback" in stalls[0], stalls
    assert float(re.search(r"held the loop ([\d.]+) ms", stalls[0]).group(1)) >= STALL_MS
