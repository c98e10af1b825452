"""Deployment as shipped: the bus policy and the daemon's own check with callers running as other
users, D-Bus activation, socket activation, readiness, idle exit, and the systemd units."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from deploy_helpers import (ACTIVATION_FILE, AS_GATEWAY_GROUP, AS_NOBODY, AS_ROOT, GATEWAY_GROUP,
                            POLICY_DIR, SYSTEM_POLICY, activation_file, ensure_gateway_group,
                            every_call, installed_units, label, policy_copy, run_client)
from stack import (BUS_NAME, PYTHON, REPO, TOKEN, Bus, Daemon, Gateway, Process, busctl, call,
                   get_property,
                   env_for_children, free_port)

from spd.contract import DBUS_ACCESS_DENIED as ACCESS_DENIED, PROPERTIES, TOKENS

LIST = {"interface": PROPERTIES, "member": "Get", "signature": "ss",
        "args": [TOKENS, "Devices"]}
AUTHENTICATE = {"interface": TOKENS, "member": "Authenticate", "signature": "s", "args": [TOKEN]}
OWN = {"destination": "org.freedesktop.DBus", "path": "/org/freedesktop/DBus",
       "interface": "org.freedesktop.DBus", "member": "RequestName", "signature": "su",
       "args": [BUS_NAME, 4]}


@pytest.fixture(scope="module", autouse=True)
def gateway_group():
    ensure_gateway_group()


@pytest.fixture
def reachable():
    """A folder other users can reach (pytest's tmp_path is root's alone): for bus sockets."""
    where = Path(tempfile.mkdtemp(prefix="spd-test-"))
    where.chmod(0o755)
    yield where
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def system_bus(reachable, tmp_path):
    """A bus with a system bus's default policy and the shipped system.d."""
    b = Bus(reachable / "bus", policy=SYSTEM_POLICY, includedir=policy_copy(tmp_path / "system.d"))
    yield b
    b.stop()


@pytest.fixture
def open_bus(reachable):
    """A bus that lets everyone call everything (stack.OPEN_POLICY, no system.d)."""
    b = Bus(reachable / "bus")
    yield b
    b.stop()


@pytest.fixture
def shipped(system_bus, root, tmp_path):
    d = Daemon(system_bus, root, tmp_path)
    yield d
    assert d.stop() == 0, d.process.log()


# --- the bus policy -----------------------------------------------------------------------------

def test_policy_lets_nobody_through_to_the_daemon_which_refuses_without_polkit(system_bus, shipped):
    """The bus lets any local user send (as to systemd's daemons); spd decides. With no polkit on
    this bus, every call from nobody is refused by spd, and nobody may not own the name."""
    calls = every_call(system_bus)
    assert {label(c) for c in calls} >= {f"{TOKENS}.{m}" for m in ("Delete", "UseRecovery")} | {f"Get {TOKENS}.Devices"}
    results = run_client(system_bus, AS_NOBODY, calls + [OWN])
    bus_refused = [label(c) for c, (_, text) in zip(calls, results) if "Rejected send message" in text]
    assert bus_refused == []
    refused = [label(c) for c, (outcome, _) in zip(calls, results)
               if outcome in (ACCESS_DENIED, "org.selfprivacy.Error.AccessDenied")]
    assert refused == [label(c) for c in calls], f"{len(refused)} of {len(calls)} refused by spd"
    print(f"nobody: {len(refused)} of {len(calls)} calls refused by spd (no polkit)")
    assert results[-1][0] == ACCESS_DENIED  # and it may not own the name
    assert len(get_property(system_bus, TOKENS, "Devices")) == 2  # nothing nobody sent changed anything


def test_policy_lets_the_gateway_group_call(system_bus, shipped):
    listed, authenticated, owned = run_client(system_bus, AS_GATEWAY_GROUP, [LIST, AUTHENTICATE, OWN])
    assert listed[0] == "ok" and sorted(n for n, _ in listed[1][0]) == ["primary_token", "second_token"]
    assert authenticated == ["ok", ["primary_token"]]
    assert owned[0] == ACCESS_DENIED  # calling, yes; owning the daemon's name, no


def test_policy_lets_root_call(system_bus, shipped):
    listed, authenticated = run_client(system_bus, AS_ROOT, [LIST, AUTHENTICATE])
    assert listed[0] == "ok" and len(listed[1][0]) == 2
    assert authenticated == ["ok", ["primary_token"]]


