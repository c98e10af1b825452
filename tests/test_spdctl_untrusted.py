"""spdctl believes only the daemon, and prints what it says with control characters escaped: a local
user may send spdctl's connection any signal, and a hand-edited userdata.json may hold anything."""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from stack import BUS_NAME, PYTHON, Bus, busctl, env_for_children, eventually, get_property
from strangers_helpers import ESCAPED, FORGER, HOSTILE
from systemd_helpers import MOCK
from test_spdctl import _lines, ctl, daemon, mocks  # noqa: F401  (fixtures)
from test_backups import daemon_env, private_tmp, repo  # noqa: F401  (fixtures of the daemon above)
from userdata_helpers import edit_in_place

from spd.contract import DBUS, SYSTEM

MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "sp-nixos-upgrade.service"
HELD_JOB = "/org/freedesktop/systemd1/Job/4242"
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def bus():
    """The test bus in a folder nobody can reach, for the forger."""
    where = Path(tempfile.mkdtemp(prefix="spd-test-"))
    where.chmod(0o755)
    b = Bus(where / "bus")
    yield b
    b.stop()
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def held_job(mocks):  # noqa: F811
    """systemd's StartUnit answers HELD_JOB and leaves it running until end(result) removes it."""
    systemd, _ = mocks
    systemd.call(MOCK, "AddMethod", "sssss", MANAGER, "StartUnit", "ss", "o", f"ret = '{HELD_JOB}'")

    def end(result: str, unit: str = UNIT) -> None:
        systemd.call(MOCK, "EmitSignal", "sssav", MANAGER, "JobRemoved", "uoss",
                     4, "u", 4242, "o", HELD_JOB, "s", unit, "s", result)
    return end


def upgrade_waiting(bus) -> subprocess.Popen:
    """`spdctl upgrade --wait`, once its job runs (spdctl listens from before it starts the job)."""
    p = subprocess.Popen([PYTHON, "-m", "spdctl", "upgrade", "--wait"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env_for_children(SPD_BUS=bus.address))
    running = {"upgrade": [HELD_JOB, "running"]}
    assert eventually(lambda: get_property(bus, SYSTEM, "Jobs"), running, timeout=60) == running
    return p


def bus_driver(bus, member: str, *args, check=True):
    out = busctl(bus, "call", DBUS, "/org/freedesktop/DBus", DBUS, member, *args, check=check)
    return out and out["data"][0]


def unique_name_of(bus, pid: int) -> str:
    for name in bus_driver(bus, "ListNames"):  # (some leave meanwhile: busctl's own)
        if name.startswith(":") and bus_driver(bus, "GetConnectionUnixProcessID", "s", name, check=False) == pid:
            return name
    raise AssertionError(f"no connection of pid {pid}")


def forge(bus, pid: int) -> None:
    """FORGER's signals to the connection of process `pid`, from nobody."""
    owner = bus_driver(bus, "GetNameOwner", "s", BUS_NAME)
    subprocess.run([*AS_NOBODY, PYTHON, "-c", FORGER, bus.address, unique_name_of(bus, pid), owner, HELD_JOB],
                   check=True, timeout=60, cwd="/", env=env_for_children())


def test_forged_job_signals_do_not_end_the_wait(ctl, held_job):
    bus = ctl.bus
    p = upgrade_waiting(bus)
    try:
        forge(bus, p.pid)
        # The forgeries reached spdctl before the real end: had it believed one, it would have
        # printed done and exited 0 already.
        held_job("failed")
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert (p.returncode, out.splitlines()[-1], err) == (1, "upgrade: failed", "spdctl: upgrade failed\n")


def match_rules(bus, pid: int) -> int:
    """How many match rules the connection of process `pid` has (0 before it connects); its
    message handler is in place before its first."""
    try:
        name = unique_name_of(bus, pid)
    except AssertionError:
        return 0
    out = busctl(bus, "call", DBUS, "/org/freedesktop/DBus", "org.freedesktop.DBus.Debug.Stats",
                 "GetConnectionStats", "s", name, check=False)
    return out["data"][0]["MatchRules"]["data"] if out else 0


def test_forged_job_signals_make_no_monitor_event(ctl, held_job):
    bus = ctl.bus
    p = subprocess.Popen([PYTHON, "-m", "spdctl", "--json", "monitor", "job"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env_for_children(SPD_BUS=bus.address))
    try:
        assert eventually(lambda: match_rules(bus, p.pid) >= 1, True, timeout=60)  # listening
        forge(bus, p.pid)
        ctl("apply", check=0)  # the real events after the forged ones: whether the start is one
        held_job("done", "sp-nixos-rebuild.service")  # depends on when monitor read Jobs first
        events = []
        while not events or events[-1]["data"]["result"] != "done":
            events += [json.loads(line) for line in _lines(p, 1)]
    finally:
        p.kill()
        p.wait()
    assert {e["data"]["name"] for e in events} == {"apply"}, events


def test_a_job_result_is_printed_escaped(ctl, held_job):
    p = upgrade_waiting(ctl.bus)
    held_job(HOSTILE)
    try:
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 1
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert out.splitlines()[-1] == f"upgrade: {ESCAPED}" and err == f"spdctl: upgrade {ESCAPED}\n"


@pytest.fixture
def root(root):
    """userdata.json edited by hand: a user, an SSH key's comment, a root key and the timezone with
    control characters."""
    def change(data):
        data["ssh"]["rootKeys"].append(f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq8 root@{HOSTILE}")
        data["users"][0]["sshKeys"][0] += HOSTILE
        data["timezone"] += HOSTILE
        data["users"].append({"username": f"eve{HOSTILE}\x9b31m", "hashedPassword": "x"})

    edit_in_place(root, change)
    return root


def test_server_strings_reach_the_terminal_escaped(ctl):
    printed = []

    def run(*args, check=0):
        r = ctl(*args, check=check)
        printed.append(r.stdout + r.stderr)
        return r

    keys = run("ssh", "keys").stdout
    assert keys.splitlines()[-1] == f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq8 root@{ESCAPED}"
    assert run("ssh", "keys", "user1").stdout.endswith(f"user1@phone{ESCAPED}\n")
    eve = rf"eve{ESCAPED}\xc2\x9b31m"  # a C1 control (CSI) byte by byte, as systemd's tools write it
    assert run("users").stdout.split() == ["USER", "user1", "user2", eve]
    status = run("status").stdout
    assert f"Users: 3 (user1, user2, {eve})" in status and f"Timezone: Europe/Moscow{ESCAPED}\n" in status
    assert run("timezone").stdout == f"Europe/Moscow{ESCAPED}\n"
    r = run("users", "remove", f"no{HOSTILE}body", check=1)
    assert r.stderr == f"spdctl: User {'no' + HOSTILE + 'body'!r} does not exist\n"  # the daemon quotes it
    assert not any(c in "".join(printed) for c in "\x1b\x07\x9b"), printed
    # --json is the REST body: the same JSON value, with every control a \\u escape.
    body = ctl("--json", "users", check=0).stdout
    assert "\x1b" not in body and "\x9b" not in body and json.loads(body)[-1] == f"eve{HOSTILE}\x9b31m"
