"""The soak, shared by bench/soak.py (5 minutes) and tests/test_soak.py (60 s): many HTTP clients of
mixed reads and writes through the gateway while spd is SIGKILLed again and again. As on a server,
D-Bus activation starts it again on the next call (there the bus hands the start to systemd).

Each client reads, and one request in four is a write: odd clients create a user and then delete it,
even ones add an SSH key to user1 and then remove it (the state stays the size of a real server's).
Pass: every answer is 2xx, 4xx or 503 (no 5xx other than 503, no dropped connection); every write
answered 2xx is in userdata.json at the end (what was last added and answered is there, what was last
removed and answered is not; an item whose last write answered 503 may be either); the gateway's RSS
grows less than 5 MiB from the first kill (its allocator's warm-up is behind it by then) to the end;
no traceback in the gateway's log.

Also counted, not judged: how often spd left on its own because dbus-fast dropped its bus connection.
dbus-fast (5.2) treats EAGAIN on a full socket as a lost connection (python-dbus-next issue 153), and
spd exits (1) to be started again. Seen when writes only added (thousands of users and keys, each
PropertiesChanged carrying a whole list): after a restart the calls queued meanwhile filled its socket."""

import asyncio
import hashlib
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

import ssh_helpers as keys
from deploy_helpers import activation_file
from stack import BUS_NAME, TOKEN, Bus, Gateway, make_root
from userdata_helpers import userdata

READS = ["/auth/tokens", "/users", "/services/ssh", "/system/configuration/timezone",
         "/services/ssh/keys/user1", "/auth/recovery_token"]
MAX_GROWTH_MIB = 5.0


@dataclass
class Result:
    seconds: float = 0.0
    kills: int = 0
    statuses: Counter = field(default_factory=Counter)  # "200", "503", or the transport error's type
    acked: int = 0  # writes answered 2xx
    expected: dict = field(default_factory=dict)  # (kind, item) -> present at the end? None: unknown
    missing: list = field(default_factory=list)  # answered 2xx, but userdata.json says otherwise
    rss: dict = field(default_factory=dict)  # gateway VmRSS in MiB: start, first kill, end
    activations: int = 0  # spd starts by the bus
    lost_bus: int = 0  # spd exits after dbus-fast dropped its connection

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def unexpected(self) -> dict:
        return {s: n for s, n in self.statuses.items()
                if not (s.isdigit() and (200 <= int(s) < 300 or 400 <= int(s) < 500 or s == "503"))}

    @property
    def growth(self) -> float:
        return self.rss["end"] - self.rss["first kill"]

    @property
    def passed(self) -> bool:
        return not self.unexpected and not self.missing and self.growth < MAX_GROWTH_MIB


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _write(n: int, i: int) -> tuple:
    """Client n's write number i: (method, path, body, (kind, item), adds)."""
    k, adds = divmod(i, 2)
    adds = not adds
    if n % 2:
        user = f"soak{n}x{k}"
        if adds:
            return "POST", "/users", {"username": user, "password": f"pw-{user}"}, ("user", user), True
        return "DELETE", f"/users/{user}", None, ("user", user), False
    blob = keys.string(b"ssh-ed25519") + keys.string(hashlib.sha256(f"soak{n}x{k}".encode()).digest())
    key = keys.line("ssh-ed25519", blob, f"soak{n}x{k}")  # the same key for its removal
    return ("POST" if adds else "DELETE"), "/services/ssh/keys/user1", {"public_key": key}, \
        ("key", key.split()[1]), adds


async def _client(n: int, url: str, until: float, result: Result):
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                                 timeout=120) as http:
        i = writes = 0
        while time.monotonic() < until:
            i += 1
            if i % 4:
                method, path, body, item = "GET", READS[(n + i) % len(READS)], None, None
            else:
                method, path, body, item, adds = _write(n, writes)
                writes += 1
            try:
                r = await http.request(method, path, json=body)
                status = r.status_code
            except httpx.TransportError as e:
                status = type(e).__name__
            result.statuses[str(status)] += 1
            if item is None:
                continue
            if status in (200, 201):
                result.acked += 1
                result.expected[item] = adds
            elif status in (404, 409):  # already gone / already there: known all the same
                result.expected[item] = status == 409
            else:
                result.expected[item] = None


