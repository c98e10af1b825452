"""The deployment on a real systemd: Debian 12 booted in systemd-nspawn with spd installed as a package
would install it (tests/container.py), once with dbus-daemon and once with dbus-broker as the system bus.
Everything goes through the container's real bus, journal and HTTP port. The tests of one broker run in
file order on one boot; the reboot is last."""

import contextlib
import json
import re
import secrets
import sys
import threading
import time

import pytest

from container import BROKERS, PREFIX, Machine
from deploy_helpers import CLIENT
from stack import BUS_NAME, PATH, SECOND_TOKEN, TOKEN
from userdata_helpers import userdata_path

from spd.runtime import audit
from spd.contract import PROPERTIES, SYSTEM, TOKENS

DAEMON_UNIT, GATEWAY_UNIT, SOCKET_UNIT = "spd.service", "spd-gateway.service", "spd-gateway.socket"
USERDATA = str(userdata_path("/"))  # in the machine
REPOSITORY = "/var/lib/spd/restic-test"  # var/lib/spd is neither backed up nor restored
ACTIONS = {"apply": "sp-nixos-rebuild.service", "upgrade": "sp-nixos-upgrade.service",
           "rollback": "sp-nixos-rollback.service"}
FAILING = "rollback"  # its stand-in fails: a job result other than done


def _stand_in(unit: str, fails: bool) -> str:
    command = "/bin/sh -c 'echo stand-in %n ran; exit 1'" if fails else "/bin/sh -c 'echo stand-in %n ran'"
    return f"[Unit]\nDescription=stand-in for {unit}\n\n[Service]\nType=oneshot\nExecStart={command}\n"


FILES = {
    **{f"/etc/systemd/system/{unit}": _stand_in(unit, action == FAILING) for action, unit in ACTIONS.items()},
    f"/etc/systemd/system/{DAEMON_UNIT}.d/restic.conf":
        f"[Service]\nEnvironment=SPD_RESTIC_REPOSITORY={REPOSITORY}\n",
}
IDLE_EXEC = {DAEMON_UNIT: f"{PREFIX}/bin/spd --bus=system --idle-timeout=2",
             GATEWAY_UNIT: f"{PREFIX}/bin/spd-gateway --bus=system --idle-timeout=2"}
# A caller that is neither root nor the gateway and asks without interaction: polkit would ask for an
# administrator's password (auth_admin_keep for any session), so the answer is that challenge.
REFUSED = {"org.selfprivacy.Error.AccessDenied", "org.freedesktop.DBus.Error.AccessDenied",
           "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"}
GATEWAY_AUDIT, DAEMON_AUDIT = audit.GATEWAY_ID, audit.DAEMON_ID  # MESSAGE_IDs of the audit entries
AUDIT_LINE = re.compile(r"uid=\S+ call=|device=\S+ request=")  # the text lines without a journal
# The first test's setup may build the root file system (about 2 minutes, more on a busy machine).
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module", params=BROKERS)
def machine(request):
    """One boot per broker; `machine.secrets` collects every secret the tests send or receive."""
    m = Machine(request.param, FILES)
    m.secrets = {TOKEN, SECOND_TOKEN, "DEMO-RESTIC-PASSWORD", "DEMO-DB-PASSWORD", "DEMO-CLOUDFLARE-KEY",
                 "legacy-api-token-from-userdata"}
    built = m.timings["cache build"]
    print(f"\n{request.param}: root file system {'cached' if built is None else f'built in {built:.0f} s'}, "
          f"install {m.timings['install']:.1f} s, boot {m.timings['boot']:.1f} s")
    yield m
    m.close()


def ok(machine, method, path, body=None, token=TOKEN, status=200):
    got, answer = machine.http(method, path, body, token)
    assert got == status, f"{method} {path}: {got} {answer}"
    return answer


def active(machine, unit) -> str:
    return machine.systemctl("is-active", unit, check=False)


