"""issue 16 items 1 and 3 on a booted systemd with the shipped policy, both brokers: `nobody` listening
to the daemon's signals learns no value, and signals nobody forges to the gateway change nothing."""

import json
import signal

import pytest

import ssh_helpers as keys
from container import BROKERS, PREFIX, booted
from strangers_helpers import FORGE, Listener, invalidated, leaks

TOKEN = "KG9ni-B-CMPk327Zv1qC7YBQaUGaBUcgdkvMvQ2atFI"
ADDRESS = "unix:path=/run/dbus/system_bus_socket"
PYTHON = f"{PREFIX}/bin/python"
DAEMON = ["org.selfprivacy.Daemon", "/org/selfprivacy/Daemon"]


@pytest.fixture(scope="module", params=BROKERS)
def machine(request):
    with booted(request.param) as m:
        yield m


def test_nobody_hears_no_value(machine):
    listener = Listener(["nsenter", "-t", str(machine.leader), "-a", "setpriv", "--reuid=nobody",
                         "--regid=nogroup", "--clear-groups", "--"], PYTHON, ADDRESS, {"PATH": "/usr/bin:/bin"})
    key = keys.ed25519("stranger@test")
    try:
        for args in (["org.selfprivacy.Users1", "Create", "ss", "dave", "secret-password"],
                     ["org.selfprivacy.SSH1", "AddKey", "ss", "user1", key],
                     ["org.selfprivacy.Tokens1", "Delete", "s", "second_token"],
                     ["org.selfprivacy.Tokens1", "CreateRecovery", "si", "", "3"]):
            machine.run(["busctl", "call", *DAEMON, *args], timeout=120)
        got = listener.wait_for("org.selfprivacy.Tokens1", "Recovery")
    finally:
        listener.stop()
    assert {("org.selfprivacy.Users1", "Users"), ("org.selfprivacy.SSH1", "Keys"),
            ("org.selfprivacy.Tokens1", "Devices"), ("org.selfprivacy.Tokens1", "Recovery")} <= invalidated(got), got
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
        machine.run(["busctl", "call", *DAEMON, "org.selfprivacy.Users1", "Create", "ss", "erin", "pw 1234"],
                    timeout=120)
        got = listener.wait_for("org.selfprivacy.Users1", "Users")
    finally:
        listener.stop()
    assert leaks(got) == []
