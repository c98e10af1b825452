"""Backups with real restic on a local repository (SPD_RESTIC_REPOSITORY), driven over HTTP and D-Bus."""

import json
import os
import shutil
import signal
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from signals import Signals
from stack import TOKEN, Daemon, Gateway, call, eventually, get_property, refusal
from userdata_helpers import edit_in_place, userdata_path

from spd.contract import BACKUPS

STATUS = "/services/restic/backup/status"
PASSWORD = "DEMO-RESTIC-PASSWORD"  # resticPassword in the demo root's userdata
FAKE_B2_KEY = "K005fakeB2applicationKeyNeverToBeSeen"
WAIT = 90  # seconds; the machine is shared, restic can be slow


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def repo(tmp_path):
    return tmp_path / "repo"


@pytest.fixture
def private_tmp(tmp_path):
    """The daemon's TMPDIR, where the password file lives while restic runs."""
    d = tmp_path / "daemon-tmp"
    d.mkdir()
    return d


@pytest.fixture
def daemon_env(repo, private_tmp):
    return {"SPD_RESTIC_REPOSITORY": repo, "RESTIC_PROGRESS_FPS": "30", "TMPDIR": private_tmp,
            "XDG_CACHE_HOME": repo.parent / "cache"}  # restic's cache stays with the test


@pytest.fixture
def stack(bus, root, tmp_path, daemon_env):
    """spd (with the env above) and the gateway; `stack.restart()` replaces the daemon."""
    s = Stack(bus, root, tmp_path, daemon_env)
    yield s
    s.close()


