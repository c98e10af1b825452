"""issue 16 items 1, 3 and 5 on a booted systemd with the shipped policy, both brokers: `nobody` listening
to the daemon's signals learns no value, and signals nobody forges to the gateway or to spdctl change
nothing."""

import json
import signal
import subprocess

import pytest

import ssh_helpers as keys
from container import BROKERS, PREFIX, booted
from stack import TOKEN, eventually
from strangers_helpers import ESCAPED, FORGE, FORGER, HOSTILE, Listener, invalidated, leaks
from userdata_helpers import userdata_path

from spd.contract import BUS_NAME, DBUS, PATH, SSH, SYSTEM, TOKENS, USERS

ADDRESS = "unix:path=/run/dbus/system_bus_socket"
PYTHON = f"{PREFIX}/bin/python"
DAEMON = [BUS_NAME, PATH]
DRIVER = [DBUS, "/org/freedesktop/DBus", DBUS]
USERDATA = str(userdata_path("/"))  # in the machine
UPGRADE, RELEASE = "sp-nixos-upgrade.service", "/run/spd-test-release"
# The upgrade's stand-in runs until the test releases it, then fails: a result only systemd gives.
FILES = {f"/etc/systemd/system/{UPGRADE}":
         f"[Unit]\nDescription=stand-in for {UPGRADE}\n\n[Service]\nType=oneshot\n"
         f"ExecStart=/bin/sh -c 'until [ -e {RELEASE} ]; do sleep 0.1; done; exit 1'\n"}


@pytest.fixture(scope="module", params=BROKERS)
def machine(request):
    with booted(request.param, FILES) as m:
        yield m


def test_nobody_hears_no_value(machine):
    listener = Listener(["nsenter", "-t", str(machine.leader), "-a", "setpriv", "--reuid=nobody",
                         "--regid=nogroup", "--clear-groups", "--"], PYTHON, ADDRESS, {"PATH": "/usr/bin:/bin"})
    key = keys.ed25519("stranger@test")
    try:
        for args in ([USERS, "Create", "ss", "dave", "secret-password"],
                     [SSH, "AddKey", "ss", "user1", key],
                     [TOKENS, "Delete", "s", "second_token"],
                     [TOKENS, "CreateRecovery", "si", "", "3"]):
            machine.run(["busctl", "call", *DAEMON, *args], timeout=120)
        got = listener.wait_for(TOKENS, "Recovery")
    finally:
        listener.stop()
    assert {(USERS, "Users"), (SSH, "Keys"),
            (TOKENS, "Devices"), (TOKENS, "Recovery")} <= invalidated(got), got
    assert leaks(got) == []  # InterfacesAdded too (spd activated by the first call above)
    text = "".join(listener.lines)
    assert "dave" not in text and key.split()[1] not in text and "primary_token" not in text


def test_forged_signals_leave_the_gateway_as_it_was(machine):
    status, users = machine.http("GET", "/users", token=TOKEN)  # starts the gateway, fills its copy
    assert status == 200
    pid = machine.systemctl("show", "-P", "MainPID", "spd-gateway.service")
    names = json.loads(machine.run(["busctl", "list", "--json=short"]).stdout)
    unique = next(n["name"] for n in names if str(n.get("pid")) == pid and n["name"].startswith(":"))
    r = machine.run([PYTHON, "-c", FORGE, ADDRESS, unique], user="nobody")
    assert r.stdout.strip() == "sent"
    # A call's reply reaches the gateway after the forged signals: then, with spd stopped, the copy
    # and the token cache still answer.
    assert machine.http("PUT", "/system/configuration/timezone", {"timezone": "Asia/Tokyo"}, TOKEN)[0] == 200
    assert machine.http("GET", "/system/configuration/timezone", token=TOKEN) == (200, "Asia/Tokyo")
    spd = machine.systemctl("show", "-P", "MainPID", "spd.service")
    machine.run(["kill", f"-{signal.SIGSTOP.value}", spd])
    try:
        assert machine.http("GET", "/users", token=TOKEN) == (200, users)
        assert machine.http("GET", "/system/configuration/timezone", token=TOKEN) == (200, "Asia/Tokyo")
    finally:
        machine.run(["kill", f"-{signal.SIGCONT.value}", spd])
    assert machine.systemctl("show", "-P", "MainPID", "spd-gateway.service") == pid  # never restarted


def test_nobody_hears_no_value_at_start(machine):
    machine.systemctl("stop", "spd.service")
    listener = Listener(["nsenter", "-t", str(machine.leader), "-a", "setpriv", "--reuid=nobody",
                         "--regid=nogroup", "--clear-groups", "--"], PYTHON, ADDRESS, {"PATH": "/usr/bin:/bin"})
    try:
        machine.run(["busctl", "call", *DAEMON, USERS, "Create", "ss", "erin", "pw 1234"],
                    timeout=120)
        got = listener.wait_for(USERS, "Users")
    finally:
        listener.stop()
    assert leaks(got) == []


def busctl_json(machine, *args):
    return json.loads(machine.run(["busctl", "--json=short", *args]).stdout)["data"]


def test_spdctl_believes_no_forged_job_end(machine):
    """While root's `spdctl upgrade --wait` follows a real job, nobody sends it the job's end in
    every form (strangers_helpers.FORGER); spdctl waits for systemd's own result."""
    spdctl = subprocess.Popen(["nsenter", "-t", str(machine.leader), "-a", f"{PREFIX}/bin/spdctl", "upgrade",
                               "--wait"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    try:
        def job():
            return busctl_json(machine, "get-property", *DAEMON, SYSTEM, "Jobs").get("upgrade")
        assert eventually(lambda: (job() or [None, None])[1], "running", timeout=60) == "running"
        names = json.loads(machine.run(["busctl", "list", "--json=short"]).stdout)
        mine = [n["name"] for n in names if n.get("process") == "spdctl" and n["name"].startswith(":")]
        assert len(mine) == 1, spdctl.communicate(timeout=60) if spdctl.poll() is not None else names
        (target,) = mine
        owner = busctl_json(machine, "call", *DRIVER, "GetNameOwner", "s", DAEMON[0])[0]
        machine.run([PYTHON, "-c", FORGER, ADDRESS, target, owner, job()[0]], user="nobody")
        # The forgeries reached spdctl before the real end: had it believed one, it would have
        # printed done and exited 0 already.
        machine.run(["touch", RELEASE])
        out, err = spdctl.communicate(timeout=120)
    finally:
        spdctl.kill()
        spdctl.wait()
    assert (spdctl.returncode, out.splitlines()[-1:], err) == (1, ["upgrade: failed"], "spdctl: upgrade failed\n")


def test_spdctl_prints_a_hand_edited_string_escaped(machine):
    """A control sequence in userdata.json (edited by hand, renamed into place as editors do) reaches
    root's terminal escaped."""
    data = json.loads(machine.run(["cat", USERDATA]).stdout)
    timezone, data["timezone"] = data["timezone"], data["timezone"] + HOSTILE
    machine.run(["sh", "-c", 'cat >"$0.tmp" && chmod --reference="$0" "$0.tmp" && mv "$0.tmp" "$0"', USERDATA],
                input=json.dumps(data))
    expected = f"{timezone}{ESCAPED}\n"
    assert eventually(lambda: machine.run([f"{PREFIX}/bin/spdctl", "timezone"]).stdout, expected) == expected
