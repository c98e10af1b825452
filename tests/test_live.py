"""Every state is a property that stays true (live-and-local.md 1): each property's value, its
PropertiesChanged on a change made over the bus, and the changes made under the daemon (a hand edit,
a rebuild-style rewrite, a restore, a new DKIM folder, a snapshot made by another restic) seen as
signals within a second, without anyone reading. Real daemon, real restic, private bus."""

import subprocess
import time

import ssh_helpers as keys
from signals import Signals
from stack import TOKEN, call, eventually, get_property
from test_backups import backup, daemon_env, private_tmp, repo, restic, stack  # noqa: F401 (fixtures)
from userdata_helpers import edit_by_rename, edit_in_place, userdata, userdata_path, write_in_place

from spd.contract import BACKUPS, SERVICES, SSH, SYSTEM, TOKENS, USERS

SOON = 1.0  # seconds: the promise for a change made under the daemon


def _wait_signal(signals, interface, name, value, timeout=10) -> float:
    """Seconds until `interface.name` was signalled with `value`."""
    start = time.monotonic()
    signals.wait_for(lambda r: any(i == interface and c.get(name, object()) == value for i, c in r), timeout)
    return time.monotonic() - start


# --- each property: its value, and a signal when a call changes it -----------------------------

def test_each_property_has_its_value_and_signals_its_changes(daemon, bus, root, signals):
    data = userdata(root)
    assert get_property(bus, USERS, "Users") == ["user1", "user2"]
    assert get_property(bus, SSH, "Enable") is True and get_property(bus, SSH, "PasswordAuthentication") is True
    assert get_property(bus, SSH, "Keys") == {"root": data["ssh"]["rootKeys"], "tester": data["sshKeys"],
                                             "user1": data["users"][0]["sshKeys"], "user2": []}
    assert get_property(bus, SERVICES, "Enabled") == {"bitwarden": True, "gitea": False, "nextcloud": True,
                                                      "ocserv": True, "pleroma": True}
    assert get_property(bus, SERVICES, "Domain") == (root / "var/domain").read_text().strip()
    assert get_property(bus, SERVICES, "DkimRecord") == (root / "var/dkim/example.org.selector.txt").read_text()
    assert get_property(bus, SYSTEM, "Timezone") == data["timezone"]
    assert (get_property(bus, SYSTEM, "AutoUpgrade"), get_property(bus, SYSTEM, "AllowReboot")) == (True, False)
    assert get_property(bus, SYSTEM, "Jobs") == {}
    assert get_property(bus, SYSTEM, "Version") == subprocess.check_output(["uname", "-a"], text=True).strip()
    assert get_property(bus, SYSTEM, "PythonVersion").startswith("Python 3.")
    assert get_property(bus, BACKUPS, "Snapshots") == []
    assert sorted(n for n, _ in get_property(bus, TOKENS, "Devices")) == ["primary_token", "second_token"]
    assert get_property(bus, TOKENS, "Recovery") == [False, False, "", "", -1]

    # Each call's signal leaves before its reply: no waiting needed once every call has answered.
    key = keys.ed25519("live@test")
    call(bus, USERS, "Create", "ss", "dave", "secret-password")
    call(bus, SSH, "SetEnable", "b", "false")
    call(bus, SSH, "SetPasswordAuthentication", "b", "false")
    call(bus, SSH, "AddKey", "ss", "user2", key)
    call(bus, SERVICES, "Enable", "s", "gitea")
    call(bus, SYSTEM, "SetTimezone", "s", "Europe/Berlin")
    call(bus, SYSTEM, "SetAutoUpgrade", "b", "false")
    call(bus, SYSTEM, "SetAllowReboot", "b", "true")
    call(bus, TOKENS, "Delete", "s", "second_token")
    call(bus, TOKENS, "CreateRecovery", "si", "", "3")
    # The last reply came after its signal; the bus keeps one sender's order for every receiver.
    signals.wait_for(lambda r: any(i == TOKENS and "Recovery" in c for i, c in r))
    assert signals.changes(USERS, "Users") == [["user1", "user2", "dave"]]
    assert signals.changes(SSH, "Enable") == [False]
    assert signals.changes(SSH, "PasswordAuthentication") == [False]
    ssh_keys = signals.changes(SSH, "Keys")
    assert ssh_keys[0]["dave"] == [] and ssh_keys[-1]["user2"] == [key]  # the new user, then the key
    assert signals.changes(SERVICES, "Enabled")[-1]["gitea"] is True
    assert signals.changes(SYSTEM, "Timezone") == ["Europe/Berlin"]
    assert signals.changes(SYSTEM, "AutoUpgrade") == [False]
    assert signals.changes(SYSTEM, "AllowReboot") == [True]
    assert [sorted(n for n, _ in d) for d in signals.changes(TOKENS, "Devices")] == [["primary_token"]]
    (recovery,) = signals.changes(TOKENS, "Recovery")
    assert list(recovery[:2]) == [True, True] and list(recovery[3:]) == ["", 3]
    # A call that changes nothing signals nothing.
    before = len(signals.received)
    call(bus, SYSTEM, "SetTimezone", "s", "Europe/Berlin")
    call(bus, SSH, "SetEnable", "b", "false")
    call(bus, TOKENS, "CreateRecovery", "si", "", "3")  # a new token: Recovery's date changes
    signals.wait_for(lambda r: len(r) > before)
    time.sleep(0.3)
    assert [(i, sorted(c)) for i, c in signals.received[before:]] == [(TOKENS, ["Recovery"])]