class Stack:
    def __init__(self, bus, root, tmp_path, env):
        self.bus, self.root, self.tmp, self.env = bus, root, tmp_path, env
        self.daemon = Daemon(bus, root, tmp_path, env=env)
        self.gateway = Gateway(bus, tmp_path)
        self.api = httpx.Client(base_url=self.gateway.url, headers={"Authorization": f"Bearer {TOKEN}"},
                                timeout=30)

    def restart(self, sig=signal.SIGKILL):
        code = self.daemon.stop(sig)
        if sig == signal.SIGTERM:
            assert code == 0 and "Traceback" not in self.log(), self.log()
        self.daemon = Daemon(self.bus, self.root, self.tmp, env=self.env)

    def status(self) -> dict:
        r = self.api.get(STATUS)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_for(self, *states, timeout=WAIT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            s = self.status()
            if s["status"] in states:
                return s
            if time.monotonic() > deadline:  # whose copy is behind: the daemon's, or the gateway's?
                daemon = {name: get_property(self.bus, BACKUPS, name)
                          for name in ("State", "Progress", "ErrorMessage")}
                os.kill(self.daemon.process.pid, signal.SIGUSR1)  # where spd waits, to its log
                time.sleep(1)
                raise AssertionError(f"still {s} over HTTP, waiting for {states}; on the bus {daemon}\n"
                                     f"spd:\n{self.log()[-3000:]}\ngateway:\n{self.gateway.process.log()[-2000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.daemon.process.log()

    def close(self):
        self.api.close()
        self.gateway.stop()
        code = self.daemon.stop()
        log = self.log()
        assert "Traceback" not in log, log
        assert code == 0, f"spd exited with {code}:\n{log}"
        assert "Traceback" not in self.gateway.process.log()


def add_random_files(root: Path, megabytes: int) -> None:
    data = root / "var" / "lib" / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(megabytes):
        (data / f"blob{i}.bin").write_bytes(os.urandom(1 << 20))


def tree(folder: Path) -> dict:
    """Every entry under folder: type, mode and (for files) content."""
    out = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", st.st_mode)
        else:
            out[rel] = ("file", st.st_mode, path.read_bytes())
    return out


def restic(repo: Path, password: str, *args) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
           "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": password}
    return subprocess.run(["restic", *args], env=env, capture_output=True, text=True, timeout=120)


def restic_children(daemon, command: bytes | None = None) -> list[int]:
    """restic processes whose parent is the daemon (running `restic COMMAND ...` when given)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == daemon.process.pid and argv[0].endswith(b"restic") and (
                    command is None or argv[1:2] == [command]):
                pids.append(int(entry.name))
    return pids


def wait_for_restic(daemon, command: bytes | None = None, timeout=WAIT) -> int:
    deadline = time.monotonic() + timeout
    while not (pids := restic_children(daemon, command)):
        assert time.monotonic() < deadline, "restic never started"
        time.sleep(0.005)
    return pids[0]


class paused:
    """restic stopped (SIGSTOP) for a while: the operation is surely still running meanwhile."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGCONT)


def backup(stack) -> dict:
    r = stack.api.put("/services/restic/backup/create")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": 0, "message": "Backup creation has started"}
    # The state changes before the reply: a status asked right after never says idle.
    assert stack.status()["status"] in ("BACKING_UP", "INITIALIZING")
    done = stack.wait_for("INITIALIZED", "ERROR")
    assert done == {"status": "INITIALIZED", "progress": 1.0, "error_message": None}, stack.log()
    return done


class CmdlineSampler(threading.Thread):
    """Reads /proc/*/cmdline of every process, over and over, until stopped."""

    def __init__(self, *needles: str):
        super().__init__(daemon=True)
        self.needles = [n.encode() for n in needles]
        self.found, self.samples, self.saw_restic = [], 0, False
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                self.saw_restic |= b"restic" in cmdline.split(b"\0")[0]
                for needle in self.needles:
                    if needle in cmdline:
                        self.found.append((entry.name, cmdline))
            self.samples += 1

    def stop(self):
        self.halt.set()
        self.join()


def _states(signals) -> list:
    """Backups1's State after each signal, a state read again counted once (the daemon signals only
    changes)."""
    states = []
    for state in signals.changes(BACKUPS, "State"):
        if state not in states[-1:]:
            states.append(state)
    return states


def _wait_for_state(signals, state, after=None):
    """Until `state` was signalled (after the first `after`, when given)."""
    def seen(_):
        states = _states(signals)
        return state in (states if after is None else states[states.index(after):] if after in states else [])
    signals.wait_for(seen, WAIT)


# --- the round trip ------------------------------------------------------------------------

def test_backup_list_change_restore_byte_for_byte(stack, root, bus):
    assert stack.wait_for("NOT_INITIALIZED", "INITIALIZED")["status"] == "NOT_INITIALIZED"
    assert stack.api.get("/services/restic/backup/list").json() == []
    var = root / "var"
    (var / "lib" / "nested" / "deeper").mkdir(parents=True)
    (var / "lib" / "nested" / "deeper" / "file.bin").write_bytes(os.urandom(50_000))
    (var / "lib" / "nested" / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (var / "lib" / "nested" / "script.sh").chmod(0o750)
    (var / "lib" / "nested" / "link").symlink_to("script.sh")
    before = tree(var)

    backup(stack)
    snapshots = stack.api.get("/services/restic/backup/list").json()
    assert len(snapshots) == 1
    snap = snapshots[0]
    assert len(snap["short_id"]) == 8 and snap["id"].startswith(snap["short_id"])
    assert snap["time"].startswith(time.strftime("%Y-", time.gmtime()))
    assert snap["paths"] == [str(var)]
    # The same list over D-Bus.
    listed = get_property(bus, BACKUPS, "Snapshots")
    assert [s["short_id"]["data"] for s in listed] == [snap["short_id"]]

    # Change, delete, add.
    (var / "domain").write_text("changed.example\n")
    (var / "lib" / "nextcloud" / "readme.txt").unlink()
    (var / "lib" / "nested" / "script.sh").chmod(0o644)
    (var / "lib" / "nested" / "link").unlink()
    shutil.rmtree(var / "lib" / "nested" / "deeper")
    (var / "lib" / "nested" / "deeper").write_text("a file where a folder was")
    (var / "created-later.txt").write_text("newer than the backup")
    # A token issued after the backup must survive the restore (var/lib/spd is the daemon's own).
    new_token = stack.api.post("/auth/tokens").json()["token"]
    stack.api.headers["Authorization"] = f"Bearer {new_token}"

    assert stack.api.put("/services/restic/backup/restore", json={"backupId": "deadbeef"}).status_code == 404
    assert stack.api.put("/services/restic/backup/restore", json={}).status_code == 400
    r = stack.api.put("/services/restic/backup/restore", json={"backupId": snap["short_id"]})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == 0
    assert stack.status()["status"] == "RESTORING"
    done = stack.wait_for("INITIALIZED", "ERROR")
    assert done == {"status": "INITIALIZED", "progress": 1.0, "error_message": None}, stack.log()

    after = tree(var)
    kept = {k: v for k, v in after.items() if k != "created-later.txt" and not k.startswith("lib/spd")}
    assert kept == {k: v for k, v in before.items() if not k.startswith("lib/spd")}
    assert after["created-later.txt"][2] == b"newer than the backup"  # a restore never deletes newer data
    assert stack.api.get("/auth/tokens").status_code == 200  # the new token still works
    assert not (var / "lib" / "spd" / "restore").exists()  # the staging folder is gone


def test_restore_puts_back_owners_and_modification_times(stack, root):
    """A service's files belong to its user: a restore gives back their owner, group and times."""
    stack.wait_for("NOT_INITIALIZED")
    folder = root / "var" / "lib" / "service"
    folder.mkdir(parents=True)
    data = folder / "data.db"
    data.write_bytes(b"the service's data")
    snapshot_time = 978_307_200_123_456_789  # 2001-01-01, with nanoseconds
    for path, uid, gid, mtime in ((data, 1234, 2345, snapshot_time), (folder, 1234, 2346, snapshot_time + 10**9)):
        os.chown(path, uid, gid)
        os.utime(path, ns=(mtime, mtime))
    backup(stack)

    data.write_bytes(b"changed later")
    for path in (data, folder):
        os.chown(path, 0, 0)
        os.utime(path)  # now
    snap = stack.api.get("/services/restic/backup/list").json()[0]["short_id"]
    assert stack.api.put("/services/restic/backup/restore", json={"backupId": snap}).status_code == 200
    assert stack.wait_for("INITIALIZED", "ERROR")["status"] == "INITIALIZED", stack.log()

    assert data.read_bytes() == b"the service's data"
    st = data.stat()
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == (1234, 2345, snapshot_time)
    st = folder.stat()
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == (1234, 2346, snapshot_time + 10**9)


def test_restore_of_a_snapshot_made_on_another_root(stack, root, repo, tmp_path):
    """A 1.2 server's snapshot holds /var; ours hold <root>/var: either lands in this root's var."""
    stack.wait_for("NOT_INITIALIZED")
    backup(stack)
    old_var = tmp_path / "old-server" / "var"
    (old_var / "lib" / "gitea").mkdir(parents=True)
    (old_var / "lib" / "gitea" / "repo.git").write_bytes(b"\x00\x01 from the old server")
    (old_var / "domain").write_text("old.example\n")
    assert restic(repo, PASSWORD, "backup", str(old_var)).returncode == 0
    stack.api.get("/services/restic/backup/reload")
    deadline = time.monotonic() + WAIT
    while len(snapshots := stack.api.get("/services/restic/backup/list").json()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (old_snap,) = [s for s in snapshots if s["paths"] == [str(old_var)]]
    shutil.rmtree(old_var)
    r = stack.api.put("/services/restic/backup/restore", json={"backupId": old_snap["id"]})  # full ids work
    assert r.status_code == 200, r.text
    assert stack.wait_for("INITIALIZED", "ERROR")["status"] == "INITIALIZED", stack.log()
    var = root / "var"
    assert (var / "lib" / "gitea" / "repo.git").read_bytes() == b"\x00\x01 from the old server"
    assert (var / "domain").read_text() == "old.example\n"
    assert (var / "lib" / "nextcloud" / "readme.txt").exists()  # not in that snapshot: kept
    assert not old_var.exists()  # nothing was written to the snapshot's original place


def test_progress_rises_live_and_one_operation_at_a_time(stack, root, bus, repo):
    stack.wait_for("NOT_INITIALIZED")
    assert restic(repo, PASSWORD, "init").returncode == 0
    stack.api.get("/services/restic/backup/reload")
    stack.wait_for("INITIALIZED")
    add_random_files(root, 48)
    signals = Signals(bus)
    try:
        assert stack.api.put("/services/restic/backup/create").status_code == 200
        with paused(wait_for_restic(stack.daemon, b"backup")):
            assert stack.status()["status"] == "BACKING_UP"
            second = stack.api.put("/services/restic/backup/create")
            assert second.status_code == 409 and second.json() == {"error": "A backup is in progress"}
            r = stack.api.put("/services/restic/backup/restore", json={"backupId": "whatever"})
            assert r.status_code == 409, r.text
            # The daemon keeps answering other calls while restic runs.
            assert stack.api.get("/auth/tokens").status_code == 200
            assert get_property(bus, BACKUPS, "State") == "BACKING_UP"
        _wait_for_state(signals, "INITIALIZED")
        states, progress = _states(signals), signals.changes(BACKUPS, "Progress")
        # A restore reports progress too (what restic wrote against the snapshot's size, then the move).
        shutil.rmtree(root / "var" / "lib" / "data")
        snap = stack.api.get("/services/restic/backup/list").json()[0]["short_id"]
        assert stack.api.put("/services/restic/backup/restore", json={"backupId": snap}).status_code == 200
        with paused(wait_for_restic(stack.daemon, b"restore")):
            assert stack.status()["status"] == "RESTORING"
            r = stack.api.put("/services/restic/backup/create")
            assert r.status_code == 409 and r.json() == {"error": "A restore is in progress"}, r.text
            assert stack.api.get("/auth/tokens").status_code == 200
        _wait_for_state(signals, "INITIALIZED", after="RESTORING")
        restore_states = _states(signals)[len(states):]
        restore_progress = signals.changes(BACKUPS, "Progress")[len(progress):]
    finally:
        signals.close()
    assert states == ["BACKING_UP", "INITIALIZED"], states
    assert progress == sorted(progress), progress
    assert progress[-1] == 1.0
    assert len([p for p in progress if 0 < p < 1]) >= 2, progress
    assert restore_states == ["RESTORING", "INITIALIZED"]
    assert restore_progress[0] == 0.0 and restore_progress[-2:] == [0.9, 1.0], restore_progress
    assert restore_progress == sorted(restore_progress), restore_progress
    assert len(list((root / "var" / "lib" / "data").iterdir())) == 48
    # The properties themselves.
    got = [get_property(bus, BACKUPS, name) for name in ("State", "Progress", "ErrorMessage")]
    assert got == ["INITIALIZED", 1.0, ""]


def test_first_backup_initializes_then_backs_up_without_flicker(stack, bus):
    """The first backup creates the repository: INITIALIZING from the reply on, then BACKING_UP,
    then INITIALIZED (it went BACKING_UP, INITIALIZING, BACKING_UP, INITIALIZED); a second backup
    meanwhile is refused as one in progress. The next backup goes BACKING_UP, INITIALIZED."""
    stack.wait_for("NOT_INITIALIZED")
    signals = Signals(bus)
    try:
        assert stack.api.put("/services/restic/backup/create").status_code == 200
        assert stack.status()["status"] == "INITIALIZING"  # the state changes before the reply
        with paused(wait_for_restic(stack.daemon, b"init")):
            assert stack.status()["status"] == "INITIALIZING"
            second = stack.api.put("/services/restic/backup/create")
            assert (second.status_code, second.json()) == (409, {"error": "A backup is in progress"})
        assert stack.wait_for("INITIALIZED", "ERROR")["status"] == "INITIALIZED", stack.log()
        first = eventually(lambda: _states(signals), ["INITIALIZING", "BACKING_UP", "INITIALIZED"])
        backup(stack)
        then = eventually(lambda: _states(signals)[len(first):], ["BACKING_UP", "INITIALIZED"])
    finally:
        signals.close()
    assert first == ["INITIALIZING", "BACKING_UP", "INITIALIZED"], stack.log()
    assert then == ["BACKING_UP", "INITIALIZED"]
    assert get_property(bus, BACKUPS, "State") == "INITIALIZED"


@pytest.mark.parametrize("field", ["accountId", "accountKey", "bucket"])
def test_backblaze_fields_with_a_trailing_newline_are_refused(bus, root, tmp_path, field):
    """A field ending in a newline is refused over HTTP (400) and over D-Bus, and nothing is written:
    it would reach userdata.json and split the log line naming the bucket."""
    s = Stack(bus, root, tmp_path, {})
    userdata = userdata_path(root)
    good = {"accountId": "005abc", "accountKey": FAKE_B2_KEY, "bucket": "my-bucket"}
    try:
        before = userdata.read_bytes()
        bad = dict(good, **{field: good[field] + "\n"})
        r = s.api.put("/services/restic/backblaze/config", json=bad)
        assert (r.status_code, r.json()) == (400, {"error": f"{field} is not a valid Backblaze {field}"})
        error = refusal(bus, BACKUPS, "SetBackblazeConfig", "sss", bad["accountId"], bad["accountKey"], bad["bucket"])
        assert (error.name, error.text) == ("org.selfprivacy.Error.InvalidArgument",
                                            f"{field} is not a valid Backblaze {field}")
        assert userdata.read_bytes() == before
        assert s.status()["status"] == "NO_KEY"
    finally:
        s.close()
    assert "Backblaze credentials set" not in s.log()


# --- failures become state -----------------------------------------------------------------

def test_wrong_password_is_an_error_state_until_fixed(stack, root, repo):
    stack.wait_for("NOT_INITIALIZED")
    assert restic(repo, "another password", "init").returncode == 0
    stack.api.get("/services/restic/backup/reload")
    s = stack.wait_for("ERROR")
    assert s["error_message"] == "The restic password does not open the repository"
    r = stack.api.put("/services/restic/backup/create")
    assert r.status_code == 200, r.text  # an ERROR does not block the next try
    s = stack.wait_for("ERROR", "INITIALIZED")
    assert s["status"] == "ERROR" and "password" in s["error_message"]
    assert PASSWORD not in s["error_message"]
    # The operator fixes the password: a reload makes the state truthful again.
    edit_in_place(root, lambda data: data.update(resticPassword="another password"))
    r = stack.api.get("/services/restic/backup/reload")
    assert r.json() == {"status": 0, "message": "Snapshots reload started"}
    assert stack.wait_for("INITIALIZED", timeout=WAIT)["error_message"] is None
    backup(stack)
    assert len(stack.api.get("/services/restic/backup/list").json()) == 1


def test_restic_killed_mid_backup_then_next_backup_works(stack, root):
    stack.wait_for("NOT_INITIALIZED")
    backup(stack)  # creates the repository
    add_random_files(root, 64)
    assert stack.api.put("/services/restic/backup/create").status_code == 200
    os.kill(wait_for_restic(stack.daemon, b"backup"), signal.SIGKILL)  # not the `cat config` before it
    s = stack.wait_for("ERROR", "INITIALIZED")
    assert s == {"status": "ERROR", "progress": s["progress"],
                 "error_message": "restic backup was stopped by SIGKILL"}, s
    backup(stack)
    assert len(stack.api.get("/services/restic/backup/list").json()) == 2


def test_stale_lock_is_removed_and_the_backup_retried(stack, repo):
    stack.wait_for("NOT_INITIALIZED")
    backup(stack)
    # A restic holding an exclusive lock dies without cleaning up: its lock stays behind.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
           "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}

    def locked():  # a finished lock file (restic writes a temp file first, then renames it)
        return any(len(p.name) == 64 for p in (repo / "locks").iterdir())

    for _ in range(20):
        prune = subprocess.Popen(["restic", "prune"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        while prune.poll() is None and not locked():
            time.sleep(0.001)
        prune.kill()
        prune.wait()
        if locked():
            break
    assert locked(), "could not leave a stale lock behind"
    assert "already locked" in restic(repo, PASSWORD, "backup", str(repo.parent / "root" / "var")).stderr
    backup(stack)
    assert "the repository is locked; removing stale locks and retrying once" in stack.log()
    assert len(stack.api.get("/services/restic/backup/list").json()) == 2


def test_restic_missing_from_path(bus, root, tmp_path, repo):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    s = Stack(bus, root, tmp_path, {"SPD_RESTIC_REPOSITORY": repo, "PATH": empty})
    try:
        st = s.wait_for("ERROR")
        assert st["error_message"] == "restic is not installed (not found in PATH)"
        assert s.api.put("/services/restic/backup/create").status_code == 200
        assert s.wait_for("ERROR")["error_message"] == "restic is not installed (not found in PATH)"
        assert s.api.get("/auth/tokens").status_code == 200
    finally:
        s.close()


def test_daemon_killed_mid_backup_comes_back_truthful(stack, root):
    stack.wait_for("NOT_INITIALIZED")
    backup(stack)
    add_random_files(root, 64)
    assert stack.api.put("/services/restic/backup/create").status_code == 200
    pid = wait_for_restic(stack.daemon)
    stack.restart(signal.SIGKILL)
    # restic does not outlive the daemon that would report on it.
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and b"restic" in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "restic outlived the daemon"
        time.sleep(0.05)
    s = stack.wait_for("INITIALIZED", "ERROR", "NOT_INITIALIZED")
    assert s["status"] == "INITIALIZED", (s, stack.log())
    assert len(stack.api.get("/services/restic/backup/list").json()) == 1
    backup(stack)
    assert len(stack.api.get("/services/restic/backup/list").json()) == 2

    # The same for a restore: its half-written staging folder is removed when the daemon comes back.
    snap = stack.api.get("/services/restic/backup/list").json()[-1]["short_id"]
    assert stack.api.put("/services/restic/backup/restore", json={"backupId": snap}).status_code == 200
    wait_for_restic(stack.daemon)
    staging = root / "var" / "lib" / "spd" / "restore"
    assert staging.is_dir()
    stack.restart(signal.SIGKILL)
    assert stack.wait_for("INITIALIZED", "ERROR")["status"] == "INITIALIZED"
    assert not staging.exists()


def test_password_folder_of_a_killed_daemon_is_removed_at_the_next_start(stack, root, private_tmp, tmp_path):
    """SIGKILL mid-backup leaves restic's password folder in the temp folder: the next start removes
    it, and nothing that is not recognisably ours (a link, a folder with other files, one of a running
    process, one owned by someone else)."""
    stack.wait_for("NOT_INITIALIZED")
    add_random_files(root, 32)
    assert stack.api.put("/services/restic/backup/create").status_code == 200
    wait_for_restic(stack.daemon, b"backup")
    old_pid = stack.daemon.process.pid
    (left,) = private_tmp.glob(f"spd-restic-{old_pid}-*")
    dead = max(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()) + 100_000
    assert not Path(f"/proc/{dead}").exists()

    def folder(name, files=("password",), owner=None):
        path = private_tmp / name
        path.mkdir(mode=0o700)
        for f in files:
            (path / f).write_text("not for you")
        if owner is not None:
            os.chown(path, owner, owner)
        return path

    stale = folder(f"spd-restic-{dead}-stale")  # like ours: goes
    target = folder("elsewhere")
    link = private_tmp / f"spd-restic-{dead}-link"
    link.symlink_to(target)
    keep = [target, link, folder(f"spd-restic-{dead}-extra", ("password", "other")),
            folder(f"spd-restic-{os.getpid()}-live"), folder(f"spd-restic-{dead}-foreign", owner=65534),
            folder(f"spd-restic-{dead}", ())]  # not our name pattern
    stack.restart(signal.SIGKILL)
    assert not left.exists() and not stale.exists()
    assert all(p.exists() or p.is_symlink() for p in keep)
    assert link.is_symlink() and (target / "password").read_text() == "not for you"
    assert f"removed {left}" in stack.log()
    stack.wait_for("INITIALIZED", "ERROR")


def test_a_running_backup_keeps_an_idle_daemon_alive_until_it_ends(bus, root, tmp_path, daemon_env, repo):
    """spd with --idle-timeout: a backup that outlasts the timeout (restic paused for three times
    as long) keeps it running; once the backup is done and nothing happens, it leaves."""
    idle = 2
    add_random_files(root, 32)
    daemon = Daemon(bus, root, tmp_path, env={**daemon_env, "SPD_IDLE_TIMEOUT": idle})
    try:
        deadline = time.monotonic() + WAIT
        while get_property(bus, BACKUPS, "State") != "NOT_INITIALIZED":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        call(bus, BACKUPS, "StartBackup")
        with paused(wait_for_restic(daemon, b"backup")):
            time.sleep(3 * idle)  # no calls meanwhile: idle by the clock, but busy
            assert daemon.process.alive(), daemon.process.log()
        daemon.process.proc.wait(WAIT)  # the backup finishes, then the daemon leaves by itself
    finally:
        assert daemon.stop() == 0
    log = daemon.process.log()
    assert "Traceback" not in log, log
    assert log.index("backup finished") < log.index(f"idle for {idle}s: leaving"), log
    snapshots = json.loads(restic(repo, PASSWORD, "snapshots", "--json").stdout)
    assert len(snapshots) == 1 and snapshots[0]["paths"] == [str(root / "var")]


def test_daemon_stopped_mid_backup_stops_restic_cleanly(stack, root, repo):
    stack.wait_for("NOT_INITIALIZED")
    backup(stack)
    add_random_files(root, 64)
    assert stack.api.put("/services/restic/backup/create").status_code == 200
    pid = wait_for_restic(stack.daemon)
    stack.restart(signal.SIGTERM)  # Stack.restart -> Daemon.stop: the old daemon exits 0
    assert not Path(f"/proc/{pid}").exists() or b"restic" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert list((repo / "locks").iterdir()) == []  # restic got SIGINT and removed its lock
    assert stack.wait_for("INITIALIZED", "ERROR")["status"] == "INITIALIZED"


# --- secrets ---------------------------------------------------------------------------------

def test_password_never_in_argv_and_its_file_is_private_and_removed(stack, root, private_tmp):
    stack.wait_for("NOT_INITIALIZED")
    add_random_files(root, 16)
    sampler = CmdlineSampler(PASSWORD)
    sampler.start()
    try:
        assert stack.api.put("/services/restic/backup/create").status_code == 200
        pid = wait_for_restic(stack.daemon)
        # While restic runs: the password is in a 0600 file in a 0700 folder, not in the environment.
        folders = list(private_tmp.glob("spd-restic-*"))
        assert len(folders) == 1
        assert folders[0].stat().st_mode & 0o777 == 0o700
        assert (folders[0] / "password").stat().st_mode & 0o777 == 0o600
        try:
            assert PASSWORD.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            pass  # that restic (cat config) already finished
        stack.wait_for("INITIALIZED", "ERROR")
        snap = stack.api.get("/services/restic/backup/list").json()[0]["short_id"]
        (root / "var" / "domain").unlink()
        assert stack.api.put("/services/restic/backup/restore", json={"backupId": snap}).status_code == 200
        assert stack.wait_for("INITIALIZED", "ERROR")["status"] == "INITIALIZED"
        assert (root / "var" / "domain").read_text() == "example.org\n"
    finally:
        sampler.stop()
    assert sampler.saw_restic and sampler.samples > 10
    assert sampler.found == []
    assert list(private_tmp.iterdir()) == []  # the password file is gone
    assert PASSWORD not in stack.log()


def test_no_key_then_backblaze_config_key_never_in_argv_log_or_error(bus, root, tmp_path):
    s = Stack(bus, root, tmp_path, {})  # no SPD_RESTIC_REPOSITORY: the B2 bucket from userdata
    userdata = userdata_path(root)
    try:
        assert s.wait_for("NO_KEY") == {"status": "NO_KEY", "progress": 0.0, "error_message": None}
        assert s.api.put("/services/restic/backup/create").status_code == 400
        assert s.api.put("/services/restic/backup/restore", json={"backupId": "abcd1234"}).status_code == 400
        assert s.api.get("/services/restic/backup/list").json() == []
        assert s.api.get("/services/restic/backup/reload").status_code == 200
        before = userdata.read_text()
        for bad in ({"accountId": "005abc", "accountKey": FAKE_B2_KEY},
                    {"accountId": "005abc", "accountKey": FAKE_B2_KEY, "bucket": ""},
                    {"accountId": "005abc", "accountKey": FAKE_B2_KEY, "bucket": "no:colons"},
                    {"accountId": 5, "accountKey": FAKE_B2_KEY, "bucket": "my-bucket"}):
            r = s.api.put("/services/restic/backblaze/config", json=bad)
            assert r.status_code == 400, (bad, r.text)
            assert FAKE_B2_KEY not in r.text
        assert userdata.read_text() == before
        assert s.status()["status"] == "NO_KEY"

        sampler = CmdlineSampler(FAKE_B2_KEY, PASSWORD)
        sampler.start()
        try:
            r = s.api.put("/services/restic/backblaze/config",
                          json={"accountId": "005abc", "accountKey": FAKE_B2_KEY, "bucket": "my-bucket"})
            assert r.status_code == 200, r.text
            assert r.json()["status"] == 0
            data = json.loads(userdata.read_text())
            assert data["backblaze"] == {"accountId": "005abc", "accountKey": FAKE_B2_KEY, "bucket": "my-bucket"}
            assert data["cloudflare"] == {"apiKey": "DEMO-CLOUDFLARE-KEY"}  # the rest is untouched
            # The daemon now looks at b2:my-bucket:sfbackup. Without network restic keeps retrying (or,
            # with network, fails fast); either way the key must show nowhere.
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                st = s.status()
                assert st["status"] in ("INITIALIZING", "ERROR", "NOT_INITIALIZED"), st
                assert FAKE_B2_KEY not in json.dumps(st) and PASSWORD not in json.dumps(st)
                time.sleep(0.1)
        finally:
            sampler.stop()
        assert sampler.saw_restic and sampler.found == []
    finally:
        s.close()  # restic is interrupted; the daemon exits cleanly
    assert FAKE_B2_KEY not in s.log() and PASSWORD not in s.log()
    assert "Backblaze credentials set (bucket my-bucket)" in s.log()


def test_restic_output_is_scrubbed_of_the_password(bus, root, tmp_path):
    """restic echoes the repository location in its errors; here that location holds the password."""
    blocker = tmp_path / f"file-{PASSWORD}"
    blocker.write_text("a file where restic wants a folder")
    s = Stack(bus, root, tmp_path, {"SPD_RESTIC_REPOSITORY": blocker / "repo",
                                    "XDG_CACHE_HOME": tmp_path / "cache"})
    try:
        s.wait_for("NOT_INITIALIZED", "ERROR")
        assert s.api.put("/services/restic/backup/create").status_code == 200
        st = s.wait_for("ERROR", "INITIALIZED")
        assert st["status"] == "ERROR"
        assert st["error_message"].startswith("restic cat config failed: Fatal: unable to open repository"), st
        assert "file-***" in st["error_message"] and PASSWORD not in st["error_message"]
    finally:
        s.close()
    assert PASSWORD not in s.log()


def test_restore_merge_is_not_redirected_by_a_folder_swapped_for_a_symlink(tmp_path, monkeypatch):
    """A service's user owns folders under var: swapping one for a symlink while the restore works
    in it must not send restored files, a chown or a chmod to the link's target."""
    from spd import restore

    src, dst, outside = tmp_path / "restored", tmp_path / "var", tmp_path / "etc"
    for folder in (src / "d", dst / "d", outside):
        folder.mkdir(parents=True)
    (src / "d" / "one").write_text("1")
    (src / "d" / "two").write_text("2")
    (src / "d").chmod(0o777)
    outside.chmod(0o700)
    real_move, swapped = restore._move, []

    def move_then_swap(a, b):
        real_move(a, b)
        if not swapped:  # the attacker's move, between two of ours
            (dst / "d").rename(dst / "d.old")
            (dst / "d").symlink_to(outside)
            swapped.append(True)

    monkeypatch.setattr(restore, "_move", move_then_swap)
    restore.merge(str(src), str(dst), set())
    assert swapped and list(outside.iterdir()) == []
    assert outside.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in (dst / "d.old").iterdir()) == ["one", "two"]


def test_a_slow_reload_never_hides_a_newer_backup(bus, root, tmp_path):
    """Reload asks restic for the list; a backup finishes meanwhile and loads the list with its new
    snapshot; the Reload's older answer arrives last: the new snapshot must stay listed."""
    gate = tmp_path / "gate"
    gate.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "restic"
    # The first `restic snapshots` after arming lists, then holds its answer until released.
    wrapper.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = snapshots ] && [ -e {gate}/armed ] && mkdir {gate}/claimed 2>/dev/null; then
            out=$({shutil.which("restic")} "$@"); code=$?
            touch {gate}/listed
            while [ -e {gate}/hold ]; do sleep 0.05; done
            printf '%s\\n' "$out"
            touch {gate}/answered
            exit $code
        fi
        exec {shutil.which("restic")} "$@"
        """))
    wrapper.chmod(0o755)
    env = {"SPD_RESTIC_REPOSITORY": tmp_path / "repo", "XDG_CACHE_HOME": tmp_path / "cache",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    stack = Stack(bus, root, tmp_path, env)
    try:
        stack.wait_for("NOT_INITIALIZED")
        backup(stack)
        list_url = "/services/restic/backup/list"
        assert len(stack.api.get(list_url).json()) == 1
        (gate / "hold").touch()
        (gate / "armed").touch()
        assert stack.api.get("/services/restic/backup/reload").status_code == 200
        deadline = time.monotonic() + 60
        while not (gate / "listed").exists():
            assert time.monotonic() < deadline, stack.log()
            time.sleep(0.05)
        backup(stack)
        assert len(stack.api.get(list_url).json()) == 2
        (gate / "hold").unlink()
        while not (gate / "answered").exists():
            assert time.monotonic() < deadline, stack.log()
            time.sleep(0.05)
        while restic_children(stack.daemon):
            assert time.monotonic() < deadline, stack.log()
            time.sleep(0.05)
        time.sleep(0.3)  # the daemon has read the older answer; let it act on it
        assert len(stack.api.get(list_url).json()) == 2
        assert stack.status()["status"] == "INITIALIZED"
    finally:
        (gate / "hold").unlink(missing_ok=True)
        stack.close()
