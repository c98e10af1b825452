"""An administrator over SSH, and the audit trail, on a booted systemd (tests/container.py) with the
real polkitd and journald, for both brokers.

polkit: the shipped actions say auth_admin_keep for every kind of session, and Debian's polkitd makes
group sudo the administrators (/usr/share/polkit-1/rules.d/50-default.rules: addAdminRule
unix-group:sudo). spdctl runs in a login made with su on a pty: a logind session without a seat,
like an SSH login's not an active local one; spdctl starts pkttyagent, which asks for the password on
that terminal. Without --no-ask-password's interaction, setpriv's commands are in no session at all.

The audit trail (live-and-local.md §6): each change one journal entry with its fields, read back with
journalctl -o json; journald's per-unit rate limit is lowered here so that a flood of bad requests
would push the gateway's entries out if each of them wrote a line."""

import json
import shlex

import pytest

from container import BROKERS, PREFIX, booted
from stack import TOKEN

from spd.runtime import audit

SPDCTL = f"{PREFIX}/bin/spdctl"
ADMIN, ADMIN_PASSWORD = "admin", "Adm1n-Pw-7c2e"
OUTSIDER, OUTSIDER_PASSWORD = "outsider", "0utsider-Pw-91f"
NEW_PASSWORD = "N3w-User-Pw-55aa"
# journald's default interval with a small burst (journald scales it up by the free space, up to a few
# times): far below the flood's thousands of requests. The cached root says RateLimitBurst=0 (off).
RATE_LIMIT = "[Journal]\nRateLimitIntervalSec=30s\nRateLimitBurst=200\n"
FLOOD = 3000

# Runs in the container as the user: `spdctl ARGS...` on a pty, answering each password prompt with
# the next of the answers (JSON on argv[1]) once the prompt turned echo off (pkttyagent turns it off
# after its prompt, discarding what came before, as pexpect's waitnoecho knows); prints {"rc",
# "output"}. No answer left: the pty is closed.
PTY_DRIVER = r"""
import json, os, pty, re, select, sys, termios, time
answers, argv = json.loads(sys.argv[1]), sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
output, pending, deadline = b"", b"", time.monotonic() + 90
while time.monotonic() < deadline:
    ready, _, _ = select.select([fd], [], [], 1)
    if not ready:
        continue
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    output += data
    pending += data
    if re.search(rb"assword: ?$", pending):
        pending = b""
        if not answers:
            break
        while termios.tcgetattr(fd)[3] & termios.ECHO and time.monotonic() < deadline:
            time.sleep(0.05)
        os.write(fd, answers.pop(0).encode() + b"\n")
os.close(fd)
_, status = os.waitpid(pid, 0)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "output": output.decode(errors="replace")}))
"""


@pytest.fixture(scope="module", params=BROKERS)
def machine(request):
    with booted(request.param, files={"/etc/systemd/journald.conf.d/zz-rate-limit.conf": RATE_LIMIT}) as m:
        m.run(["useradd", "--create-home", "--groups", "sudo", ADMIN])
        m.run(["useradd", "--create-home", OUTSIDER])
        m.run(["chpasswd"], input=f"{ADMIN}:{ADMIN_PASSWORD}\n{OUTSIDER}:{OUTSIDER_PASSWORD}\n")
        yield m


def on_pty(machine, user, answers, *args) -> dict:
    """spdctl in a login of `user` on a pty: su opens a logind session through PAM (pam_systemd), with
    no seat, as sshd's is: not an active local one. pkttyagent registers for that session."""
    # --session-command: su -c would setsid() the command away from its terminal
    login = ["su", "--login", user, "--session-command", shlex.join([SPDCTL, *args])]
    r = machine.run([f"{PREFIX}/bin/python", "-c", PTY_DRIVER, json.dumps(answers), "/usr/bin/su", *login[1:]],
                    timeout=150)
    return json.loads(r.stdout)


def spdctl(machine, *args, user=None):
    return machine.run([SPDCTL, "--no-ask-password", *args], user=user, check=False, timeout=120)


def users(machine) -> list:
    return spdctl(machine, "users").stdout.split()[1:]


def uid(machine, user) -> str:
    return machine.run(["id", "-u", user]).stdout.strip()


def by_spd(machine, target, count=1):
    return machine.entries(f"MESSAGE_ID={audit.DAEMON_ID}", f"SPD_TARGET={target}", count=count)


def fields(entry, *names) -> tuple:
    return tuple(entry.get(n) for n in names)


# --- an administrator over SSH ---------------------------------------------------------------------

def test_an_admin_gets_in_with_their_password_on_spdctls_terminal(machine):
    r = on_pty(machine, ADMIN, [NEW_PASSWORD, NEW_PASSWORD, ADMIN_PASSWORD], "users", "add", "anna")
    assert r["rc"] == 0, r["output"]
    assert "AUTHENTICATING FOR org.selfprivacy.users.manage" in r["output"], r["output"]  # pkttyagent asked
    assert ADMIN_PASSWORD not in r["output"] and "anna" in users(machine)
    (entry,) = by_spd(machine, "anna")
    assert fields(entry, "SPD_ACTION", "SPD_RESULT", "SPD_UID", "PRIORITY", "_SYSTEMD_UNIT") == \
        ("Users1.Create", "ok", uid(machine, ADMIN), "5", "spd.service")
    assert entry["MESSAGE"] == f'uid {uid(machine, ADMIN)} ({ADMIN}) created user "anna": ok'