def test_recovery_signals_when_it_expires(daemon, bus, signals):
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    call(bus, TOKENS, "CreateRecovery", "si", when, "0")
    assert get_property(bus, TOKENS, "Recovery")[:2] == [True, True]
    signals.wait_for(lambda r: any(i == TOKENS and c.get("Recovery", [None, True])[1] is False for i, c in r),
                     timeout=10)


# --- changes under the daemon ------------------------------------------------------------------

def test_a_hand_edit_is_signalled_within_a_second(daemon, bus, root, signals):
    def change(data):
        data["users"].append({"username": "erin", "hashedPassword": "x"})
        data["timezone"] = "Asia/Tokyo"

    edit_in_place(root, change)
    took = _wait_signal(signals, USERS, "Users", ["user1", "user2", "erin"], timeout=SOON + 2)
    _wait_signal(signals, SYSTEM, "Timezone", "Asia/Tokyo", timeout=SOON)
    print(f"hand edit -> signal: {took * 1000:.0f} ms")
    assert took < SOON
    signals.wait_for(lambda r: any(i == SSH and c.get("Keys", {}).get("erin") == [] for i, c in r))


def test_a_rebuild_style_rewrite_is_signalled(daemon, bus, root, signals):
    """A new file renamed over userdata.json (what nixos-rebuild tools and spd itself do)."""
    edit_by_rename(root, lambda data: data.update(autoUpgrade={"enable": False, "allowReboot": True},
                                                  gitea={"enable": True}))
    took = _wait_signal(signals, SYSTEM, "AutoUpgrade", False, timeout=SOON + 2)
    _wait_signal(signals, SYSTEM, "AllowReboot", True, timeout=SOON)
    _wait_signal(signals, SERVICES, "Enabled", {"bitwarden": True, "gitea": True, "nextcloud": True,
                                                "ocserv": True, "pleroma": True}, timeout=SOON)
    assert took < SOON


def test_an_invalid_file_keeps_the_last_good_values_until_a_valid_one(daemon, bus, root, signals):
    good = userdata(root)
    userdata_path(root).write_text('{"users": [')
    deadline = time.monotonic() + 5
    while "keeps its last values: userdata.json is not valid JSON" not in daemon.process.log():
        assert time.monotonic() < deadline, daemon.process.log()
        time.sleep(0.05)
    assert signals.received == []  # no value changed
    assert get_property(bus, USERS, "Users") == ["user1", "user2"]
    good["users"] = good["users"][:1]
    write_in_place(root, good)
    assert _wait_signal(signals, USERS, "Users", ["user1"], timeout=SOON + 2) < SOON


