"""Shared by the benchmarks: a folder with a private bus for the test stack's processes, wrk with its
numbers parsed, and a counter of the daemon's PropertiesChanged signals (what a write really changed)."""

import asyncio
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from stack import Bus  # noqa: E402

from spd.contract import DBUS, DBUS_PATH, PROPERTIES, match_rule  # noqa: E402


@contextmanager
def workspace(prefix: str):
    """(folder, its private bus, `started`): what a benchmark appends to `started` (anything with a
    stop()) is stopped on the way out, last first, then the bus. The folder goes after a run that ended well; a failed one
    keeps it, with the processes' logs."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    bus = Bus(work / "bus")
    started = []
    try:
        yield work, bus, started
    finally:
        for thing in reversed(started):
            thing.stop()
        bus.stop()
    shutil.rmtree(work, ignore_errors=True)


def warn_of_tracebacks(processes: dict) -> None:
    """name -> Process: a benchmark's numbers mean little if one of them hit a bug meanwhile."""
    for name, proc in processes.items():
        if "Traceback" in proc.log():
            print(f"warning: {name} logged a traceback, see {proc.log_path}", file=sys.stderr)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    return (f"{model}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def wrk_start(url: str, seconds: float, connections: int = 16, threads: int = 2, script: Path | None = None,
              token: str | None = None, args=()) -> subprocess.Popen:
    """wrk running in the background; wrk_result() waits for it and parses what it printed.
    `args` reach the script's init(args)."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    if script:
        argv += ["-s", str(script)]
    argv.append(url)
    if args:
        argv += ["--", *map(str, args)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wrk_result(proc: subprocess.Popen) -> dict:
    """req/s, request count, p50 and p99 in ms, non-2xx/3xx answers, socket errors."""
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip()}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: (.*)$", out, re.M)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50": _ms(latency["50"]), "p99": _ms(latency["99"]),
            "errors": int(errors.group(1)) if errors else 0,
            "socket": sockets.group(1) if sockets else ""}


def wrk(url: str, seconds: float, connections: int = 16, threads: int = 2, script: Path | None = None,
        token: str | None = None, args=()) -> dict:
    """Run wrk and wait for its numbers (see wrk_result)."""
    return wrk_result(wrk_start(url, seconds, connections, threads, script, token, args))


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


# The start of a wrk script whose threads must not send the same values: each thread gets its number,
# `id` (0, 1, ...), in its own Lua state.
THREAD_ID_LUA = """
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
"""

# A wrk script for PUT /system/configuration/timezone whose every request changes the value: wrk
# thread k of n (n is the script's argument) sends zones k, k+n, k+2n, ... in turn, so no two threads
# ever send the same zone and a request never sets the zone already there.
TIMEZONE_LUA = THREAD_ID_LUA + """
local zones = {%s}
wrk.headers["Content-Type"] = "application/json"  -- wrk.headers also holds the token (-H)
function init(args)
  step = tonumber(args[1]) or 1  -- the number of wrk threads
  i = id + 1
end
function request()
  local body = '{"timezone":"' .. zones[i] .. '"}'
  i = i + step
  if i > #zones then i = (i - 1) %% step + 1 end
  return wrk.format("PUT", nil, nil, body)
end
"""


def timezone_script(where: Path) -> Path:
    import zoneinfo

    from spd.system import valid_timezone

    zones = sorted(z for z in zoneinfo.available_timezones() if valid_timezone(z))
    where.write_text(TIMEZONE_LUA % ", ".join(f'"{z}"' for z in zones))
    return where


class SignalCounter:
    """Counts the daemon's PropertiesChanged signals that name a property (changed or invalidated: the
    daemon sends only names), on its own thread."""

    def __init__(self, address: str, interface: str, prop: str):
        from dbus_fast import Message, MessageType
        from dbus_fast.aio import MessageBus

        self.count = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        def on_message(msg):
            if (msg.message_type == MessageType.SIGNAL and msg.member == "PropertiesChanged"
                    and msg.body and msg.body[0] == interface and (prop in msg.body[1] or prop in msg.body[2])):
                self.count += 1

        async def connect():
            bus = await MessageBus(bus_address=address).connect()
            bus.add_message_handler(on_message)
            await bus.call(Message(destination=DBUS, path=DBUS_PATH, interface=DBUS, member="AddMatch",
                                   signature="s", body=[match_rule(interface=PROPERTIES, member="PropertiesChanged",
                                                                   arg0=interface)]))
            return bus

        self.bus = asyncio.run_coroutine_threadsafe(connect(), self.loop).result(10)

    def take(self) -> int:
        """The count so far, and start again from zero (after the signals in flight arrived)."""
        import time

        time.sleep(0.3)
        count, self.count = self.count, 0
        return count

    def stop(self):
        self.loop.call_soon_threadsafe(self.bus.disconnect)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def bare_sanic(work: Path, answers: Path | None = None):
    """The reference server of bench/bare.py as a process (with --answers when given); returns
    (process, its URL)."""
    from stack import PYTHON, Process, _wait, free_port
    import httpx

    port = free_port()
    argv = [PYTHON, str(REPO / "bench" / "bare.py"), "--port", str(port)]
    if answers is not None:
        argv += ["--answers", str(answers)]
    process = Process("bare", argv, work / "bare.log")
    url = f"http://127.0.0.1:{port}/"

    def answers():
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    _wait(answers, "the bare Sanic handler to answer", process)
    return process, url
