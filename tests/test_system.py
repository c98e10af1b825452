"""System1 and the /system routes, against python-dbusmock's systemd and logind on the test bus."""

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from stack import PYTHON, call, eventually, get_property
from systemd_helpers import MOCK, logind, systemd  # noqa: F401
from userdata_helpers import edit_in_place, userdata, userdata_path

from spd.contract import SYSTEM

UNITS = {"apply": "sp-nixos-rebuild.service", "upgrade": "sp-nixos-upgrade.service",
         "rollback": "sp-nixos-rollback.service"}


# --- rebuild / upgrade / rollback / reboot ------------------------------------------------------

def test_actions_start_their_units_and_track_the_jobs(systemd, api, bus, signals):
    for unit in UNITS.values():
        systemd.add_unit(unit)
    for action in ("apply", "upgrade", "rollback"):
        r = api.get(f"/system/configuration/{action}")
        assert r.status_code == 200, r.text
        assert r.json() == 0
    assert systemd.method_calls("StartUnit") == [
        [{"type": "s", "data": unit}, {"type": "s", "data": "replace"}] for unit in UNITS.values()]
    assert all(systemd.active_state(unit) == "active" for unit in UNITS.values())

    # Each job's result, from systemd's JobRemoved, is kept per action.
    deadline = time.monotonic() + 10
    while True:
        jobs = get_property(bus, SYSTEM, "Jobs")
        if all(result == "done" for _, result in jobs.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert set(jobs) == set(UNITS)
    assert all(result == "done" for _, result in jobs.values()), jobs
    assert len({path for path, _ in jobs.values()}) == 3
    # The same is announced with PropertiesChanged (a job may finish before or after its start
    # is announced, so the number of signals varies).
    # (a struct arrives as a tuple from dbus-fast 3 on, as a list before)
    expected = {action: tuple(job) for action, job in jobs.items()}
    signals.wait_for(lambda received: received and received[-1][0] == SYSTEM and list(received[-1][1]) == ["Jobs"]
                     and {a: tuple(job) for a, job in received[-1][1]["Jobs"].items()} == expected)


def test_an_action_over_dbus_returns_the_job(systemd, daemon, bus):
    systemd.add_unit(UNITS["rollback"])
    (job,) = call(bus, SYSTEM, "Rollback")
    assert job.startswith("/org/freedesktop/systemd1/Job/")
    assert systemd.method_calls("StartUnit") == [[{"type": "s", "data": UNITS["rollback"]},
                                                  {"type": "s", "data": "replace"}]]


def test_a_unit_systemd_refuses_is_a_clean_500(systemd, api):
    r = api.get("/system/configuration/upgrade")  # the mock has no such unit
    assert r.status_code == 500
    assert "sp-nixos-upgrade.service" in r.json()["error"]
    assert "Traceback" not in r.text and ".py" not in r.text


def test_reboot_asks_logind_without_interaction(logind, api):
    r = api.get("/system/reboot")
    assert r.status_code == 200, r.text
    assert r.json() == "System reboot has started"
    assert logind.method_calls("Reboot") == [[{"type": "b", "data": False}]]


def test_a_call_running_when_spd_is_stopped_is_still_answered(logind, daemon, bus):
    """A reboot stops every unit while the Reboot call that asked for it waits for logind's answer:
    spd's SIGTERM comes before it can reply. It answers the calls in flight, then leaves."""
    logind.call(MOCK, "AddMethod", "sssss", "org.freedesktop.login1.Manager", "Reboot", "b", "",
                "time.sleep(2)")  # logind answers late
    answers = []
    caller = threading.Thread(target=lambda: answers.append(call(bus, SYSTEM, "Reboot")))
    caller.start()
    time.sleep(1)  # the call is with logind by now
    daemon.process.proc.send_signal(signal.SIGTERM)
    caller.join(30)
    assert answers == [[]]
    assert daemon.process.proc.wait(10) == 0
    assert "reboot requested from logind" in daemon.process.log()


def test_actions_are_503_when_systemd_or_logind_is_not_on_the_bus(api, bus):
    for path in ("/system/configuration/apply", "/system/configuration/upgrade",
                 "/system/configuration/rollback", "/system/reboot"):
        r = api.get(path)
        assert r.status_code == 503, path
        assert ("logind" if path == "/system/reboot" else "systemd") in r.json()["error"]
    assert get_property(bus, SYSTEM, "Jobs") == {}


# --- versions ----------------------------------------------------------------------------------

def test_system_version_is_what_uname_prints(api):
    r = api.get("/system/version")
    assert r.status_code == 200
    expected = subprocess.run(["uname", "-a"], capture_output=True, text=True, check=True).stdout.strip()
    assert r.json() == {"system_version": expected}


def test_python_version(api):
    r = api.get("/system/pythonVersion")
    assert r.status_code == 200
    expected = subprocess.run([PYTHON, "-V"], capture_output=True, text=True, check=True).stdout.strip()
    assert re.fullmatch(r"Python 3\.\d+\.\d+", r.json())
    assert r.json() == expected


# --- timezone ----------------------------------------------------------------------------------

def test_timezone_defaults_when_unset(api, root):
    assert api.get("/system/configuration/timezone").json() == "Europe/Moscow"
    edit_in_place(root, lambda data: data.pop("timezone"))
    assert eventually(lambda: api.get("/system/configuration/timezone").json(), "Europe/Uzhgorod") \
        == "Europe/Uzhgorod"


def test_timezone_is_set_and_signalled_once(api, bus, root, signals):
    before = userdata(root)
    r = api.put("/system/configuration/timezone", json={"timezone": "America/Argentina/Buenos_Aires"})
    assert r.status_code == 200, r.text
    assert r.json() == "Timezone changed"
    assert userdata(root) == {**before, "timezone": "America/Argentina/Buenos_Aires"}
    assert api.get("/system/configuration/timezone").json() == "America/Argentina/Buenos_Aires"
    assert get_property(bus, SYSTEM, "Timezone") == "America/Argentina/Buenos_Aires"
    assert signals.wait(1) == [(SYSTEM, {"Timezone": "America/Argentina/Buenos_Aires"})]

    # The same value again: 200, no write, no signal (the next signal is the next real change).
    mtime = userdata_path(root).stat().st_mtime_ns
    assert api.put("/system/configuration/timezone",
                   json={"timezone": "America/Argentina/Buenos_Aires"}).status_code == 200
    assert userdata_path(root).stat().st_mtime_ns == mtime
    call(bus, SYSTEM, "SetTimezone", "s", "UTC")
    assert signals.wait(2)[1] == (SYSTEM, {"Timezone": "UTC"})
    assert len(signals.received) == 2


BAD_TIMEZONES = [
    {"timezone": "Mars/Olympus_Mons"}, {"timezone": "../../etc/passwd"}, {"timezone": "/etc/localtime"},
    {"timezone": "Europe/../Europe/Berlin"}, {"timezone": "localtime"}, {"timezone": "posixrules"},
    {"timezone": "europe/berlin"}, {"timezone": ""}, {"timezone": "Europe/Berlin\n"}, {"timezone": 3},
    {"timezone": None}, {}, {"timezone": "Europe/Berlin", "extra": 1}, ["Europe/Berlin"],
]


def test_bad_timezones_are_400_and_change_nothing(api, root):
    before = userdata_path(root).read_bytes()
    for body in BAD_TIMEZONES:
        r = api.put("/system/configuration/timezone", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]
    assert userdata_path(root).read_bytes() == before


def test_empty_body_is_400(api, root):
    before = userdata_path(root).read_bytes()
    r = api.put("/system/configuration/timezone", content=b"")
    assert r.status_code == 400
    assert "timezone" in r.json()["error"]
    assert userdata_path(root).read_bytes() == before


# --- auto-upgrade ------------------------------------------------------------------------------

def test_auto_upgrade_defaults(api, root):
    read = lambda: api.get("/system/configuration/autoUpgrade").json()  # noqa: E731
    edit_in_place(root, lambda data: data.pop("autoUpgrade"))
    assert eventually(read, {"enable": True, "allowReboot": False}) == {"enable": True, "allowReboot": False}
    edit_in_place(root, lambda data: data.__setitem__("autoUpgrade", {"allowReboot": True}))
    assert eventually(read, {"enable": True, "allowReboot": True}) == {"enable": True, "allowReboot": True}


def test_auto_upgrade_sets_only_the_fields_given(api, bus, root, signals):
    before = userdata(root)
    r = api.put("/system/configuration/autoUpgrade", json={"allowReboot": True})
    assert r.status_code == 200, r.text
    assert r.json() == "Auto-upgrade settings changed"
    assert userdata(root) == {**before, "autoUpgrade": {"enable": True, "allowReboot": True}}
    assert signals.wait(1) == [(SYSTEM, {"AllowReboot": True})]
    assert (get_property(bus, SYSTEM, "AutoUpgrade"), get_property(bus, SYSTEM, "AllowReboot")) == (True, True)

    # Same values: no signal. Then both at once: one signal with what changed.
    assert api.put("/system/configuration/autoUpgrade", json={"enable": True, "allowReboot": True}).status_code == 200
    assert api.put("/system/configuration/autoUpgrade", json={}).status_code == 200
    assert api.put("/system/configuration/autoUpgrade", json={"enable": False, "allowReboot": True}).status_code == 200
    assert signals.wait(2)[1] == (SYSTEM, {"AutoUpgrade": False})
    assert len(signals.received) == 2
    assert api.get("/system/configuration/autoUpgrade").json() == {"enable": False, "allowReboot": True}


def test_auto_upgrade_refuses_non_booleans(api, root):
    before = userdata_path(root).read_bytes()
    for body in ({"enable": "yes"}, {"allowReboot": 1}, {"enable": True, "reboot": True}, [True]):
        r = api.put("/system/configuration/autoUpgrade", json=body)
        assert r.status_code == 400, (body, r.text)
    assert userdata_path(root).read_bytes() == before


def test_auto_upgrade_settings_are_written_as_asked(api, bus, daemon, root):
    """Absent keys are written when set, even to what their absence means; each setting has its
    own Set method and property."""
    edit_in_place(root, lambda data: data.pop("autoUpgrade", None))
    assert api.get("/system/configuration/autoUpgrade").json() == {"enable": True, "allowReboot": False}
    assert api.put("/system/configuration/autoUpgrade", json={"enable": True}).status_code == 200
    assert userdata(root)["autoUpgrade"] == {"enable": True}
    call(bus, SYSTEM, "SetAllowReboot", "b", "false")
    assert userdata(root)["autoUpgrade"] == {"enable": True, "allowReboot": False}
    call(bus, SYSTEM, "SetAllowReboot", "b", "true")
    assert get_property(bus, SYSTEM, "AllowReboot") is True and get_property(bus, SYSTEM, "AutoUpgrade") is True


# --- pulling the NixOS configuration ----------------------------------------------------------

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org"}


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          env={**os.environ, **GIT_ENV}).stdout


