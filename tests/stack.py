"""Real processes for the tests: a private dbus-daemon, spd and spd-gateway, started the way an
operator would start them; call() and get_property() to talk to the daemon, busctl for what an
operator types."""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from dbus_fast import Message, MessageFlag, MessageType, SignatureTree, Variant
from dbus_fast.aio import MessageBus

from spd.contract import BUS_NAME, PATH, PROPERTIES

REPO = Path(__file__).resolve().parents[1]
DEMO_ROOT = REPO / "tests" / "data" / "root"
PYTHON = sys.executable

# The 1.2 server's tokens in the demo tokens.json: imported at start, then gone from disk.
TOKEN = "KG9ni-B-CMPk327Zv1qC7YBQaUGaBUcgdkvMvQ2atFI"
SECOND_TOKEN = "3JKgLOtFu6ZHgE4OU-R-VdW47IKpg-YQL0c6n7bol68"

# A bus like the system bus, but open to everyone: tests of the shipped policy bring their own.
OPEN_POLICY = """
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>"""


def bus_config(socket_path: Path, policy: str = OPEN_POLICY, includedir: Path | None = None,
               servicedir: Path | None = None) -> str:
    extra = ""
    if includedir:
        extra += f"\n  <includedir>{includedir}</includedir>"
    if servicedir:
        extra += f"\n  <servicedir>{servicedir}</servicedir>"
    return f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket_path}</listen>
  <auth>EXTERNAL</auth>{policy}{extra}
</busconfig>
"""


def env_for_children(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process whose output goes to a log file the test can read."""

    def __init__(self, name: str, argv: list, log: Path, env=None):
        self.name = name
        self.log_path = log
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> str:
        """The log once it holds text. A change is visible to readers (its property, its signal) a
        moment before the caller's reply and the audit line that goes with it."""
        _wait(lambda: text in self.log(), repr(text), self, timeout)
        return self.log()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class Bus:
    def __init__(self, workdir: Path, **config):
        workdir.mkdir(parents=True, exist_ok=True)
        self.socket = workdir / "bus.socket"
        self.config_path = workdir / "bus.conf"
        self.config_path.write_text(bus_config(self.socket, **config))
        self.address = f"unix:path={self.socket}"
        self.process = Process("dbus-daemon", ["dbus-daemon", "--nofork", "--nopidfile",
                                               f"--config-file={self.config_path}"],
                               workdir / "bus.log")
        _wait(lambda: self.socket.exists(), "the private bus to listen", self.process)

    def reload(self):
        self.process.proc.send_signal(signal.SIGHUP)

    def stop(self):
        self.process.stop()


def make_root(where: Path) -> Path:
    """A state root copied from the demo server (tests/data/root)."""
    shutil.copytree(DEMO_ROOT, where, symlinks=True)
    return where


class Daemon:
    """spd as a real process, ready once it sent READY=1 on its NOTIFY_SOCKET."""

    def __init__(self, bus: Bus, root: Path, workdir: Path, env=None, wrapper=()):
        """wrapper: a command that runs spd (e.g. chrt)."""
        self.bus, self.root = bus, root
        notify_path = workdir / f"notify-{time.monotonic_ns()}"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(notify_path))
        self.process = Process("spd", [*wrapper, PYTHON, "-m", "spd", "--bus", bus.address, "--root", str(root)],
                               workdir / "spd.log",
                               env=env_for_children(NOTIFY_SOCKET=notify_path, **(env or {})))
        self.notify.settimeout(0.2)
        deadline = time.monotonic() + 20
        while True:
            try:
                if b"READY=1" in self.notify.recv(4096):
                    break
            except socket.timeout:
                pass
            if not self.process.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"spd did not become ready:\n{self.process.log()}")

    def stop(self, sig=signal.SIGTERM) -> int:
        code = self.process.stop(sig)
        self.notify.close()
        return code