def test_daemon_refuses_nobody_when_the_bus_lets_everyone_through(open_bus, root, tmp_path):
    """The bus lets everyone through: only the daemon's table stands."""
    bus = open_bus
    daemon = Daemon(bus, root, tmp_path)
    calls = every_call(bus)
    results = run_client(bus, AS_NOBODY, calls)
    refused = [label(c) for c, (outcome, text) in zip(calls, results)
               if outcome == ACCESS_DENIED and "is not allowed for uid 65534" in text  # the table's words
               or outcome == "org.selfprivacy.Error.AccessDenied" and "polkit" in text]  # no polkit here
    assert refused == [label(c) for c in calls], f"{len(refused)} of {len(calls)} refused by spd"
    print(f"nobody, bus open to all: {len(refused)} of {len(calls)} calls refused by spd")
    assert daemon.process.log().count("refused") >= len(calls)
    # ... while the gateway's group still gets through, and nothing nobody sent changed anything.
    listed, = run_client(bus, AS_GATEWAY_GROUP, [LIST])
    assert listed[0] == "ok" and len(listed[1][0]) == 2
    assert daemon.stop() == 0


def test_policy_file_names_a_destination_in_every_rule():
    for path in POLICY_DIR.glob("*.conf"):
        tree = ET.parse(path).getroot()
        for policy in tree.iter("policy"):
            for rule in policy:
                if any(k.startswith("send_") for k in rule.attrib):
                    assert rule.get("send_destination") == BUS_NAME, (path, rule.attrib)
                if "own" in rule.attrib:
                    assert rule.get("own") == BUS_NAME
                    assert rule.tag == "deny" or policy.attrib == {"user": "root"}, rule.attrib
        # No rule per group: the daemon tells the gateway's group from everyone else.
        assert not [p for p in tree.iter("policy") if p.get("group")]


# --- activation and readiness ---------------------------------------------------------------------

def _owner_pid(bus) -> int:
    out = busctl(bus, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                 "GetConnectionUnixProcessID", "s", BUS_NAME)
    return out["data"][0]


def _has_owner(bus) -> bool:
    out = busctl(bus, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                 "NameHasOwner", "s", BUS_NAME)
    return out["data"][0]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] == "Z"  # a zombie until the bus reaps it
    except FileNotFoundError:
        return True


