"""polkit for callers that are neither root nor the gateway's group (live-and-local.md §5): the shipped
action file, and the daemon asking python-dbusmock's polkitd, with the client running as nobody."""

import asyncio
import collections
import re
import shutil
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from dbus_fast.aio import MessageBus

from deploy_helpers import (AS_GATEWAY_GROUP, AS_NOBODY, SYSTEM_POLICY, ensure_gateway_group,
                            policy_copy, run_client)
from spd.contract import PROPERTIES, SYSTEM, TOKENS, USERS
from spd.dbus.polkit import Checks
from stack import BUS_NAME, PATH, PYTHON, REPO, TOKEN, Bus, Daemon, Process, busctl, env_for_children
from strangers_helpers import NAMES
from userdata_helpers import userdata_path

POLICY_FILE = REPO / "data" / "polkit-1" / "actions" / "org.selfprivacy.policy"
DTD = Path("/usr/share/polkit-1/policyconfig-1.dtd")
ACTIONS = {"org.selfprivacy.read", "org.selfprivacy.users.manage", "org.selfprivacy.ssh.manage",
           "org.selfprivacy.services.manage", "org.selfprivacy.system.manage",
           "org.selfprivacy.system.reboot", "org.selfprivacy.backups.manage",
           "org.selfprivacy.tokens.manage"}
POLKIT = "org.freedesktop.PolicyKit1"
AUTHORITY = "/org/freedesktop/PolicyKit1/Authority"
MOCK = "org.freedesktop.DBus.Mock"
DENIED = "org.selfprivacy.Error.AccessDenied"
INTERACTIVE_REQUIRED = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
ALLOW_INTERACTIVE = 0x4

READ = {"interface": PROPERTIES, "member": "Get", "signature": "ss", "args": [SYSTEM, "Timezone"]}
CREATE = {"interface": USERS, "member": "Create", "signature": "ss", "args": ["carol", "s3cret pw"]}
TOKEN_LIST = {"interface": PROPERTIES, "member": "Get", "signature": "ss", "args": [TOKENS, "Devices"]}
REBOOT = {"interface": SYSTEM, "member": "Reboot", "signature": "", "args": []}
WHO = {"unique_name": True}


# --- the shipped action file ------------------------------------------------------------------------