@pytest.fixture
def upstream(tmp_path, root):
    """A bare upstream repository and a second clone to push from; root/etc/nixos tracks it."""
    up = tmp_path / "upstream.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(up))
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(up), str(work))
    git(work, "checkout", "-q", "-b", "main")
    (work / "configuration.nix").write_text("{ }\n")
    (work / ".gitignore").write_text("userdata/\n")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "initial")
    git(work, "push", "-q", "origin", "main")
    nixos = root / "etc/nixos"
    git(nixos, "init", "-q", "--initial-branch=main")
    git(nixos, "remote", "add", "origin", str(up))
    git(nixos, "fetch", "-q", "origin")
    git(nixos, "checkout", "-q", "-t", "origin/main")
    return up, work


def test_pull_brings_a_new_commit(upstream, api, root):
    up, work = upstream
    (work / "configuration.nix").write_text("{ services.gitea.enable = true; }\n")
    git(work, "commit", "-q", "-am", "enable gitea")
    git(work, "push", "-q", "origin", "main")
    r = api.get("/system/configuration/pull")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == 0 and body["message"]
    assert "configuration.nix" in body["data"] and "Fast-forward" in body["data"]
    assert (root / "etc/nixos/configuration.nix").read_text() == "{ services.gitea.enable = true; }\n"
    assert userdata_path(root).exists()

    # Nothing new is still a success.
    r = api.get("/system/configuration/pull")
    assert r.status_code == 200
    assert r.json()["status"] == 0 and "Already up to date" in r.json()["data"]