def _wait(condition, what: str, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _stop_activated(bus):
    if _has_owner(bus):
        pid = _owner_pid(bus)
        subprocess.run(["kill", "-TERM", str(pid)])
        _wait(lambda: _gone(pid), "the activated spd to stop")


def test_activation_file_hands_over_to_systemd():
    text = ACTIVATION_FILE.read_text()
    assert f"Name={BUS_NAME}\n" in text and "SystemdService=spd.service\n" in text
    assert "User=root\n" in text
    assert (REPO / "data" / "systemd" / "spd.service").exists()


def test_dbus_activation_starts_the_daemon(tmp_path, root):
    b = Bus(tmp_path / "bus", policy=SYSTEM_POLICY, includedir=policy_copy(tmp_path / "system.d"),
            servicedir=tmp_path / "services")
    activation_file(tmp_path / "services", root)
    try:
        assert not _has_owner(b)
        tokens = get_property(b, TOKENS, "Devices")  # the call asks the bus to start the name's owner
        assert sorted(n for n, _ in tokens) == ["primary_token", "second_token"]
        pid = _owner_pid(b)
        assert "-m spd" in open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
        assert f"Activating service name='{BUS_NAME}'" in b.process.log()
        _stop_activated(b)
    finally:
        b.stop()
    assert "Traceback" not in b.process.log()


def test_idle_daemon_leaves_and_activation_brings_it_back(tmp_path, root):
    b = Bus(tmp_path / "bus", policy=SYSTEM_POLICY, includedir=policy_copy(tmp_path / "system.d"),
            servicedir=tmp_path / "services")
    activation_file(tmp_path / "services", root, "--idle-timeout", "1")
    try:
        assert call(b, TOKENS, "Authenticate", "s", TOKEN) == ["primary_token"]
        first = _owner_pid(b)
        _wait(lambda: not _has_owner(b) and _gone(first), "the idle spd to leave")
        assert "idle for 1s: leaving" in b.process.log()
        assert call(b, TOKENS, "Authenticate", "s", TOKEN) == ["primary_token"]
        assert _owner_pid(b) != first
        _stop_activated(b)
    finally:
        b.stop()
    assert "Traceback" not in b.process.log()


def test_daemon_says_ready_once_it_owns_its_name(bus, root, tmp_path):
    notify_path = tmp_path / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(20)
    proc = Process("spd", [PYTHON, "-m", "spd", "--bus", bus.address, "--root", str(root)],
                   tmp_path / "spd.log", env=env_for_children(NOTIFY_SOCKET=notify_path))
    try:
        messages = []
        while not any(b"READY=1" in m for m in messages):
            messages.append(notify.recv(4096))
        assert _has_owner(bus)  # ready means: calls to the name reach it now
        assert call(bus, TOKENS, "Authenticate", "s", TOKEN) == ["primary_token"]
        assert proc.stop() == 0
        notify.settimeout(5)
        assert b"STOPPING=1" in notify.recv(4096)
    finally:
        proc.stop()
        notify.close()


def _pings(notify: socket.socket, count: int) -> list:
    """The next `count` datagrams on a notify socket (at most 10 s for all)."""
    notify.settimeout(10)
    return [notify.recv(4096) for _ in range(count)]


def test_both_ping_the_watchdog_systemd_sets(bus, root, tmp_path):
    """WATCHDOG_USEC (WatchdogSec= in the units): WATCHDOG=1 twice per period, from each event loop. The
    booted container shows systemd restarting them when they stop (tests/test_container.py)."""
    # (WATCHDOG_PID empty: not the test runner's own, if a systemd watchdog watches it)
    d = Daemon(bus, root, tmp_path, env={"WATCHDOG_USEC": "200000", "WATCHDOG_PID": ""})
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp_path / "gateway-notify"
    notify.bind(str(notify_path))
    try:
        assert _pings(d.notify, 3) == [b"WATCHDOG=1"] * 3
        gateway = Gateway(bus, tmp_path, env={"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "200000",
                                              "WATCHDOG_PID": ""})
        try:
            assert _pings(notify, 3) == [b"WATCHDOG=1"] * 3
        finally:
            gateway.stop()
    finally:
        d.stop()
        notify.close()


def test_no_pings_without_a_watchdog_or_for_another_process(bus, root, tmp_path):
    for env in ({}, {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}):
        d = Daemon(bus, root, tmp_path, env=env)
        try:
            d.notify.settimeout(0.5)
            with pytest.raises(socket.timeout):
                d.notify.recv(4096)
        finally:
            assert d.stop() == 0


def test_idle_daemon_stays_while_called_then_leaves(bus, root, tmp_path):
    d = Daemon(bus, root, tmp_path, env={"SPD_IDLE_TIMEOUT": "1"})
    try:
        for _ in range(8):  # 2 s of calls, each well within the idle time
            get_property(bus, TOKENS, "Devices")
            time.sleep(0.25)
        assert d.process.alive()
        d.process.proc.wait(10)
        assert d.process.proc.returncode == 0
        assert "idle for 1s: leaving" in d.process.log()
        assert not _has_owner(bus)
    finally:
        d.stop()


# --- the gateway ---------------------------------------------------------------------------------

def _socket_activated_gateway(bus, tmp_path, port, *args, also: tuple = ()) -> Process:
    """The gateway behind systemd-socket-activate on 127.0.0.1:port (and the ports in `also`)."""
    proc = Process("systemd-socket-activate",
                   ["systemd-socket-activate", *(f"--listen=127.0.0.1:{p}" for p in (port, *also)),
                    "-E", f"SPD_BUS={bus.address}",
                    "-E", f"PYTHONPATH={REPO}", "-E", "PYTHONUNBUFFERED=1", PYTHON, "-m", "gateway", *args],
                   tmp_path / "gateway.log")
    _wait(lambda: proc.log().count("Listening on") == 1 + len(also), "the sockets to listen", 10)
    return proc


def test_socket_activated_gateway_refuses_more_than_one_socket(bus, tmp_path):
    """A second ListenStream= would never be accepted on: said at once, instead of connections waiting."""
    port = free_port()
    proc = _socket_activated_gateway(bus, tmp_path, port, also=(free_port(),))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30):
            assert proc.proc.wait(30) == 1
    finally:
        proc.stop()
    assert "spd-gateway serves one socket, and was given 2" in proc.log(), proc.log()


def test_socket_activated_gateway_answers_requests_sent_before_it_started(bus, daemon, tmp_path):
    port = free_port()
    proc = _socket_activated_gateway(bus, tmp_path, port)
    try:
        assert "Execing" not in proc.log()  # nothing runs yet: only the socket exists
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(f"GET /auth/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                      "Connection: close\r\n\r\n".encode())
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert b'"primary_token"' in reply
        r = httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=30)
        assert r.status_code == 200
    finally:
        proc.stop()
    assert "Traceback" not in proc.log()


