"""The audit trail (live-and-local.md §6, spd/runtime/audit.py): one structured entry per change, to the journal's
native socket when stderr is the journal, the text line otherwise. Here the journal is a datagram
socket the test binds, named to both processes by $SPD_JOURNAL_SOCKET, with their stderr the stream
$JOURNAL_STREAM names (as systemd sets it); the booted container shows the real journald
(tests/test_container_admin.py)."""

import socket
import struct
import subprocess
import time

import httpx
import pytest

from ssh_helpers import keygen
from stack import BUS_NAME, PATH, PYTHON, REPO, TOKEN, Daemon, Gateway, busctl, env_for_children
from test_journal import journal_env

from spd.runtime import audit
from spd.contract import SYSTEM
from spdctl import commands

KEY = keygen("ed25519")
KEY_FINGERPRINT = subprocess.run(["ssh-keygen", "-lf", "-"], input=KEY, capture_output=True, text=True,
                                 check=True).stdout.split()[1]  # what ssh-keygen calls it
KEY_BODY = KEY.split()[1]
PASSWORD = "Corr3ct-Horse-Battery-9f2d"


def decode(datagram: bytes) -> dict:
    """A native-protocol datagram back into fields (both forms, as journald reads them)."""
    fields, rest = {}, datagram
    while rest:
        line, sep, after = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            rest = after
        else:  # binary form: KEY\n, 64-bit LE length, value, \n
            key = line
            (size,) = struct.unpack("<Q", after[:8])
            value, rest = after[8:8 + size], after[8 + size + 1:]
        fields[key.decode()] = value.decode()
    return fields


class FakeJournal:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(10)
        self.entries: list[dict] = []

    def wait(self, count: int) -> list[dict]:
        """The entries received so far, once there are at least `count` audit entries."""
        while len([e for e in self.entries if "MESSAGE_ID" in e]) < count:
            self.entries.append(decode(self.sock.recv(65536)))
        return [e for e in self.entries if "MESSAGE_ID" in e]

    def close(self):
        self.sock.close()


@pytest.fixture
def journal(tmp_path):
    j = FakeJournal(tmp_path / "journal.socket")
    yield j
    j.close()


def test_the_datagram_has_both_forms_and_a_secret_never_shows():
    fields = audit.daemon_entry(0, "Users1.Create", ["bad\nname", PASSWORD], "org.selfprivacy.Error.InvalidArgument")
    data = audit.encode(fields)
    assert decode(data) == fields and PASSWORD.encode() not in data
    assert b"SPD_TARGET\n" + struct.pack("<Q", 8) + b"bad\nname\n" in data
    assert fields["MESSAGE"] == 'uid 0 (root) created user "bad\\nname": InvalidArgument'  # one line
    assert (fields["PRIORITY"], fields["SPD_RESULT"], fields["MESSAGE_ID"]) == ("4", "InvalidArgument", audit.DAEMON_ID)
    key = audit.daemon_entry(1000, "SSH1.AddKey", ["user1", KEY], "ok")
    assert key["SPD_TARGET"] == KEY_FINGERPRINT and KEY_BODY not in str(key) and key["PRIORITY"] == "5"
    tokens = audit.daemon_entry(0, "Backups1.SetBackblazeConfig", ["acct", "b2-secret-key", "bucket"], "ok")
    assert "b2-secret-key" not in str(tokens) and tokens["SPD_TARGET"] == "bucket"


def test_every_change_member_of_the_daemon_says_what_it_does():
    r = subprocess.run([PYTHON, "-m", "spd.dbus.rules"], capture_output=True, text=True, cwd=REPO,
                       env=env_for_children(), check=True)
    rows = [line.split() for line in r.stdout.splitlines()[1:]]
    changes = {f"{row[0].rpartition('.')[2]}.{row[1]}" for row in rows if row[-1] == "logged"}
    assert changes == set(audit.ACTS)


