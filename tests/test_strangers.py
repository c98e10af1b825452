"""A local stranger (`nobody`) against the shipped bus policy on a bus with Debian's system defaults
(issue 16, items 1 and 3): listening to the daemon's signals it learns that something changed, never
a value; signals it forges to the gateway change nothing there."""

import os
import signal
import subprocess

import httpx

import ssh_helpers as keys
from deploy_helpers import AS_NOBODY
from sse import Events
from stack import PYTHON, TOKEN, Daemon, Gateway, busctl, call
from strangers_helpers import FORGE, Listener, invalidated, leaks
from test_backups import PASSWORD, daemon_env, private_tmp, repo, restic  # noqa: F401 (fixtures)
from test_deploy import gateway_group, reachable, system_bus  # noqa: F401 (fixtures)

from spd.contract import BACKUPS, SSH, TOKENS, USERS

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def test_a_stranger_listening_to_the_daemon_learns_no_value(system_bus, root, tmp_path, daemon_env, repo):  # noqa: F811
    daemon = Daemon(system_bus, root, tmp_path, env=daemon_env)
    listener = Listener(AS_NOBODY, PYTHON, system_bus.address, ENV)
    try:
        key = keys.ed25519("stranger@test")
        call(system_bus, USERS, "Create", "ss", "dave", "secret-password")
        call(system_bus, SSH, "AddKey", "ss", "user1", key)
        call(system_bus, TOKENS, "Delete", "s", "second_token")
        call(system_bus, TOKENS, "CreateRecovery", "si", "", "3")
        assert restic(repo, PASSWORD, "init").returncode == 0
        out = restic(repo, PASSWORD, "backup", "--json", str(root / "var/dkim"))
        assert out.returncode == 0, out.stderr
        got = listener.wait_for(BACKUPS, "Snapshots")
    finally:
        listener.stop()
        assert daemon.stop() == 0
    print(f"nobody received {len(got)} signals")
    assert {(USERS, "Users"), (SSH, "Keys"), (TOKENS, "Devices"), (TOKENS, "Recovery"),
            (BACKUPS, "Snapshots")} <= invalidated(got), got
    assert leaks(got) == []
    text = "".join(listener.lines)
    for secret in ("dave", key.split()[1], "primary_token", "user2", "/var/dkim"):
        assert secret not in text


def test_a_stranger_listening_to_every_signal_learns_no_value_when_spd_starts(system_bus, root, tmp_path):  # noqa: F811
    """dbus-fast's export() sends ObjectManager.InterfacesAdded with the interface's properties, from
    spd's unique name before it owns org.selfprivacy.Daemon: a listener of every signal hears it."""
    listener = Listener(AS_NOBODY, PYTHON, system_bus.address, ENV, rule="type='signal'")
    try:
        daemon = Daemon(system_bus, root, tmp_path)
        call(system_bus, USERS, "Create", "ss", "dave", "secret-password")
        got = listener.wait_for(USERS, "Users")
    finally:
        listener.stop()
    assert daemon.stop() == 0
    added = [s for s in got if s[1] == "InterfacesAdded"]
    assert {name for s in added for name in s[2][1]} >= {USERS, SSH, TOKENS}, got  # it was heard
    assert leaks(got) == []
    for secret in ("dave", "user1", "primary_token"):
        assert secret not in "".join(listener.lines)


def test_signals_forged_to_the_gateway_change_nothing(system_bus, root, tmp_path):  # noqa: F811
    daemon = Daemon(system_bus, root, tmp_path)
    gateway = Gateway(system_bus, tmp_path)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as api, \
                Events(gateway.url, topics="timezone") as events:
            assert events.next() == ("timezone", "Europe/Moscow")
            users = api.get("/users").json()
            unique = next(n["name"] for n in busctl(system_bus, "list") if n.get("pid") == gateway.process.pid
                          and n["name"].startswith(":"))
            r = subprocess.run([*AS_NOBODY, PYTHON, "-c", FORGE, system_bus.address, unique], cwd="/", env=ENV,
                               capture_output=True, text=True, timeout=60)
            assert r.stdout.strip() == "sent", r.stderr
            # The stream goes on, and hears the daemon's next change (not the forged one). The reply
            # of this call reaches the gateway after every forged signal, which the bus routed first.
            assert api.put("/system/configuration/timezone", json={"timezone": "Asia/Tokyo"}).status_code == 200
            assert events.next() == ("timezone", "Asia/Tokyo")
            # The copy and the token cache are intact: with the daemon stopped, reads still answer.
            daemon.process.proc.send_signal(signal.SIGSTOP)
            try:
                assert api.get("/users").json() == users
                assert api.get("/system/configuration/timezone").json() == "Asia/Tokyo"
            finally:
                daemon.process.proc.send_signal(signal.SIGCONT)
    finally:
        gateway.stop()
        assert daemon.stop() == 0
    assert "Traceback" not in gateway.process.log()