def test_pull_with_a_conflicting_local_change_is_500_with_gits_code(upstream, api, root):
    up, work = upstream
    (work / "configuration.nix").write_text("{ upstream = true; }\n")
    git(work, "commit", "-q", "-am", "upstream change")
    git(work, "push", "-q", "origin", "main")
    (root / "etc/nixos/configuration.nix").write_text("{ local = true; }\n")
    r = api.get("/system/configuration/pull")
    assert r.status_code == 500
    body = r.json()
    assert body["status"] == 1 and body["message"]
    assert "would be overwritten by merge" in body["data"]
    assert (root / "etc/nixos/configuration.nix").read_text() == "{ local = true; }\n"


def test_pull_without_upstream_is_500(upstream, api, root):
    up, _ = upstream
    up.rename(up.with_name("gone.git"))
    r = api.get("/system/configuration/pull")
    assert r.status_code == 500
    assert r.json()["status"] != 0
    assert "does not appear to be a git repository" in r.json()["data"]


def test_pull_never_uses_a_repository_above_etc_nixos(api, root, tmp_path):
    """etc/nixos is not a git checkout but etc is one (etckeeper): git must not pull etc."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@e", "-c", "init.defaultBranch=main"]
    upstream = tmp_path / "upstream"
    subprocess.run(git + ["init", "-q", str(upstream)], check=True)
    (upstream / "new-file").write_text("from upstream\n")
    subprocess.run(git + ["-C", str(upstream), "add", "-A"], check=True)
    subprocess.run(git + ["-C", str(upstream), "commit", "-qm", "one"], check=True)
    subprocess.run(git + ["clone", "-q", str(upstream), str(tmp_path / "etc-clone")], check=True)
    shutil.move(str(tmp_path / "etc-clone" / ".git"), str(root / "etc" / ".git"))
    subprocess.run(git + ["-C", str(root / "etc"), "reset", "-q", "--mixed", "HEAD"], check=True)
    (upstream / "newer-file").write_text("from upstream\n")
    subprocess.run(git + ["-C", str(upstream), "add", "-A"], check=True)
    subprocess.run(git + ["-C", str(upstream), "commit", "-qm", "two"], check=True)
    r = api.get("/system/configuration/pull")
    assert r.status_code == 500 and r.json()["status"] != 0, r.text
    assert "not a git repository" in r.json()["data"], r.text
    assert not (root / "etc" / "newer-file").exists()