def wait(condition, what: str, timeout: float = 30, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(step)
    return result


def test_cold_start_through_both_activations(machine):
    assert active(machine, SOCKET_UNIT) == "active"
    assert active(machine, GATEWAY_UNIT) == "inactive" and active(machine, DAEMON_UNIT) == "inactive"
    (answer,) = machine.http_batch([{"method": "GET", "path": "/auth/tokens", "token": TOKEN}])
    print(f"{machine.broker}: cold start (socket + D-Bus activation + first answer) {answer['seconds'] * 1000:.0f} ms")
    assert answer["status"] == 200, (answer, machine.journal("-u", GATEWAY_UNIT, "-u", DAEMON_UNIT))
    assert sorted(t["name"] for t in answer["body"]) == ["primary_token", "second_token"]
    assert active(machine, GATEWAY_UNIT) == "active" and active(machine, DAEMON_UNIT) == "active"
    # The gateway runs as its own static user (a DynamicUser= gateway gets every bus connection reset
    # by dbus-daemon: 503 everywhere), in the group the bus policy and spd let through.
    assert machine.systemctl("show", "-p", "DynamicUser", "--value", GATEWAY_UNIT) == "no"
    pid = machine.systemctl("show", "-p", "MainPID", "--value", GATEWAY_UNIT)
    status = machine.run(["cat", f"/proc/{pid}/status"]).stdout
    uid = machine.run(["id", "-u", "spd-gateway"]).stdout.strip()
    gid = machine.run(["getent", "group", "selfprivacy-api"]).stdout.split(":")[2]
    assert re.search(rf"^Uid:\s+{uid}\s", status, re.M) and uid != "0"
    assert gid in re.search(r"^Groups:(.*)$", status, re.M).group(1).split()


def test_every_route_family(machine):
    s = machine.secrets
    assert ok(machine, "GET", "/api/version", token=None)["version"].startswith("1.2")
    assert "paths" in ok(machine, "GET", "/api/swagger.json", token=None)
    # tokens: a new device by mnemonic, a recovery key redeemed, that device deleted again
    words = ok(machine, "POST", "/auth/new_device")["token"]
    device = ok(machine, "POST", "/auth/new_device/authorize", {"token": words, "device": "systest"},
                token=None)["token"]
    recovery = ok(machine, "POST", "/auth/recovery_token", {"uses": 1})["token"]
    second = ok(machine, "POST", "/auth/recovery_token/use", {"token": recovery, "device": "systest2"},
                token=None)["token"]
    s.update([words, device, recovery, second])
    assert ok(machine, "GET", "/auth/recovery_token")["uses_left"] == 0
    names = {t["name"] for t in ok(machine, "GET", "/auth/tokens", token=device)}
    assert {"systest", "systest2"} <= names
    ok(machine, "DELETE", "/auth/tokens", {"token_name": "systest2"}, token=device)
    assert machine.http("GET", "/auth/tokens", token=second)[0] == 401
    # users: the hash comes from the container's real mkpasswd
    password = secrets.token_urlsafe(16)
    s.add(password)
    ok(machine, "POST", "/users", {"username": "systest", "password": password}, status=201)
    assert "systest" in ok(machine, "GET", "/users")
    userdata = json.loads(machine.run(["cat", USERDATA]).stdout)
    (entry,) = [u for u in userdata["users"] if u["username"] == "systest"]
    assert entry["hashedPassword"].startswith("$6$")
    # ssh
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPP56BVBjHNwYn/m8ynDdGYWr1MQeI6P6zK99m7WeSHT systest"
    ok(machine, "POST", "/services/ssh/keys/systest", {"public_key": key}, status=201)
    assert ok(machine, "GET", "/services/ssh/keys/systest") == [key]
    ok(machine, "PUT", "/services/ssh", {"passwordAuthentication": False})
    assert ok(machine, "GET", "/services/ssh") == {"enable": True, "passwordAuthentication": False}
    ok(machine, "DELETE", "/users/systest")
    # services: their state from the real systemd (none of them is installed here: 4, no such unit)
    ok(machine, "POST", "/services/gitea/enable")
    assert json.loads(machine.run(["cat", USERDATA]).stdout)["gitea"]["enable"]
    assert set(ok(machine, "GET", "/services/status").values()) == {4}
    assert ok(machine, "GET", "/services/mailserver/dkim")
    # system
    ok(machine, "PUT", "/system/configuration/timezone", {"timezone": "Europe/Berlin"})
    assert ok(machine, "GET", "/system/configuration/timezone") == "Europe/Berlin"
    ok(machine, "PUT", "/system/configuration/autoUpgrade", {"allowReboot": True})
    assert ok(machine, "GET", "/system/configuration/autoUpgrade") == {"enable": True, "allowReboot": True}
    uname = machine.run(["uname", "-a"]).stdout.strip()
    assert ok(machine, "GET", "/system/version") == {"system_version": uname}
    assert ok(machine, "GET", "/system/pythonVersion") == machine.run([f"{PREFIX}/bin/python", "-V"]).stdout.strip()
    assert ok(machine, "GET", "/system/configuration/pull")["status"] == 0


def test_backup_and_restore_with_restic(machine):
    file, newer = "/var/lib/nextcloud/readme.txt", "/var/lib/nextcloud/newer.txt"
    before = machine.run(["cat", file]).stdout
    ok(machine, "PUT", "/services/restic/backup/create")

    def idle_with_snapshots():
        status = ok(machine, "GET", "/services/restic/backup/status")
        assert status["status"] != "ERROR", status
        return status["status"] == "INITIALIZED" and ok(machine, "GET", "/services/restic/backup/list")

    snapshots = wait(idle_with_snapshots, "the backup to finish", 120, 0.5)
    assert len(snapshots) == 1 and snapshots[0]["paths"] == ["/var"], snapshots
    # the restic password file of each run goes to RuntimeDirectory= (spd/restic.py): a 0700 tmpfs folder
    pid = machine.systemctl("show", "-p", "MainPID", "--value", DAEMON_UNIT)
    environ = machine.run(["cat", f"/proc/{pid}/environ"]).stdout.split("\0")
    assert "RUNTIME_DIRECTORY=/run/spd" in environ, environ
    assert machine.run(["stat", "-c", "%a %U", "/run/spd"]).stdout.split() == ["700", "root"]
    assert machine.run(["test", "-f", f"{REPOSITORY}/config"]).returncode == 0
    machine.write(file, "changed after the backup\n")
    machine.write(newer, "made after the backup\n")
    ok(machine, "PUT", "/services/restic/backup/restore", {"backupId": snapshots[0]["short_id"]})
    wait(lambda: ok(machine, "GET", "/services/restic/backup/status")["status"] == "INITIALIZED",
         "the restore to finish", 120, 0.5)
    assert machine.run(["cat", file]).stdout == before
    assert machine.run(["cat", newer]).stdout == "made after the backup\n"  # a restore deletes nothing newer


# Waits for the restic backup and its lock in the repository, then stops it (SIGSTOP) and prints its
# pid. Not at once: restic notes a lock it made for its clean-up a moment after writing it,
# and leaves one it had not noted yet on any signal. (Processes are found by name: the repository's
# path has "restic" in it too.)
_CATCH_RESTIC = f"""
for i in $(seq 20000); do
  for p in $(pgrep -x restic); do
    if tr '\\0' ' ' < /proc/$p/cmdline | grep -q ' backup ' && [ -n "$(ls {REPOSITORY}/locks)" ]; then
      sleep 0.3
      kill -STOP $p
      [ -n "$(ls {REPOSITORY}/locks)" ] && echo $p && exit 0
      kill -CONT $p; exit 2
    fi
  done
done
exit 1
"""


def test_a_stop_during_a_backup_leaves_no_restic_lock(machine):
    """KillMode=mixed: systemd signals spd alone, spd stops restic with SIGINT, and restic removes its
    lock (the Debian 12 restic, 0.14, leaves it when it gets systemd's SIGTERM). restic is held stopped
    (SIGSTOP) meanwhile, so that the stop surely comes while it runs; it goes on once let go. 64 MiB of
    new data make the backup last long enough to be caught."""
    machine.run(["sh", "-c", "head -c 64M /dev/urandom > /var/lib/nextcloud/big.bin"])
    machine.systemctl("restart", DAEMON_UNIT)
    wait(lambda: ok(machine, "GET", "/services/restic/backup/status")["status"] == "INITIALIZED",
         "spd to have looked at the repository", 60, 0.25)
    caught = []
    catcher = threading.Thread(target=lambda: caught.append(
        machine.run(["sh", "-c", _CATCH_RESTIC], check=False, timeout=120)))
    catcher.start()
    time.sleep(0.2)
    try:
        ok(machine, "PUT", "/services/restic/backup/create")
    finally:
        catcher.join()
    (r,) = caught
    assert r.returncode == 0, f"restic was not caught holding its lock ({r.returncode}): {r.stdout} {r.stderr}"
    restic = r.stdout.strip()
    stopping = threading.Thread(target=lambda: machine.systemctl("stop", DAEMON_UNIT))
    stopping.start()
    time.sleep(1.5)  # systemd has signalled what it signals; spd has sent restic its SIGINT
    machine.run(["kill", "-CONT", restic], check=False)  # (gone already if systemd killed it)
    stopping.join(60)
    assert active(machine, DAEMON_UNIT) == "inactive"
    assert not machine.run(["pgrep", "-x", "restic"], check=False).stdout.strip()
    locks = machine.run(["ls", f"{REPOSITORY}/locks"]).stdout.split()
    assert not locks, f"restic left its lock: {locks}\n" + machine.journal("-u", DAEMON_UNIT, "-n", "30")
    ok(machine, "GET", "/services/restic/backup/list")  # and spd starts again on the next call


def jobs(machine) -> dict:
    out = machine.run(["busctl", "--json=short", "get-property", BUS_NAME, PATH, SYSTEM, "Jobs"]).stdout
    return json.loads(out)["data"]


def test_actions_end_in_real_job_results(machine):
    for action in ACTIONS:
        assert ok(machine, "GET", f"/system/configuration/{action}") == 0
    done = wait(lambda: (j := jobs(machine)) and all(r != "running" for _, r in j.values()) and j,
                "the jobs to finish")
    assert {a: r for a, (_, r) in done.items()} == {"apply": "done", "upgrade": "done", "rollback": "failed"}
    for action, unit in ACTIONS.items():
        assert f"stand-in {unit} ran" in machine.journal("-u", unit, "-o", "cat")


def test_daemon_killed_under_load(machine):
    """Users created by 4 clients while spd is SIGKILLed: every answer 2xx, 4xx or 503; every user
    acknowledged with a 201 is there afterwards."""
    password = secrets.token_urlsafe(16)
    machine.secrets.add(password)
    results = []
    load = threading.Thread(target=lambda: results.extend(machine.run(
        [sys.executable, "-c", _LOAD], input=json.dumps([password, TOKEN]), namespaces=("-n",),
        timeout=120).stdout.split("\n")))
    load.start()
    time.sleep(1.5)
    main_pid = machine.systemctl("show", "-p", "MainPID", "--value", DAEMON_UNIT)
    machine.systemctl("kill", "-s", "KILL", DAEMON_UNIT)
    load.join()
    answers = [line.split() for line in results if line]
    statuses = [int(status) for _, status in answers]
    print(f"{machine.broker}: {len(answers)} creations under load, {statuses.count(201)} acknowledged, "
          f"{statuses.count(503)} answered 503")
    assert statuses.count(201) > 4 and all(200 <= s < 500 or s == 503 for s in statuses), statuses
    listed = ok(machine, "GET", "/users")
    lost = [name for name, status in answers if status == "201" and name not in listed]
    assert not lost, f"acknowledged but gone: {lost}"
    assert machine.systemctl("show", "-p", "MainPID", "--value", DAEMON_UNIT) not in ("0", main_pid)


@contextlib.contextmanager
def drop_ins(machine, name: str, texts: dict):
    """Drop-ins /etc/systemd/system/<unit>.d/<name>.conf ({unit: text}) for the next starts of the
    units (stopped now); removed afterwards, and the units stopped again: their next starts are as
    shipped."""
    paths = [f"/etc/systemd/system/{unit}.d/{name}.conf" for unit in texts]
    for path, text in zip(paths, texts.values()):
        machine.write(path, text)
    machine.systemctl("daemon-reload")
    machine.systemctl("stop", *texts)
    try:
        yield
    finally:
        machine.run(["rm", "-f", *paths])
        machine.systemctl("daemon-reload")
        machine.systemctl("stop", *texts)


def test_idle_exit_for_real(machine):
    with drop_ins(machine, "idle", {unit: f"[Service]\nExecStart=\nExecStart={command}\n"
                                    for unit, command in IDLE_EXEC.items()}):
        ok(machine, "GET", "/auth/tokens")
        wait(lambda: active(machine, GATEWAY_UNIT) == "inactive" and active(machine, DAEMON_UNIT) == "inactive",
             "both to leave when idle", 30, 0.25)
        left = machine.journal("-u", GATEWAY_UNIT, "-u", DAEMON_UNIT, "-o", "cat")
        assert left.count("idle for 2s: leaving") >= 2, left
        assert not machine.run(["pgrep", "-f", f"{PREFIX}/bin/spd"], check=False).stdout.strip()
        assert active(machine, SOCKET_UNIT) == "active"
        assert "127.0.0.1:5050" in machine.run(["ss", "-Hltn"]).stdout
        (answer,) = machine.http_batch([{"method": "GET", "path": "/auth/tokens", "token": TOKEN}])
        assert answer["status"] == 200, answer
        print(f"{machine.broker}: restart after idle exit (socket + D-Bus activation + answer) "
              f"{answer['seconds'] * 1000:.0f} ms")


def test_a_hung_daemon_and_gateway_are_restarted_by_the_watchdog(machine):
    """Both stopped (SIGSTOP: their loops hang): systemd misses the watchdog pings (spd/runtime/watchdog.py),
    kills them and starts them again; the next request is answered. 5-second drop-ins instead of the
    shipped 3 minutes."""
    units = (DAEMON_UNIT, GATEWAY_UNIT)
    watchdog = "[Service]\nWatchdogSec=5s\nTimeoutAbortSec=2s\n"
    with drop_ins(machine, "watchdog", {unit: watchdog for unit in units}):
        ok(machine, "GET", "/auth/tokens")
        cursor = re.search(r"cursor: (\S+)", machine.journal("-n", "0", "--show-cursor")).group(1)
        pids = {unit: machine.systemctl("show", "-p", "MainPID", "--value", unit) for unit in units}
        time.sleep(6)  # pinged meanwhile (every 2.5 s): not restarted
        assert {unit: machine.systemctl("show", "-p", "MainPID", "--value", unit) for unit in units} == pids
        for pid in pids.values():
            machine.run(["kill", "-STOP", pid])
        started = time.monotonic()
        wait(lambda: all(machine.systemctl("show", "-p", "MainPID", "--value", unit) not in ("0", pids[unit])
                         for unit in units), "both to be started again", 60, 0.25)
        print(f"{machine.broker}: hung daemon and gateway running again after {time.monotonic() - started:.1f} s")
        ok(machine, "GET", "/auth/tokens")
        entries = [json.loads(line) for line in
                   machine.journal(f"--after-cursor={cursor}", "-o", "json").splitlines()]
        for unit in units:  # systemd's own line, for each
            said = [e["MESSAGE"] for e in entries if e.get("UNIT") == unit or e.get("_SYSTEMD_UNIT") == unit]
            assert any("Watchdog timeout" in m for m in said), (unit, said)


def bus_calls(machine, user: str, calls: list) -> list:
    """D-Bus calls from a client running as `user` in the container, with the daemon's venv Python."""
    out = machine.run([f"{PREFIX}/bin/python", "-c", CLIENT, "unix:path=/run/dbus/system_bus_socket", BUS_NAME,
                       PATH], user=user, input=json.dumps(calls)).stdout
    return json.loads(out)


def test_bus_policy_refuses_nobody_and_lets_the_gateway_user_in(machine):
    zone = ok(machine, "GET", "/system/configuration/timezone")
    tokens = ok(machine, "GET", "/auth/tokens")
    calls = [{"interface": PROPERTIES, "member": "Get", "signature": "ss", "args": [TOKENS, "Devices"]},
             {"interface": SYSTEM, "member": "SetTimezone", "signature": "s", "args": ["Asia/Tokyo"]},
             {"interface": TOKENS, "member": "CreateNewDevice", "signature": "", "args": []}]
    refused = bus_calls(machine, "nobody", calls)
    assert all(outcome in REFUSED for outcome, _ in refused), refused
    assert ok(machine, "GET", "/system/configuration/timezone") == zone  # nothing changed
    assert ok(machine, "GET", "/auth/tokens") == tokens
    (listed,) = bus_calls(machine, "spd-gateway", calls[:1])
    assert listed[0] == "ok" and {n for n, _ in listed[1][0]} >= {"primary_token", "second_token"}, listed


def test_units_verify_and_are_hardened_as_loaded(machine):
    units = [f"/usr/lib/systemd/system/{u}" for u in (DAEMON_UNIT, GATEWAY_UNIT, SOCKET_UNIT)]
    r = machine.run(["systemd-analyze", "verify", "--man=no", *units], check=False)
    assert r.returncode == 0 and "spd" not in r.stdout + r.stderr, r.stdout + r.stderr
    for unit, threshold in ((GATEWAY_UNIT, 1.0), (DAEMON_UNIT, 3.0)):
        r = machine.run(["systemd-analyze", "security", "--no-pager", f"--threshold={round(threshold * 10)}",
                         unit], check=False)
        score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
        assert score, r.stdout + r.stderr
        print(f"{machine.broker}: {unit} exposure {score.group(1)} as loaded (threshold {threshold})")
        assert r.returncode == 0 and float(score.group(1)) <= threshold, r.stdout


def test_journal_one_audit_line_per_change(machine):
    cursor = re.search(r"cursor: (\S+)", machine.journal("-n", "0", "--show-cursor")).group(1)
    password = secrets.token_urlsafe(16)
    machine.secrets.add(password)
    ok(machine, "PUT", "/system/configuration/timezone", {"timezone": "America/Chicago"})
    ok(machine, "POST", "/users", {"username": "audited", "password": password}, status=201)
    ok(machine, "DELETE", "/users/audited")
    ok(machine, "GET", "/users")  # a read: no audit line
    entries = [json.loads(line) for line in machine.journal(f"--after-cursor={cursor}", "-o", "json").splitlines()]
    # spd/runtime/audit.py: one structured entry per change, the gateway's (spd writes none for its calls)
    found = [(e["_SYSTEMD_UNIT"], e["SPD_DEVICE"], e["SPD_ROUTE"], e["SPD_STATUS"], e["SPD_ACTION"], e["PRIORITY"])
             for e in entries if e.get("MESSAGE_ID") in (GATEWAY_AUDIT, DAEMON_AUDIT)]
    assert found == [(GATEWAY_UNIT, "primary_token", "PUT /system/configuration/timezone", "200",
                      "System1.SetTimezone", "5"),
                     (GATEWAY_UNIT, "primary_token", "POST /users", "201", "Users1.Create", "5"),
                     (GATEWAY_UNIT, "primary_token", "DELETE /users/<username>", "200", "Users1.Delete", "5")], entries
    assert not [e for e in entries if AUDIT_LINE.search(e.get("MESSAGE", ""))]  # no text line besides


def test_journal_holds_no_secret(machine):
    journal = machine.journal("-o", "json")
    assert len(journal) > 10000
    found = [secret for secret in machine.secrets if secret in journal]
    assert not found, f"in the journal: {found}"
    print(f"{machine.broker}: none of {len(machine.secrets)} secrets in {len(journal)} bytes of journal")
    ours = machine.journal("-u", DAEMON_UNIT, "-u", GATEWAY_UNIT, "-o", "cat")
    assert "Traceback" not in ours, ours[ours.index("Traceback") - 2000:][:6000]


def test_reboot_powers_the_container_off(machine):
    """Last: logind's Reboot ends the container (systemd-nspawn exits)."""
    ok(machine, "GET", "/system/reboot")
    seconds = machine.wait_powered_off(10)
    assert seconds is not None, "still running 10 s after GET /system/reboot"
    print(f"{machine.broker}: powered off {seconds:.1f} s after GET /system/reboot")


# 4 threads create users for 4 s; prints "name status" per answer (0: no answer).
_LOAD = r"""
import json, sys, threading, time
import httpx
password, token = json.load(sys.stdin)
out, end = [], time.monotonic() + 4
def worker(n):
    with httpx.Client(base_url="http://127.0.0.1:5050", timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as c:
        i = 0
        while time.monotonic() < end:
            name = f"load{n}x{i}"
            try:
                out.append((name, c.post("/users", json={"username": name, "password": password}).status_code))
            except httpx.TransportError:
                out.append((name, 0))
            i += 1
threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print("\n".join(f"{n} {s}" for n, s in out))
"""