def test_policy_file_is_valid_against_polkits_dtd():
    assert DTD.exists(), "polkitd ships the DTD (scripts/setup installs it)"
    r = subprocess.run(["xmllint", "--noout", "--dtdvalid", str(DTD), str(POLICY_FILE)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_policy_file_names_exactly_the_actions_and_their_defaults():
    actions = ET.parse(POLICY_FILE).getroot().findall("action")
    assert {a.get("id") for a in actions} == ACTIONS and len(actions) == len(ACTIONS)
    for a in actions:
        assert a.findtext("description").strip() and a.findtext("message").strip().endswith(".")
        defaults = a.find("defaults")
        # an administrator over SSH (no active local session) gets in with a password, as timedated's
        assert [defaults.findtext(k) for k in ("allow_any", "allow_inactive", "allow_active")] == \
            ["auth_admin_keep"] * 3, a.get("id")


def member_actions() -> dict:
    """"Interface.Member" -> the polkit action its rule names, as `python -m spd.dbus.rules` prints."""
    r = subprocess.run([PYTHON, "-m", "spd.dbus.rules"], capture_output=True, text=True, cwd=REPO,
                       env=env_for_children(), check=True)
    rows = [line.split() for line in r.stdout.splitlines()[1:]]
    return {f"{row[0]}.{row[1]}": row[4] for row in rows}


def test_every_action_the_daemon_asks_for_is_shipped():
    assert set(member_actions().values()) == ACTIONS


# --- the daemon asking polkit --------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def gateway_group():
    ensure_gateway_group()


@pytest.fixture
def shared_bus(tmp_path):
    """A bus with the system bus's default policy and the shipped system.d, in a folder nobody can
    reach."""
    where = Path(tempfile.mkdtemp(prefix="spd-test-"))
    where.chmod(0o755)
    b = Bus(where / "bus", policy=SYSTEM_POLICY + POLKIT_OWNER,
            includedir=policy_copy(tmp_path / "system.d"))
    yield b
    b.stop()
    shutil.rmtree(where, ignore_errors=True)


# The stand-ins of polkitd, systemd and logind may own their names and be called, as their own
# system.d files allow.
POLKIT_OWNER = "".join(f"""
  <policy user="root"><allow own="{name}"/></policy>
  <policy context="default"><allow send_destination="{name}"/></policy>"""
                       for name in (POLKIT, "org.freedesktop.systemd1", "org.freedesktop.login1"))


@pytest.fixture
def spd(shared_bus, root, tmp_path):
    d = Daemon(shared_bus, root, tmp_path)
    yield d
    code = d.stop()
    assert "Traceback" not in d.process.log()
    assert code == 0, d.process.log()


@pytest.fixture
def polkitd(shared_bus, tmp_path):
    """python-dbusmock's polkitd template: denies everything until told otherwise."""
    p = Process("polkitd-mock", [PYTHON, "-m", "dbusmock", "--system", "--template", "polkitd"],
                tmp_path / "polkitd.log", env=env_for_children(DBUS_SYSTEM_BUS_ADDRESS=shared_bus.address))
    deadline = time.monotonic() + 15
    while not busctl(shared_bus, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                     "org.freedesktop.DBus", "NameHasOwner", "s", POLKIT)["data"][0]:
        assert p.alive() and time.monotonic() < deadline, p.log()
        time.sleep(0.1)
    yield p
    p.stop()


def mock(bus, member, signature="", *args):
    return busctl(bus, "call", POLKIT, AUTHORITY, MOCK, member, *([signature, *args] if signature else []))


def checks(bus) -> list:
    """(subject, action, flags) of every CheckAuthorization the mock answered."""
    calls = mock(bus, "GetMethodCalls", "s", "CheckAuthorization")["data"][0]
    out = []
    for _, args in calls:
        subject, action, _details, flags, _cancel = (a["data"] if isinstance(a, dict) else a for a in args)
        out.append((subject, action, flags))
    return out


def test_polkit_allows_what_it_allows_and_denies_the_rest(shared_bus, spd, polkitd):
    mock(shared_bus, "SetAllowed", "as", 1, "org.selfprivacy.read")
    read, create, tokens, reboot = run_client(shared_bus, AS_NOBODY, [READ, CREATE, TOKEN_LIST, REBOOT])
    assert read[0] == "ok" and read[1][0]  # the timezone
    assert create[0] == DENIED and "org.selfprivacy.users.manage" in create[1], create
    assert tokens[0] == DENIED and "org.selfprivacy.tokens.manage" in tokens[1], tokens
    assert reboot[0] == DENIED and "org.selfprivacy.system.reboot" in reboot[1], reboot
    assert "carol" not in userdata_path(spd.root).read_text()
    # Once polkit allows it, the same change goes through.
    mock(shared_bus, "SetAllowed", "as", 2, "org.selfprivacy.read", "org.selfprivacy.users.manage")
    created, = run_client(shared_bus, AS_NOBODY, [CREATE])
    assert created == ["ok", []]
    listed, = run_client(shared_bus, AS_NOBODY, [{"interface": PROPERTIES, "member": "Get", "signature": "ss",
                                                  "args": [USERS, "Users"]}])
    assert "carol" in listed[1][0]
    assert re.search(rf"uid=65534 call={USERS}.Create result=ok", spd.process.log())


def test_the_subject_is_the_callers_bus_name_and_interaction_follows_the_call(shared_bus, spd, polkitd):
    mock(shared_bus, "AllowUnknown", "b", "true")
    who, plain, interactive = run_client(shared_bus, AS_NOBODY,
                                         [WHO, READ, {**CREATE, "flags": ALLOW_INTERACTIVE}])
    assert plain[0] == "ok" and interactive[0] == "ok", (plain, interactive)
    seen = checks(shared_bus)
    assert len(seen) == 2
    for subject, _, _ in seen:
        kind, details = subject
        assert kind == "system-bus-name"
        assert details == {"name": {"type": "s", "data": who[1]}}  # the bus name, no PID
    assert [(a, f) for _, a, f in seen] == [("org.selfprivacy.read", 0),
                                             ("org.selfprivacy.users.manage", 1)]


def test_root_and_the_gateway_are_not_asked_about(shared_bus, spd, polkitd):
    for user in ([], AS_GATEWAY_GROUP):
        result, = run_client(shared_bus, user, [TOKEN_LIST])
        assert result[0] == "ok"
    assert checks(shared_bus) == []


def test_a_challenge_without_interaction_asks_for_it(shared_bus, spd, polkitd):
    # polkit would ask a person (auth_admin_keep): a challenge unless the caller allowed interaction.
    mock(shared_bus, "AddMethod", "sssss", "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization",
         "(sa{sv})sa{ss}us", "(bba{ss})",
         "ret = (True, False, {}) if args[3] & 1 else (False, True, {})")
    plain, interactive = run_client(shared_bus, AS_NOBODY, [READ, {**READ, "flags": ALLOW_INTERACTIVE}])
    assert plain[0] == INTERACTIVE_REQUIRED, plain
    assert interactive[0] == "ok", interactive


def test_polkit_missing_means_denied(shared_bus, spd):
    read, create = run_client(shared_bus, AS_NOBODY, [READ, CREATE])
    assert read[0] == DENIED and create[0] == DENIED, (read, create)
    assert "polkit" in read[1]


def test_other_callers_go_on_while_polkit_thinks(shared_bus, spd, polkitd):
    """A call waiting for polkit (say, for a password) holds up no one else."""
    mock(shared_bus, "SetAllowed", "as", 1, "org.selfprivacy.read")
    mock(shared_bus, "SimulateHangActions", "as", 1, "org.selfprivacy.users.manage")
    hung = _client_in_background(shared_bus, [CREATE])
    try:
        deadline = time.monotonic() + 15
        while not mock(shared_bus, "HaveHangingCalls")["data"][0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        read, = run_client(shared_bus, AS_NOBODY, [READ])  # answered while the other one waits
        root_read, = run_client(shared_bus, [], [READ])
        assert read[0] == "ok" and root_read[0] == "ok"
        assert hung.poll() is None
        mock(shared_bus, "ReleaseHangingCalls")
        out = hung.stdout.read()
        hung.wait(20)
        assert '"org.selfprivacy.Error.AccessDenied"' in out  # the mock said no to users.manage
    finally:
        if hung.poll() is None:
            hung.kill()


def _client_in_background(bus, calls) -> subprocess.Popen:
    import json
    import os

    from deploy_helpers import CLIENT
    from stack import BUS_NAME, PATH
    p = subprocess.Popen([*AS_NOBODY, PYTHON, "-c", CLIENT, bus.address, BUS_NAME, PATH],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/",
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    p.stdin.write(json.dumps(calls))
    p.stdin.close()
    return p


def test_each_member_asks_for_its_action():
    actions = member_actions()
    assert actions[f"{SYSTEM}.Timezone"] == "org.selfprivacy.read"
    assert actions[f"{SYSTEM}.SetTimezone"] == "org.selfprivacy.system.manage"
    assert actions[f"{SYSTEM}.Reboot"] == "org.selfprivacy.system.reboot"
    assert actions[f"{USERS}.Create"] == "org.selfprivacy.users.manage"
    assert actions[f"{TOKENS}.Devices"] == "org.selfprivacy.tokens.manage"  # reads too: credentials


def test_spdctl_as_nobody_gets_polkits_decision(shared_bus, spd, polkitd):
    mock(shared_bus, "SetAllowed", "as", 1, "org.selfprivacy.read")

    def spdctl(*args, input=None):
        return subprocess.run([*AS_NOBODY, PYTHON, "-m", "spdctl", "--no-ask-password", *args], input=input,
                              capture_output=True, text=True, timeout=60, cwd="/",
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "SPD_BUS": shared_bus.address})

    r = spdctl("users")
    assert r.returncode == 0 and r.stdout.split() == ["USER", "user1", "user2"], r.stderr
    r = spdctl("users", "add", "carol", "--password-stdin", input="pw\n")
    assert r.returncode == 1 and r.stderr.startswith("spdctl: Access denied by polkit"), r.stderr
    assert "org.selfprivacy.users.manage" in r.stderr
    assert [f for _, _, f in checks(shared_bus)] == [0, 0]  # --no-ask-password: no interaction


def test_spdctl_on_a_terminal_lets_polkit_ask(shared_bus, spd, polkitd):
    from test_spdctl import on_terminal
    mock(shared_bus, "SetAllowed", "as", 1, "org.selfprivacy.read")
    out, code = on_terminal(shared_bus, ["timezone"], [], user=AS_NOBODY)
    assert code == 0 and out.strip() == "Europe/Moscow", out
    assert [f for _, _, f in checks(shared_bus)] == [1]  # AllowUserInteraction: the call allowed it


def test_get_all_needs_the_strictest_action_of_its_properties(shared_bus, spd, polkitd):
    """Tokens1's properties are credentials (tokens.manage): read alone does not return them."""
    mock(shared_bus, "SetAllowed", "as", 1, "org.selfprivacy.read")
    get_all = lambda interface: {"interface": PROPERTIES, "member": "GetAll", "signature": "s", "args": [interface]}
    tokens, system = run_client(shared_bus, AS_NOBODY, [get_all(TOKENS), get_all(SYSTEM)])
    assert tokens[0] == DENIED and "org.selfprivacy.tokens.manage" in tokens[1], tokens
    assert system[0] == "ok" and "Timezone" in system[1][0], system
    assert [a for _, a, _ in checks(shared_bus)] == ["org.selfprivacy.tokens.manage", "org.selfprivacy.read"]


# --- a hung polkit starves no one ---------------------------------------------------------------

# As nobody: CONNECTIONS connections send CALLS calls each at once (a connection may itself wait for
# at most 128 replies), print each answer's error name (or "ok") as it comes, and leave at EOF on stdin.
FLOOD = NAMES + r"""
import asyncio, sys
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

async def main(address, connections, calls, flags):
    buses = [await MessageBus(bus_address=address).connect() for _ in range(connections)]
    async def one(bus):
        reply = await bus.call(Message(destination=BUS_NAME, path=PATH, interface=USERS, member="Create",
                                       signature="ss", body=["mallory", "pw"], flags=flags))
        print(reply.error_name if reply.message_type == MessageType.ERROR else "ok", flush=True)
    pending = [asyncio.ensure_future(one(b)) for b in buses for _ in range(calls)]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""
LIMITS_EXCEEDED = "org.freedesktop.DBus.Error.LimitsExceeded"
# The stand-in polkitd has no CancelCheckAuthorization: this one answers a hanging check (the oldest;
# the test compares the cancellation ids) with "not authorized", as polkitd ends a cancelled one.
CANCEL = ("if self.hanging_calls:\n    answer, _ = self.hanging_calls.pop(0)\n"
          "    answer((False, False, {}))")


def _flood(bus, connections: int, calls: int, flags: int) -> subprocess.Popen:
    return subprocess.Popen([*AS_NOBODY, PYTHON, "-c", FLOOD, bus.address, str(connections), str(calls),
                             str(flags)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/",
                            env={"PATH": "/usr/bin:/bin"})


def _lines(p: subprocess.Popen, count: int, timeout: float = 30) -> list:
    """The first `count` lines p prints, or those that came within `timeout` seconds."""
    lines = []

    def read():
        for line in p.stdout:
            lines.append(line.strip())
            if len(lines) == count:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return list(lines)


def _cancellation_ids(bus, member: str) -> list:
    calls = mock(bus, "GetMethodCalls", "s", member)["data"][0]
    return [args[-1]["data"] if isinstance(args[-1], dict) else args[-1] for _, args in calls]


def _wait_until(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_hung_polkit_and_a_flood_of_calls_starve_no_one(shared_bus, spd, polkitd, tmp_path):
    """polkit hangs on one action and nobody sends 300 calls that need it: spd keeps at most a few
    checks in flight for that uid (the rest refused at once), so the bus's 128 replies a connection
    may wait for stay free: apply and reboot through the gateway (its group) and root's own calls
    work during the flood and after, and the checks are cancelled once the caller left."""
    from systemd_helpers import LogindMock, SystemdMock
    from test_deploy import _gateway_as

    systemd, logind = SystemdMock(shared_bus, tmp_path), LogindMock(shared_bus, tmp_path)
    systemd.add_unit("sp-nixos-rebuild.service")
    mock(shared_bus, "SimulateHangActions", "as", 1, "org.selfprivacy.users.manage")
    mock(shared_bus, "AddMethod", "sssss", "org.freedesktop.PolicyKit1.Authority", "CancelCheckAuthorization",
         "s", "", CANCEL)
    where = Path(tempfile.mkdtemp(prefix="spd-test-"))
    where.chmod(0o755)
    gateway, url = _gateway_as(AS_GATEWAY_GROUP, shared_bus, where, tmp_path / "gateway.log")
    flood = _flood(shared_bus, 3, 100, ALLOW_INTERACTIVE)  # interactive: two minutes, or leaving, end them
    _, held, _ = Checks.LIMITS[True]  # what one uid may hold of interactive checks
    try:
        def everyone_works():
            headers = {"Authorization": f"Bearer {TOKEN}"}
            for path, body in (("/system/configuration/apply", 0), ("/system/reboot", "System reboot has started")):
                r = httpx.get(url + path, headers=headers, timeout=30)
                assert (r.status_code, r.json()) == (200, body), (path, r.text)
            assert busctl(shared_bus, "call", BUS_NAME, PATH, SYSTEM, "SetTimezone", "s", "Europe/Berlin") is None
            root_read, = run_client(shared_bus, [], [READ])
            assert root_read == ["ok", ["Europe/Berlin"]], root_read

        answers = _lines(flood, 300 - held)
        everyone_works()
        # The excess was refused at once, not after polkit.
        assert answers == [LIMITS_EXCEEDED] * (300 - held), collections.Counter(answers)
        assert mock(shared_bus, "HaveHangingCalls")["data"][0]
        hung = _cancellation_ids(shared_bus, "CheckAuthorization")
        assert len(hung) == held and all(hung), hung
        flood.stdin.close()  # the attacker leaves
        flood.wait(20)
        _wait_until(lambda: not mock(shared_bus, "HaveHangingCalls")["data"][0], "spd to cancel the checks")
        assert sorted(_cancellation_ids(shared_bus, "CancelCheckAuthorization")) == sorted(hung)
        everyone_works()
        assert len(logind.method_calls("Reboot")) == 2
        assert "by spd: Too many authorization checks in progress" in spd.process.log()
    finally:
        if flood.poll() is None:
            flood.kill()
        gateway.stop()
        systemd.stop()
        logind.stop()
        shutil.rmtree(where, ignore_errors=True)


def test_a_check_polkit_does_not_answer_in_time_is_refused_and_cancelled(shared_bus, spd, polkitd):
    mock(shared_bus, "SimulateHangActions", "as", 1, "org.selfprivacy.users.manage")
    mock(shared_bus, "AddMethod", "sssss", "org.freedesktop.PolicyKit1.Authority", "CancelCheckAuthorization",
         "s", "", CANCEL)
    create, = run_client(shared_bus, AS_NOBODY, [CREATE])  # not interactive: 10 s (Checks.LIMITS)
    assert create[0] == DENIED and "did not answer" in create[1], create
    _wait_until(lambda: not mock(shared_bus, "HaveHangingCalls")["data"][0], "spd to cancel the check")
    assert _cancellation_ids(shared_bus, "CancelCheckAuthorization") == _cancellation_ids(
        shared_bus, "CheckAuthorization")


def test_prompts_left_open_by_many_uids_leave_room_and_end_in_time(shared_bus, polkitd):
    """Callers whose own agents never answer hold interactive checks (polkit itself is fine): one per
    uid, half of all at most, so checks that ask no one still reach polkit; and each ends after its
    time limit, cancelled. In-process (Checks on a real bus, python-dbusmock's polkitd), with the
    interactive limit shortened to 2 s: the daemon's own is two minutes."""
    mock(shared_bus, "SimulateHangActions", "as", 1, "org.selfprivacy.users.manage")
    mock(shared_bus, "AddMethod", "sssss", "org.freedesktop.PolicyKit1.Authority", "CancelCheckAuthorization",
         "s", "", CANCEL)
    all_, per_uid, _ = Checks.LIMITS[True]
    manage, read = ("org.selfprivacy.users.manage",), ("org.selfprivacy.read",)

    async def scenario():
        bus = await MessageBus(bus_address=shared_bus.address).connect()
        caps = Checks(bus)
        caps.LIMITS = {**Checks.LIMITS, True: (all_, per_uid, 2.0)}
        me = bus.unique_name
        prompts = [asyncio.ensure_future(caps.check(me, uid, manage, True)) for uid in range(2000, 2000 + all_)]
        await asyncio.sleep(0.5)
        assert not any(p.done() for p in prompts) and len(caps) == all_
        refused = [await caps.check(me, 3000, manage, True),  # over half of all
                   await caps.check(me, 2000, manage, True)]  # that uid's prompt is open
        asked = await caps.check(me, 3000, read, False)  # asks no one: polkit answers at once
        ended = await asyncio.gather(*prompts)
        for _ in range(50):
            if not len(caps):
                break
            await asyncio.sleep(0.1)
        left = len(caps)
        bus.disconnect()
        return refused, asked, ended, left

    refused, asked, ended, left = asyncio.run(scenario())
    assert [r[0] for r in refused] == [LIMITS_EXCEEDED] * 2, refused
    assert asked == (DENIED, "Access denied by polkit: not authorized for org.selfprivacy.read"), asked
    assert all(e == (DENIED, "Access denied: polkit did not answer about org.selfprivacy.users.manage in time")
               for e in ended), ended
    assert left == 0  # every check was cancelled and answered
    assert len(_cancellation_ids(shared_bus, "CancelCheckAuthorization")) == all_


def test_no_check_starts_for_a_caller_that_left(shared_bus, polkitd):
    """A call that resumes after its caller's NameOwnerChanged (between two actions of a GetAll, or
    once its credentials came) is refused without asking polkit: no one would end that check."""
    async def scenario():
        bus = await MessageBus(bus_address=shared_bus.address).connect()
        caps = Checks(bus)
        caps.gone(":1.4242")
        refused = await caps.check(":1.4242", 2000, ("org.selfprivacy.read", "org.selfprivacy.tokens.manage"), False)
        asked = await caps.check(bus.unique_name, 2000, ("org.selfprivacy.read",), False)
        bus.disconnect()
        return refused, asked

    refused, asked = asyncio.run(scenario())
    assert refused == (DENIED, "Access denied: the caller left before polkit answered about org.selfprivacy.read")
    assert asked[0] == DENIED and "by polkit" in asked[1]  # another caller is still asked
    assert [action for _, action, _ in checks(shared_bus)] == ["org.selfprivacy.read"]