def test_each_change_is_one_structured_entry(bus, root, tmp_path, journal):
    env = {"SPD_JOURNAL_SOCKET": journal.path}
    daemon = Daemon(bus, root, tmp_path, env={**env, **journal_env(tmp_path / "spd.log")})
    gateway = Gateway(bus, tmp_path, env={**env, **journal_env(tmp_path / "gateway.log")})
    try:
        with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            assert api.post("/users", json={"username": "auditee", "password": PASSWORD}).status_code == 201
            assert api.post("/users", json={"username": "auditee", "password": PASSWORD}).status_code == 409
            assert api.post("/services/ssh/keys/user1", json={"public_key": KEY}).status_code == 201
            assert httpx.post(f"{gateway.url}/users", json={"username": "x", "password": PASSWORD},
                              headers={"Authorization": "Bearer wrong"}).status_code == 401  # no device: none
            assert api.put("/system/configuration/timezone", json={"timezone": "Europe/Berlin"}).status_code == 200
        busctl(bus, "call", BUS_NAME, PATH, SYSTEM, "SetTimezone", "s", "Europe/Paris")  # root, as an operator
        entries = journal.wait(9)  # the gateway runs as root here: spd writes its own entry for each call too
    finally:
        gateway.stop()
        assert daemon.stop() == 0
    by_gateway = [e for e in entries if e["MESSAGE_ID"] == audit.GATEWAY_ID]
    assert [(e["SPD_ROUTE"], e["SPD_STATUS"], e["SPD_ACTION"], e["SPD_TARGET"], e["SPD_RESULT"], e["PRIORITY"])
            for e in by_gateway] == [
        ("POST /users", "201", "Users1.Create", "auditee", "ok", "5"),
        ("POST /users", "409", "Users1.Create", "auditee", "AlreadyExists", "4"),
        ("POST /services/ssh/keys/<username>", "201", "SSH1.AddKey", KEY_FINGERPRINT, "ok", "5"),
        ("PUT /system/configuration/timezone", "200", "System1.SetTimezone", "Europe/Berlin", "ok", "5")]
    assert by_gateway[0]["MESSAGE"] == 'device "primary_token" created user "auditee" (201)'
    assert {e["SPD_DEVICE"] for e in by_gateway} == {"primary_token"}
    by_spd = [e for e in entries if e["MESSAGE_ID"] == audit.DAEMON_ID]
    assert [(e["SPD_ACTION"], e["SPD_TARGET"], e["SPD_RESULT"], e["SPD_UID"]) for e in by_spd][-1] == \
        ("System1.SetTimezone", "Europe/Paris", "ok", "0")
    assert by_spd[-1]["MESSAGE"] == 'uid 0 (root) set the timezone to "Europe/Paris": ok'
    for e in entries:
        assert PASSWORD not in str(e) and TOKEN not in str(e) and KEY_BODY not in str(e)
    # the entries went to the journal, not also as text lines
    assert "request=" not in gateway.process.log() and "call=" not in daemon.process.log()


def test_without_the_journal_the_text_line(bus, root, tmp_path, journal):
    """The socket gone (or stderr not the journal): the text line of before, nothing lost."""
    daemon = Daemon(bus, root, tmp_path, env={"SPD_JOURNAL_SOCKET": journal.path,
                                              **journal_env(tmp_path / "spd.log")})
    try:
        set_zone = ("call", BUS_NAME, PATH, SYSTEM, "SetTimezone", "s")
        busctl(bus, *set_zone, "Europe/Paris")
        assert journal.wait(1)[0]["SPD_TARGET"] == "Europe/Paris"
        journal.close()
        journal.path.unlink()
        busctl(bus, *set_zone, "Europe/Rome")
        daemon.process.wait_for_log(f"<6>spd.access: INFO: uid=0 call={SYSTEM}.SetTimezone result=ok")
    finally:
        assert daemon.stop() == 0


def test_spdctl_log_prints_entries_escaped():
    """What journalctl -o json gives, as spdctl log shows it (the booted container reads the real one)."""
    fields = audit.gateway_entry("pixel\x1b[31m", "POST /users", 201, ["Users1.Create"], "bob\nx", "ok")
    entry = commands._entry({**fields, "__REALTIME_TIMESTAMP": str(int(time.time() * 1e6)),
                             "SPD_TARGET": list(b"bob\nx")})
    assert (entry["who"], entry["action"], entry["target"], entry["result"]) == \
        ('device "pixel\x1b[31m"', "Users1.Create", "bob\nx", "ok")
    assert commands._printable(entry["who"]) == 'device "pixel\\x1b[31m"'
    assert commands._printable(entry["target"]) == "bob\\nx"


def test_a_message_holds_no_control_character_a_caller_chose():
    """A username or zone is the caller's text: in MESSAGE every character that is not printable
    (C0, DEL, C1, bidi controls) is escaped, as a reader of the journal would print it raw."""
    from spd.runtime import audit

    hostile = "a\x1b]0;owned\x07\x7f\x9b\u202eb"
    entry = audit.daemon_entry(1000, "System1.SetTimezone", [hostile], "ok")
    assert all(c.isprintable() for c in entry["MESSAGE"]), entry["MESSAGE"]
    assert "\\u001b]0;owned\\u0007\\u007f\\u009b\\u202eb" in entry["MESSAGE"]
