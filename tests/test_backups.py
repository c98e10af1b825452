"""Backups with real restic on a local repository (SPD_RESTIC_REPOSITORY), driven over HTTP and D-Bus."""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from stack import BUS_NAME, TOKEN, Daemon, Gateway, call

BACKUPS = "org.selfprivacy.Backups1"
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
    return {"SPD_RESTIC_REPOSITORY": repo, "RESTIC_PROGRESS_FPS": "30", "TMPDIR": private_tmp}


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
        self.daemon.stop(sig)
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
            assert time.monotonic() < deadline, f"still {s}, waiting for {states}"
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


def restic_children(daemon) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                exe = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except (OSError, IndexError, ValueError):
                continue
            if ppid == daemon.process.pid and exe.endswith(b"restic"):
                pids.append(int(entry.name))
    return pids


def wait_for_restic(daemon, timeout=WAIT) -> int:
    deadline = time.monotonic() + timeout
    while not (pids := restic_children(daemon)):
        assert time.monotonic() < deadline, "restic never started"
        time.sleep(0.01)
    return pids[0]


def backup(stack) -> dict:
    r = stack.api.put("/services/restic/backup/create")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": 0, "message": "Backup creation has started"}
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


class BusMonitor(threading.Thread):
    """busctl monitor, line-buffered, collecting Backups1 PropertiesChanged as they arrive."""

    def __init__(self, bus):
        super().__init__(daemon=True)
        self.proc = subprocess.Popen(["stdbuf", "-oL", "busctl", f"--address={bus.address}", "--json=short",
                                      "monitor", BUS_NAME], stdout=subprocess.PIPE, text=True)
        self.states, self.progress = [], []
        self.start()
        time.sleep(0.5)  # let busctl subscribe

    def run(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            if msg.get("member") != "PropertiesChanged" or msg["payload"]["data"][0] != BACKUPS:
                continue
            changed = msg["payload"]["data"][1]
            if "State" in changed:
                self.states.append(changed["State"]["data"])
            if "Progress" in changed:
                self.progress.append(changed["Progress"]["data"])

    def wait_for_state(self, state, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while state not in self.states:
            assert time.monotonic() < deadline, self.states
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.join()


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
    (listed,) = call(bus, BACKUPS, "ListSnapshots")
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
    done = stack.wait_for("INITIALIZED", "ERROR")
    assert done == {"status": "INITIALIZED", "progress": 1.0, "error_message": None}, stack.log()

    after = tree(var)
    kept = {k: v for k, v in after.items() if k != "created-later.txt" and not k.startswith("lib/spd")}
    assert kept == {k: v for k, v in before.items() if not k.startswith("lib/spd")}
    assert after["created-later.txt"][2] == b"newer than the backup"  # a restore never deletes newer data
    assert stack.api.get("/auth/tokens").status_code == 200  # the new token still works
    assert not list((var / "lib" / "spd").glob("restore-*"))  # the staging folder is gone


def test_progress_rises_live_and_one_operation_at_a_time(stack, root, bus, repo):
    stack.wait_for("NOT_INITIALIZED")
    assert restic(repo, PASSWORD, "init").returncode == 0
    stack.api.get("/services/restic/backup/reload")
    stack.wait_for("INITIALIZED")
    add_random_files(root, 48)
    monitor = BusMonitor(bus)
    try:
        assert stack.api.put("/services/restic/backup/create").status_code == 200
        wait_for_restic(stack.daemon)
        busy = 0
        while (s := stack.status())["status"] != "INITIALIZED":
            assert s["status"] == "BACKING_UP", stack.log()
            second = stack.api.put("/services/restic/backup/create")
            if stack.status()["status"] == "BACKING_UP":
                assert second.status_code == 409, second.text
                assert second.json() == {"error": "A backup is in progress"}
                r = stack.api.put("/services/restic/backup/restore", json={"backupId": "whatever"})
                assert r.status_code == 409, r.text
                busy += 1
            # Other routes keep answering while restic runs.
            assert stack.api.get("/auth/tokens").status_code == 200
            time.sleep(0.05)
        assert busy
        monitor.wait_for_state("INITIALIZED")
    finally:
        monitor.stop()
    states, progress = monitor.states, monitor.progress
    assert states == ["BACKING_UP", "INITIALIZED"], states
    assert progress == sorted(progress), progress
    assert progress[-1] == 1.0
    assert len([p for p in progress if 0 < p < 1]) >= 2, progress
    # The properties themselves.
    got = _busctl_get(bus, "State", "Progress", "ErrorMessage")
    assert got == ["INITIALIZED", 1.0, ""]


def _busctl_get(bus, *names):
    r = subprocess.run(["busctl", f"--address={bus.address}", "--json=short", "get-property", BUS_NAME,
                        "/org/selfprivacy/Daemon", BACKUPS, *names], capture_output=True, text=True,
                       check=True)
    return [json.loads(line)["data"] for line in r.stdout.splitlines()]