def test_dkim_and_domain_changes_are_signalled_even_for_a_new_folder(daemon, bus, root, signals):
    dkim = root / "var/dkim"
    for f in dkim.iterdir():
        f.unlink()
    dkim.rmdir()
    _wait_signal(signals, SERVICES, "DkimRecord", "")
    (root / "var/domain").write_text("other.org\n")
    _wait_signal(signals, SERVICES, "Domain", "other.org")
    dkim.mkdir()  # the folder appears after the daemon started: it is watched from then on
    time.sleep(0.2)
    (dkim / "other.org.selector.txt").write_text("selector._domainkey IN TXT \"v=DKIM1; p=new\"\n")
    assert _wait_signal(signals, SERVICES, "DkimRecord",
                        "selector._domainkey IN TXT \"v=DKIM1; p=new\"\n", timeout=SOON + 2) < SOON


def test_a_restore_and_another_restics_snapshot_are_signalled(stack, root, bus, repo):
    """The DKIM record and the domain come back with a restore (var): signalled. A snapshot that
    another restic (an operator's) made in the repository shows in Snapshots."""
    signals = Signals(bus)
    try:
        record = (root / "var/dkim/example.org.selector.txt").read_text()
        backup(stack)
        (snapshot,) = stack.api.get("/services/restic/backup/list").json()
        assert [s["short_id"]["data"] for s in get_property(bus, BACKUPS, "Snapshots")] == [snapshot["short_id"]]
        (root / "var/dkim/example.org.selector.txt").write_text("changed by hand\n")
        _wait_signal(signals, SERVICES, "DkimRecord", "changed by hand\n", timeout=SOON + 2)
        r = stack.api.put("/services/restic/backup/restore", json={"backupId": snapshot["short_id"]})
        assert r.status_code == 200, r.text
        stack.wait_for("INITIALIZED")
        _wait_signal(signals, SERVICES, "DkimRecord", record, timeout=SOON + 2)

        before = len(signals.changes(BACKUPS, "Snapshots"))
        out = restic(repo, "DEMO-RESTIC-PASSWORD", "backup", "--json", str(root / "var/dkim"))
        assert out.returncode == 0, out.stderr
        signals.wait_for(lambda r: len(signals.changes(BACKUPS, "Snapshots")) > before, timeout=30)
        listed = signals.changes(BACKUPS, "Snapshots")[-1]
        assert len(listed) == 2 and snapshot["short_id"] in [s["short_id"].value for s in listed]
        # the gateway's copy learns it from the same signal, on its own connection
        assert eventually(lambda: len(stack.api.get("/services/restic/backup/list").json()), 2) == 2
    finally:
        signals.close()


def test_an_error_is_signalled_only_where_a_value_was_published():
    """A property whose first reading is an error (Status while systemd is away) signals nothing: no
    one can hold a copy of it. Once it had a value, turning into an error is a change to signal
    (the gateway's copy must ask again), and so is the value coming back; the same error again is not."""
    from spd.dbus.base import LiveInterface, prop
    from spd.errors import Unavailable

    class Sample(LiveInterface):
        NAME = "org.selfprivacy.Sample1"
        X = prop("i", doc="A sample.")

    sample, emitted = Sample(), []
    sample.emit_properties_changed = lambda changed, invalidated: emitted.append(invalidated)
    for value in (Unavailable("away"), Unavailable("away"), 1, 1, Unavailable("away"), Unavailable("away"), 2):
        sample.publish({"X": value})
    assert emitted == [["X"], ["X"], ["X"]]
    assert sample.value("X") == 2