def test_socket_activated_gateway_leaves_when_idle(bus, daemon, tmp_path):
    port = free_port()
    proc = _socket_activated_gateway(bus, tmp_path, port, "--idle-timeout", "1")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            for _ in range(8):  # 2 s of requests keep it
                assert client.get("/auth/tokens").status_code == 200
                time.sleep(0.25)
        assert proc.alive()
        proc.proc.wait(10)
        assert proc.proc.returncode == 0
        assert "idle for 1s: leaving" in proc.log()
    finally:
        proc.stop()
    assert "Traceback" not in proc.log()


def test_gateway_idle_timeout_needs_socket_activation(bus, daemon, tmp_path):
    port = free_port()
    proc = Process("spd-gateway", [PYTHON, "-m", "gateway", "--bus", bus.address, "--port", str(port),
                                   "--idle-timeout", "0.5"], tmp_path / "gw.log", env=env_for_children())
    try:
        _wait(lambda: "applies only when socket-activated" in proc.log(), "the warning", 20)
        time.sleep(1.5)
        assert proc.alive()
    finally:
        proc.stop()


def test_gateway_outlives_the_daemon(bus, root, tmp_path):
    first = Daemon(bus, root, tmp_path)
    gateway = Gateway(bus, tmp_path)
    try:
        with httpx.Client(base_url=gateway.url, timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            assert client.get("/auth/tokens").status_code == 200
            assert first.stop() == 0
            r = client.get("/auth/tokens")
            assert r.status_code == 503 and "error" in r.json()
            second = Daemon(bus, root, tmp_path)
            try:
                r = client.get("/auth/tokens")
                assert r.status_code == 200 and len(r.json()) == 2
            finally:
                assert second.stop() == 0
    finally:
        gateway.stop()
    assert "Traceback" not in gateway.process.log()


def test_gateway_reaches_an_activated_daemon(tmp_path, root):
    b = Bus(tmp_path / "bus", policy=SYSTEM_POLICY, includedir=policy_copy(tmp_path / "system.d"),
            servicedir=tmp_path / "services")
    activation_file(tmp_path / "services", root, "--idle-timeout", "1")
    gateway = Gateway(b, tmp_path)  # as root: the policy lets it through
    try:
        with httpx.Client(base_url=gateway.url, timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            assert client.get("/auth/tokens").status_code == 200
            first = _owner_pid(b)
            _wait(lambda: not _has_owner(b) and _gone(first), "the idle spd to leave")
            r = client.get("/auth/tokens")  # cached token: only the List call activates spd
            assert r.status_code == 200 and len(r.json()) == 2
            assert _owner_pid(b) != first
        _stop_activated(b)
    finally:
        gateway.stop()
        b.stop()
    assert "Traceback" not in gateway.process.log()


# --- the systemd units ---------------------------------------------------------------------------

def test_units_pass_systemd_analyze_verify(tmp_path):
    units = installed_units(tmp_path / "units")
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(map(str, units.iterdir()))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stdout + r.stderr


@pytest.mark.parametrize("unit,threshold", [("spd-gateway.service", 1.0), ("spd.service", 3.0)])
def test_units_are_hardened(tmp_path, unit, threshold):
    """threshold is the exposure shown (0.0-10.0); --threshold takes it times ten (0-100)."""
    units = installed_units(tmp_path / "units")
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--threshold={round(threshold * 10)}",
                        "--no-pager", str(units / unit)], capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert score, r.stdout + r.stderr
    print(f"{unit}: {score.group(1)} (threshold {threshold})")
    assert r.returncode == 0 and float(score.group(1)) <= threshold, \
        f"{unit} scores {score.group(1)}, above {threshold}:\n{r.stdout}"


def test_units_say_what_the_packaging_needs():
    units = REPO / "data" / "systemd"
    daemon = (units / "spd.service").read_text()
    assert "Type=notify\n" in daemon and f"BusName={BUS_NAME}\n" in daemon
    assert re.search(r"^ExecStart=/usr/bin/spd\b", daemon, re.M)
    assert "ProtectSystem=strict\n" in daemon and "NoNewPrivileges=yes\n" in daemon
    assert re.search(r"^CapabilityBoundingSet=CAP_", daemon, re.M)
    socket_unit = (units / "spd-gateway.socket").read_text()
    assert "ListenStream=127.0.0.1:5050\n" in socket_unit
    gateway = (units / "spd-gateway.service").read_text()
    assert re.search(r"^ExecStart=/usr/bin/spd-gateway\b", gateway, re.M)
    assert f"SupplementaryGroups={GATEWAY_GROUP}\n" in gateway and "User=spd-gateway\n" in gateway
    # A static user (data/sysusers.d): dbus-daemon resets a DynamicUser's bus connection. What
    # DynamicUser= implied is spelled out.
    assert not re.search(r"^DynamicUser=", gateway, re.M)
    for implied in ("ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "RemoveIPC=yes",
                    "NoNewPrivileges=yes", "RestrictSUIDSGID=yes"):
        assert f"{implied}\n" in gateway, implied
    assert "CapabilityBoundingSet=\n" in gateway and "RestrictAddressFamilies=AF_UNIX\n" in gateway
    assert "IPAddressDeny=any\n" in gateway and "IPAddressAllow=localhost\n" in gateway
    # systemd maintainers' conventions: spd stops its own children (restic's lock), keeps the restic
    # password on a tmpfs, starts without /etc/nixos; the gateway, its client, stops before it.
    assert "KillMode=mixed\n" in daemon and "RuntimeDirectory=spd\n" in daemon
    assert "ReadWritePaths=-/etc/nixos /var\n" in daemon
    assert re.search(r"^After=.*\bspd\.service\b", gateway, re.M) and "Type=exec\n" in gateway
    for unit in (daemon, gateway):  # spd/runtime/watchdog.py pings; the gateway's pings must be accepted
        assert re.search(r"^WatchdogSec=\d", unit, re.M)
    assert "NotifyAccess=main\n" in gateway


def test_sysusers_file_creates_the_gateway_user_in_its_group(tmp_path):
    (tmp_path / "etc").mkdir()
    r = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(REPO / "data/sysusers.d/spd.conf")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    passwd = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/group").read_text().splitlines()}
    name, _, uid, gid, _, home, shell = passwd["spd-gateway"]
    assert 0 < int(uid) < 1000 and home == "/" and shell.endswith("/nologin")  # a system user, no home
    assert groups["spd-gateway"][2] == gid
    assert 0 < int(groups[GATEWAY_GROUP][2]) < 1000 and groups[GATEWAY_GROUP][3].split(",") == ["spd-gateway"]


def _gateway_as(user: list, bus, where: Path, log: Path) -> tuple[Process, str]:
    """The gateway run as another user, from a copy of the code that user can read."""
    src = where / "src"
    if not src.exists():
        for package in ("spd", "gateway"):
            shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
        for path in [src, *src.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    port = free_port()
    proc = Process("spd-gateway", [*user, PYTHON, "-m", "gateway", "--bus", bus.address, "--port", str(port)],
                   log, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"

    def answers():
        try:
            return httpx.get(url + "/api/version", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    _wait(lambda: answers() or not proc.alive(), "the gateway to answer", 20)
    assert proc.alive(), proc.log()
    return proc, url


def test_gateway_as_shipped_reaches_the_daemon_only_through_its_group(system_bus, shipped, reachable, tmp_path):
    """The deployment's shape: the gateway unprivileged, in selfprivacy-api; the shipped policy."""
    member, url = _gateway_as(AS_GATEWAY_GROUP, system_bus, reachable, tmp_path / "member.log")
    outsider, outsider_url = _gateway_as(AS_NOBODY, system_bus, reachable, tmp_path / "outsider.log")
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        r = httpx.get(url + "/auth/tokens", headers=headers, timeout=30)
        assert r.status_code == 200 and len(r.json()) == 2
        r = httpx.get(outsider_url + "/auth/tokens", headers=headers, timeout=30)
        assert r.status_code == 403 and "error" in r.json()
    finally:
        member.stop()
        outsider.stop()
    assert "Traceback" not in member.log() + outsider.log()


def test_sigusr1_logs_where_spd_waits(daemon):
    """For a daemon that seems stuck: every task's chain of awaits and every thread's stack, in its log
    (file, line, function: no values), and it goes on serving."""
    os.kill(daemon.process.pid, signal.SIGUSR1)
    log = daemon.process.wait_for_log("most recent call first")
    assert re.search(r"spd: WARNING: task .* waits at:\n  .*spd/main\.py:\d+ serve", log), log
    assert call(daemon.bus, TOKENS, "Authenticate", "s", TOKEN) == ["primary_token"]