def test_an_admin_with_a_wrong_password_is_refused(machine):
    r = on_pty(machine, ADMIN, [NEW_PASSWORD, NEW_PASSWORD, "wrong", "wrong", "wrong"], "users", "add", "bert")
    assert r["rc"] == 1 and "spdctl: Access denied by polkit" in r["output"], r["output"]
    assert "bert" not in users(machine)
    (entry,) = by_spd(machine, "bert")
    assert fields(entry, "SPD_ACTION", "SPD_RESULT", "PRIORITY") == ("Users1.Create", "AccessDenied", "4")


def test_without_asking_an_admin_gets_interactive_authorization_required(machine):
    r = machine.run([SPDCTL, "--no-ask-password", "users", "add", "cleo", "--password-stdin"], user=ADMIN,
                    input=NEW_PASSWORD + "\n", check=False, timeout=120)
    assert (r.returncode, r.stderr) == (1, "spdctl: Authentication is required for org.selfprivacy.users.manage\n")
    assert "cleo" not in users(machine)
    (entry,) = by_spd(machine, "cleo")
    assert entry["SPD_RESULT"] == "InteractiveAuthorizationRequired"


def test_a_user_outside_the_admin_group_is_refused_either_way(machine):
    r = on_pty(machine, OUTSIDER, [NEW_PASSWORD, NEW_PASSWORD, OUTSIDER_PASSWORD] * 2, "users", "add", "dora")
    assert r["rc"] == 1, r["output"]
    assert f"Authenticating as: {ADMIN}" in r["output"], r["output"]  # an administrator's password, not theirs
    r = machine.run([SPDCTL, "--no-ask-password", "users", "add", "dora", "--password-stdin"], user=OUTSIDER,
                    input=NEW_PASSWORD + "\n", check=False, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("spdctl: Authentication is required"), r.stderr
    assert "dora" not in users(machine)


# --- the audit trail ----------------------------------------------------------------------------

def test_root_with_spdctl_leaves_one_entry(machine):
    assert spdctl(machine, "timezone", "Europe/Berlin").returncode == 0
    (entry,) = by_spd(machine, "Europe/Berlin")
    assert fields(entry, "SPD_ACTION", "SPD_RESULT", "SPD_UID", "PRIORITY", "MESSAGE") == \
        ("System1.SetTimezone", "ok", "0", "5", 'uid 0 (root) set the timezone to "Europe/Berlin": ok')


def test_a_change_through_the_gateway_is_the_gateways_entry_alone(machine):
    status, _ = machine.http("POST", "/users", {"username": "emil", "password": NEW_PASSWORD}, token=TOKEN)
    assert status == 201
    status, _ = machine.http("POST", "/users", {"username": "emil", "password": NEW_PASSWORD}, token=TOKEN)
    assert status == 409
    found = machine.entries("SPD_DEVICE=primary_token", "SPD_TARGET=emil", count=2)  # what one device did
    assert [fields(e, "MESSAGE_ID", "SPD_ACTION", "SPD_ROUTE", "SPD_STATUS", "SPD_RESULT", "PRIORITY",
                   "_SYSTEMD_UNIT") for e in found] == [
        (audit.GATEWAY_ID, "Users1.Create", "POST /users", "201", "ok", "5", "spd-gateway.service"),
        (audit.GATEWAY_ID, "Users1.Create", "POST /users", "409", "AlreadyExists", "4", "spd-gateway.service")]
    assert found[0]["MESSAGE"] == 'device "primary_token" created user "emil" (201)'
    assert by_spd(machine, "emil") == []  # spd writes none for the gateway's calls
    everything = machine.journal("-o", "json")
    assert NEW_PASSWORD not in everything and TOKEN not in everything and ADMIN_PASSWORD not in everything


def test_spdctl_log_shows_the_trail_oldest_first(machine):
    r = machine.run([SPDCTL, "log"])
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows[0] == ["TIME", "WHO", "ACTION", "TARGET", "RESULT"]
    assert ["uid", "0", "(root)", "System1.SetTimezone", "Europe/Berlin", "ok"] in [row[2:] for row in rows], r.stdout
    logged = json.loads(machine.run([SPDCTL, "log", "--json", "--since=-1h"]).stdout)
    emil = [e for e in logged if e["target"] == "emil"]
    assert [(e["who"], e["action"], e["result"], e["status"]) for e in emil] == \
        [('device "primary_token"', "Users1.Create", "ok", "201"),
         ('device "primary_token"', "Users1.Create", "AlreadyExists", "409")]
    assert logged.index(emil[0]) > logged.index(next(e for e in logged if e["target"] == "Europe/Berlin"))
    assert spdctl(machine, "log", "--since", "not a time").returncode == 1


def test_a_flood_of_bad_requests_does_not_push_the_entries_out(machine):
    flood = [{"method": "POST", "path": "/users", "json": {"username": "x", "password": "y"}, "token": "wrong"},
             {"method": "PUT", "path": "/system/configuration/timezone", "json": {"timezone": "UTC"}},
             {"method": "GET", "path": "/no/such/route", "token": TOKEN}] * (FLOOD // 3)
    answers = machine.http_batch(flood, timeout=600)
    assert {a["status"] for a in answers} <= {401, 404, 429}, {a["status"] for a in answers}
    status, _ = machine.http("PUT", "/system/configuration/timezone", {"timezone": "Asia/Tokyo"}, token=TOKEN)
    assert status == 200
    (entry,) = machine.entries(f"MESSAGE_ID={audit.GATEWAY_ID}", "SPD_TARGET=Asia/Tokyo")
    assert fields(entry, "SPD_DEVICE", "SPD_STATUS") == ("primary_token", "200")
    journald = machine.journal("-u", "systemd-journald", "-o", "cat")  # "Suppressed N messages from ..."
    assert not [line for line in journald.splitlines() if "Suppressed" in line and "spd" in line], journald