async def _owner_pid(conn) -> int | None:
    reply = await conn.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                    interface="org.freedesktop.DBus", member="GetConnectionUnixProcessID",
                                    signature="s", body=[BUS_NAME]))
    return reply.body[0] if reply.message_type == MessageType.METHOD_RETURN else None


async def _killer(bus: Bus, gateway_pid: int, every: float, until: float, result: Result):
    conn = await MessageBus(bus_address=bus.address).connect()
    try:
        while time.monotonic() + every < until:
            await asyncio.sleep(every)
            pid = await _owner_pid(conn)
            while pid is None and time.monotonic() < until:  # not started again yet
                await asyncio.sleep(0.1)
                pid = await _owner_pid(conn)
            if pid is None:
                break
            if not result.kills:
                result.rss["first kill"] = rss_mib(gateway_pid)
            os.kill(pid, signal.SIGKILL)
            result.kills += 1
    finally:
        conn.disconnect()


def _stop_daemon(bus: Bus):
    async def run():
        conn = await MessageBus(bus_address=bus.address).connect()
        try:
            return await _owner_pid(conn)
        finally:
            conn.disconnect()

    pid = asyncio.run(run())
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def soak(work: Path, seconds: float, clients: int = 32, kill_every: float = 15.0) -> Result:
    """Run the soak in `work` (a fresh folder); returns its figures."""
    root = make_root(work / "root")
    activation_file(work / "services", root)
    bus = Bus(work / "bus", servicedir=work / "services")
    gateway = None
    result = Result()
    try:
        gateway = Gateway(bus, work)  # its first request starts spd through the bus
        result.rss["start"] = rss_mib(gateway.process.pid)

        async def run():
            until = time.monotonic() + seconds
            await asyncio.gather(_killer(bus, gateway.process.pid, kill_every, until, result),
                                 *(_client(n, gateway.url, until, result) for n in range(clients)))

        start = time.monotonic()
        asyncio.run(run())
        result.seconds = time.monotonic() - start
        result.rss["end"] = rss_mib(gateway.process.pid)
        result.rss.setdefault("first kill", result.rss["start"])
        _stop_daemon(bus)  # every reply it sent is on disk; nothing is in flight any more
        users = {u["username"]: u for u in userdata(root)["users"]}
        present = {("user", name) for name in users} | {
            ("key", key.split()[1]) for key in users["user1"]["sshKeys"]}
        result.missing = [item for item, there in result.expected.items()
                          if there is not None and there != (item in present)]
    finally:
        if gateway is not None:
            gateway.stop()
        bus.stop()
    log = gateway.process.log()
    at = log.find("Traceback")
    assert at < 0, log[max(0, at - 1000):at + 4000]
    log = bus.process.log()  # with the output of each spd it started
    result.activations = log.count(f"Activating service name='{BUS_NAME}'")
    result.lost_bus = log.count("spd: ERROR: lost the bus connection")
    return result


def report(r: Result) -> str:
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(r.statuses.items()))
    return "\n".join([
        f"time:                {r.seconds:.0f} s, spd SIGKILLed {r.kills} times",
        f"requests:            {r.requests} ({r.requests / max(r.seconds, 1e-9):.0f}/s); {statuses}",
        f"unexpected answers:  {sum(r.unexpected.values())} {r.unexpected or ''}",
        f"writes answered 2xx: {r.acked}; not as answered in userdata.json at the end: {len(r.missing)} "
        f"{r.missing[:5] or ''}",
        f"gateway RSS:         {r.rss['start']:.2f} MiB at start, {r.rss['first kill']:.2f} at the first "
        f"kill, {r.rss['end']:.2f} at the end: {r.growth:+.2f} MiB (limit {MAX_GROWTH_MIB:g})",
        f"spd started:         {r.activations} times by the bus; it left {r.lost_bus} times on its own "
        "(dbus-fast dropped its connection on EAGAIN)",
        f"result:              {'PASS' if r.passed else 'FAIL'}",
    ])