class Gateway:
    def __init__(self, bus: Bus, workdir: Path, port: int | None = None, prefix: tuple = (), env=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process("spd-gateway", [*prefix, PYTHON, "-m", "gateway", "--bus", bus.address,
                                               "--port", str(self.port)],
                               workdir / "gateway.log", env=env_for_children(**(env or {})))

        def answers():
            try:
                return httpx.get(self.url + "/api/version", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        _wait(answers, "the gateway to answer", self.process)

    def stop(self) -> int:
        return self.process.stop()


def busctl(bus: Bus, *args, check: bool = True):
    """busctl --json=short against the private bus; returns the parsed JSON (None for no output)."""
    # "--": nothing after it is an option (a random token may start with "-")
    r = subprocess.run(["busctl", f"--address={bus.address}", "--json=short", "--", *map(str, args)],
                       capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise BusctlError(r.stderr.strip())
    return json.loads(r.stdout) if r.stdout.strip() else None


class BusctlError(Exception):
    pass


def _wait(ready, what: str, process: Process, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not ready():
        if not process.alive():
            raise RuntimeError(f"{process.name} exited while waiting for {what}:\n{process.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}:\n{process.log()}")
        time.sleep(0.05)


def call(bus: Bus, interface: str, member: str, signature: str = "", *args):
    """The tests' one way to call the daemon: a connection of its own (dbus-fast), interactive
    authorization allowed as busctl allows it. Returns the reply's values as busctl --json=short shows
    them to an operator, or raises CallError, which names the D-Bus error (busctl prints only its
    text). Basic arguments may be spelled as on busctl's command line ("true", "3")."""
    types = SignatureTree(signature).types
    assert len(types) == len(args), (signature, args)
    body = [_argument(t.token, a) for t, a in zip(types, args)]

    async def run():
        conn = await MessageBus(bus_address=bus.address).connect()
        try:
            return await asyncio.wait_for(conn.call(Message(
                destination=BUS_NAME, path=PATH, interface=interface, member=member, signature=signature,
                body=body, flags=MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION)), 30)
        finally:
            conn.disconnect()

    with ThreadPoolExecutor(1) as thread:  # a loop of its own, also for a caller inside one (blocked, as by busctl)
        reply = thread.submit(asyncio.run, run()).result()
    if reply.message_type == MessageType.ERROR:
        raise CallError(reply.error_name, reply.body[0] if reply.body else "")
    return [_as_busctl(v) for v in reply.body]


class CallError(Exception):
    def __init__(self, name: str, text: str):
        super().__init__(f"{name}: {text}")
        self.name, self.text = name, text


def refusal(bus: Bus, interface: str, member: str, signature: str = "", *args) -> CallError:
    """The error a call on the daemon answers (an AssertionError if it succeeds)."""
    try:
        reply = call(bus, interface, member, signature, *args)
    except CallError as e:
        return e
    raise AssertionError(f"{interface}.{member} answered {reply}")


def _argument(token: str, value):
    """busctl's spelling of a basic value ("true", "3") as the value itself."""
    if not isinstance(value, str) or token in "sog":
        return value
    if token == "b":
        return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}[value]
    return float(value) if token == "d" else int(value)


def _as_busctl(value):
    """A value as busctl --json=short shows it: a variant as {"type", "data"}, a struct as a list."""
    if isinstance(value, Variant):
        return {"type": value.signature, "data": _as_busctl(value.value)}
    if isinstance(value, dict):
        return {k: _as_busctl(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_busctl(v) for v in value]
    if isinstance(value, bytes):
        return list(value)
    return value


def files_containing(root: Path, needle: str) -> list:
    """Every file under root whose bytes contain needle."""
    found = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink() and needle.encode() in p.read_bytes():
            found.append(p)
    return found


def get_property(bus: Bus, interface: str, name: str):
    """A property of the daemon, as busctl get-property --json=short shows its value."""
    return call(bus, PROPERTIES, "Get", "ss", interface, name)[0]["data"]


def eventually(read, expected, timeout: float = 10):
    """read() until it returns expected, or the last value after `timeout` seconds. For what travels
    through signals (a hand edit the daemon sees through inotify, a systemd change), which the
    gateway's copy of the daemon's properties learns soon after, not at once."""
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.05)
