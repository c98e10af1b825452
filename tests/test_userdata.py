"""The userdata store: untouched keys survive every operation byte for byte; missing or corrupt files
are errors; failed changes write nothing; the lock holds across processes and holds up nothing else; a
damaged file or folder is a clear error, never a stopped daemon."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest

import ssh_helpers as keys
from stack import REPO, TOKEN, Daemon, Gateway, call, get_property, make_root
from userdata_helpers import edit_in_place, userdata_path

from spd import jsonfile
from spd.contract import TOKENS, USERS
from spd.errors import Failed
from spd.jsonfile import JsonFile

# Top-level keys spd does not manage, spelled the way no json.dumps would spell them.
UNKNOWN = [
    '"zUnknown": {"ratio": 1.50, "big": 1e5, "name": "\\u00e9t\\u00e9 \\/ x", "deep": [1, {"n": null}]}',
    '"zNumber": 12345678901234567890123',
    '"zFloat":0.1000',
    '"zEmpty": [ ]',
]
NESTED = '"extraOption": 2.50'  # an unknown key inside a managed object


@pytest.fixture
def root(tmp_path):
    r = make_root(tmp_path / "root")
    path = userdata_path(r)
    text = path.read_text()
    assert text.startswith("{\n")
    text = "{\n    " + ",\n    ".join(UNKNOWN) + ",\n" + text[2:]
    text = text.replace('"ssh": {\n', '"ssh": {\n        ' + NESTED + ",\n", 1)
    path.write_text(text)
    json.loads(text)
    return r


def test_unknown_keys_survive_every_operation(api, root):
    path = userdata_path(root)
    key, key2 = keys.ed25519("a"), keys.ed25519("b")
    steps = [
        ("POST", "/users", {"username": "alice", "password": "pw"}, 201),
        ("DELETE", "/users/user2", None, 200),
        ("PUT", "/services/ssh", {"enable": False}, 200),
        ("PUT", "/services/ssh", {"passwordAuthentication": False, "enable": True}, 200),
        ("POST", "/services/ssh/enable", None, 200),
        ("PUT", "/services/ssh/key/send", {"public_key": key}, 201),
        ("POST", "/services/ssh/keys/alice", {"public_key": key2}, 201),
        ("POST", "/services/ssh/keys/tester", {"public_key": key2}, 201),
        ("DELETE", "/services/ssh/keys/alice", {"public_key": key2}, 200),
        ("DELETE", "/services/ssh/keys/root", {"public_key": key}, 200),
        ("POST", "/users", {"username": "root", "password": "pw"}, 409),  # a refused change
        ("POST", "/auth/tokens", None, 200),
    ]
    for method, url, body, status in steps:
        r = api.request(method, url, json=body)
        assert r.status_code == status, (method, url, r.text)
        if url == "/auth/tokens":
            api.headers["Authorization"] = f"Bearer {r.json()['token']}"
        text = path.read_text()
        for snippet in UNKNOWN:
            assert "\n    " + snippet + ",\n" in text, (url, snippet)
        assert NESTED in text
        json.loads(text)
    data = json.loads(path.read_text())
    assert [u["username"] for u in data["users"]] == ["user1", "alice"]
    assert data["ssh"]["passwordAuthentication"] is False


def test_untouched_values_keep_their_bytes(api, root):
    """Everything but the changed value is the same text as before."""
    path = userdata_path(root)
    before = path.read_text()
    assert api.put("/services/ssh", json={"passwordAuthentication": False}).status_code == 200
    after = path.read_text()
    assert after == before.replace('"passwordAuthentication": true', '"passwordAuthentication": false', 1)


def test_corrupt_userdata_is_an_error_and_left_alone(api, root):
    path = userdata_path(root)
    path.write_text('{"users": [')
    # Reads keep the last good values (README "When the state on disk is damaged"); changes fail.
    assert api.get("/users").json() == ["user1", "user2"]
    for method, url, body in [("POST", "/users", {"username": "bob", "password": "pw"}),
                              ("PUT", "/services/ssh", {"enable": False}),
                              ("PUT", "/services/ssh/key/send", {"public_key": keys.ed25519()})]:
        r = api.request(method, url, json=body)
        assert r.status_code == 500, (url, r.text)
        assert "not valid JSON" in r.json()["error"]
    assert path.read_text() == '{"users": ['
    path.unlink()
    r = api.post("/users", json={"username": "bob", "password": "pw"})
    assert r.status_code == 500 and "missing" in r.json()["error"]
    assert not path.exists()


# --- the store itself, in-process -------------------------------------------------------------

def test_missing_file_is_an_error(tmp_path):
    f = JsonFile(tmp_path / "u.json")
    with pytest.raises(Failed):
        f.read()
    with pytest.raises(Failed):
        f.update(lambda d: d.update(x=1))
    assert not (tmp_path / "u.json").exists()


def test_failed_change_writes_nothing(tmp_path):
    p = tmp_path / "u.json"
    p.write_text('{"a": 1}')
    os.utime(p, ns=(1, 1))
    f = JsonFile(p)

    def fail(d):
        d["a"] = 2
        raise ValueError("no")

    with pytest.raises(ValueError):
        f.update(fail)
    f.update(lambda d: None)  # no change: not rewritten
    assert p.read_text() == '{"a": 1}' and p.stat().st_mtime_ns == 1
    assert sorted(x.name for x in tmp_path.iterdir()) == [".u.json.lock", "u.json"]


def test_mode_and_owner_are_kept(tmp_path):
    p = tmp_path / "u.json"
    p.write_text('{"a": 1}')
    os.chmod(p, 0o640)
    os.chown(p, 1234, 5678)
    JsonFile(p).update(lambda d: d.update(a=2))
    st = p.stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 1234, 5678)
    assert json.loads(p.read_text()) == {"a": 2}


def test_numbers_keep_their_spelling(tmp_path):
    p = tmp_path / "u.json"
    p.write_text('{"keep": {"x": 1E+2, "y": -0.0, "z": 10000000000000000000001}, "change": [1.10]}')
    f = JsonFile(p)
    f.update(lambda d: d["change"].append(2))
    assert p.read_text() == ('{\n    "keep": {"x": 1E+2, "y": -0.0, "z": 10000000000000000000001},\n'
                             '    "change": [\n        1.10,\n        2\n    ]\n}\n')
    assert f.read()["keep"]["x"] == 100.0


def test_stale_temp_files_are_removed(tmp_path):
    p = tmp_path / "u.json"
    p.write_text("{}")
    (tmp_path / ".u.json.abc123.tmp").write_text('{"half')
    JsonFile(p).remove_stale_temps()
    assert sorted(x.name for x in tmp_path.iterdir()) == [".u.json.lock", "u.json"]


def test_lock_holds_across_processes(tmp_path):
    p = tmp_path / "u.json"
    p.write_text('{"n": 0, "who": []}')
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from spd.jsonfile import JsonFile
        f = JsonFile({str(p)!r})
        def bump(d):
            d["n"] += 1
            d["who"].append(sys.argv[1])
        for _ in range(40):
            f.update(bump)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)]) for i in range(4)]
    assert [proc.wait(60) for proc in procs] == [0] * 4
    data = json.loads(p.read_text())
    assert data["n"] == 160 and sorted(data["who"]) == sorted(str(i) for i in range(4) for _ in range(40))


def test_group_commit_keeps_each_change_alone(tmp_path):
    p = tmp_path / "u.json"
    p.write_text('{"log": []}')
    f = JsonFile(p)
    writes = []
    real_write = f._write
    f._write = lambda text: (writes.append(text), real_write(text))

    def add(x):
        def change(d):
            d["log"].append(x)
            return x
        return change

    def half_then_fail(d):
        d["log"].append("half")
        raise ValueError("refused")

    async def main():
        return await asyncio.gather(*(f.update_async(c) for c in [add(1), half_then_fail, add(2), add(3)]),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert results[0] == 1 and isinstance(results[1], ValueError) and results[2:] == [2, 3]
    assert json.loads(p.read_text()) == {"log": [1, 2, 3]}
    assert len(writes) == 1  # the four arrived together: one write


def test_a_write_that_fails_is_a_clear_error_and_changes_nothing(tmp_path):
    """The kernel refuses the write (RLIMIT_FSIZE: as a full disk would): Failed, file intact."""
    p = tmp_path / "u.json"
    before = '{"keep": 1.50, "big": "' + "x" * 3000 + '"}'
    p.write_text(before)
    script = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(REPO)!r})
        from spd.errors import Failed
        from spd.jsonfile import JsonFile
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
        try:
            JsonFile({str(p)!r}).update(lambda d: d.update(n=1))
        except Failed as e:
            print(e.message)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "Cannot write u.json" in out.stdout and "left unchanged" in out.stdout, out.stdout
    assert p.read_text() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == [".u.json.lock", "u.json"]  # no temp left


def test_a_read_racing_a_write_is_not_cached(tmp_path, monkeypatch):
    """A read that stats the old file and reads it while a write (the group-commit worker) replaces
    it must not cache the old content: when the new file has the same stat key (a reused inode, the
    same size, the same clock tick; forced here) the stale copy would be served until the next write."""
    p = tmp_path / "u.json"
    p.write_text('{"n": "a"}')
    real_stat = os.stat

    def same_key(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        if os.fspath(path) != str(p):
            return st
        return os.stat_result((st.st_mode, 1, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 10, 0, 0, 0))

    monkeypatch.setattr(jsonfile.os, "stat", same_key)
    f = JsonFile(p)
    real_read = f._read_text
    raced = []

    def read_then_write():
        text = real_read()
        if not raced:
            raced.append(1)
            worker = threading.Thread(target=f.update, args=(lambda d: d.update(n="b"),))
            worker.start()
            worker.join()
        return text

    f._read_text = read_then_write
    assert f.read() == {"n": "a"}  # the racing read itself saw the old file
    assert f.read() == {"n": "b"}


def test_a_file_that_is_not_an_object_is_refused(tmp_path):
    p = tmp_path / "u.json"
    p.write_text("[1, 2]")
    f = JsonFile(p)
    with pytest.raises(Failed, match="JSON object"):
        f.read()
    with pytest.raises(Failed, match="JSON object"):
        f.update(lambda d: None)
    assert p.read_text() == "[1, 2]"


def test_a_failing_folder_sync_after_the_rename_is_not_reported_as_no_change(tmp_path, monkeypatch):
    """Once the new file is renamed into place the change is made: a folder fsync that fails then
    (EIO) must not make the caller believe the file was left unchanged."""
    import stat as st

    p = tmp_path / "u.json"
    p.write_text('{"n": 1}')
    real_fsync = os.fsync

    def fsync(fd):
        if st.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(jsonfile.os, "fsync", fsync)
    assert JsonFile(p).update(lambda d: d.update(n=2)) is None
    assert json.loads(p.read_text()) == {"n": 2}


def test_async_and_sync_changes_mixed_lose_nothing(tmp_path):
    """Group commits on the worker thread and synchronous updates on the loop thread, interleaved:
    every change lands once, and no read ever goes back in time."""
    p = tmp_path / "u.json"
    p.write_text('{"a": 0, "b": 0, "keep": 1.50}')
    f = JsonFile(p)

    def bump(key):
        def change(d):
            d[key] += 1
        return change

    async def main():
        seen = {"a": 0, "b": 0}
        pending = []
        for i in range(200):
            pending.append(asyncio.ensure_future(f.update_async(bump("a"))))
            if i % 4 == 0:
                f.update(bump("b"))
            await asyncio.sleep(0)
            data = f.read()
            for k in seen:
                assert data[k] >= seen[k], (k, data[k], seen[k])
                seen[k] = data[k]
        await asyncio.gather(*pending)

    asyncio.run(main())
    assert json.loads(p.read_text()) == {"a": 200, "b": 50, "keep": 1.5}
    assert '"keep": 1.50' in p.read_text()


# --- through the stack: a damaged file or folder, other shapes, a held lock -------------------

def test_userdata_not_an_object_is_a_clear_error(api, root, daemon):
    """A file that becomes invalid keeps the last good values for reads (live-and-local.md 1); every
    change answers the error, and the file is never rewritten."""
    path = userdata_path(root)
    path.write_text("[]\n")
    assert api.get("/users").json() == ["user1", "user2"]
    assert api.get("/system/configuration/timezone").json() == "Europe/Moscow"
    for method, url, body in [("POST", "/users", {"username": "bob", "password": "pw"}),
                              ("PUT", "/services/ssh", {"enable": False}),
                              ("PUT", "/system/configuration/timezone", {"timezone": "Europe/Paris"})]:
        r = api.request(method, url, json=body)
        assert r.status_code == 500, (url, r.text)
        assert "userdata.json does not hold a JSON object" in r.json()["error"], (url, r.text)
    assert path.read_text() == "[]\n"
    daemon.process.wait_for_log("keeps its last values: userdata.json does not hold a JSON object")


def _make_immutable(folder):
    """chattr +i, or a failure that says why: scripts/setup installs chattr (e2fsprogs), so a
    machine where it cannot work must not pass by skipping."""
    assert shutil.which("chattr"), "chattr is missing: scripts/setup installs it (e2fsprogs)"
    r = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    assert r.returncode == 0, f"chattr +i {folder} failed (needs root and ext4/xfs/btrfs): {r.stderr}"


def test_a_folder_that_cannot_be_written_is_a_clear_error(api, root):
    """The userdata folder refuses new files (immutable: root is not stopped by modes): each change
    is a clear 500, the file stays as it was, and the daemon keeps answering."""
    folder = userdata_path(root).parent
    before = userdata_path(root).read_bytes()
    files = sorted(x.name for x in folder.iterdir())
    _make_immutable(folder)
    try:
        for method, url, body in [("POST", "/users", {"username": "bob", "password": "pw"}),
                                  ("PUT", "/services/ssh", {"enable": False}),
                                  ("PUT", "/system/configuration/timezone", {"timezone": "Europe/Paris"}),
                                  ("POST", "/services/gitea/enable", None)]:
            r = api.request(method, url, json=body)
            assert r.status_code == 500, (url, r.text)
            assert "Cannot write userdata.json" in r.json()["error"], (url, r.text)
        assert api.get("/users").json() == ["user1", "user2"]
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert userdata_path(root).read_bytes() == before
    assert sorted(x.name for x in folder.iterdir()) == files


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_the_daemon_starts_without_a_usable_userdata(bus, root, tmp_path, damage):
    """A corrupt or missing userdata.json: the daemon starts and says so in its log, device tokens
    keep working (the app can log in and see the error), every call that needs userdata answers the
    same clear error, and once the file is fixed everything works again without a restart."""
    path = userdata_path(root)
    good = path.read_bytes()
    if damage == "corrupt":
        path.write_text('{"users": [')
    else:
        path.unlink()
    message = "not valid JSON" if damage == "corrupt" else "userdata.json is missing"
    daemon = Daemon(bus, root, tmp_path)
    gateway = Gateway(bus, tmp_path)
    try:
        assert message in daemon.process.log()
        with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=30) as api:
            assert api.get("/auth/tokens").status_code == 200
            for url in ("/users", "/services/ssh", "/system/configuration/timezone",
                        "/system/configuration/autoUpgrade"):
                r = api.get(url)
                assert r.status_code == 500 and message in r.json()["error"], (url, r.text)
            status = api.get("/services/restic/backup/status").json()
            assert status["status"] == "ERROR" and message in status["error_message"], status
            assert api.get("/services/restic/backup/reload").status_code == 200
            path.write_bytes(good)
            assert api.get("/users").json() == ["user1", "user2"]
            assert api.get("/system/configuration/timezone").json() == "Europe/Moscow"
            assert api.get("/services/restic/backup/reload").status_code == 200
            for _ in range(100):
                if api.get("/services/restic/backup/status").json()["status"] != "ERROR":
                    break
                time.sleep(0.1)
            assert api.get("/services/restic/backup/status").json()["status"] == "NO_KEY"
        assert path.read_bytes() == good
    finally:
        gateway.stop()
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.process.log(), daemon.process.log()
    assert "Traceback" not in gateway.process.log(), gateway.process.log()


def test_a_userdata_folder_that_cannot_be_written_does_not_stop_the_daemon(bus, root, tmp_path):
    """Nothing under etc/nixos/userdata can be created or removed: spd starts, reads still work,
    and tokens.json, already imported, is reported as left behind."""
    folder = userdata_path(root).parent
    _make_immutable(folder)
    try:
        daemon = Daemon(bus, root, tmp_path)
        try:
            assert get_property(bus, USERS, "Users") == ["user1", "user2"]
            assert call(bus, TOKENS, "Authenticate", "s", TOKEN) != []
        finally:
            assert daemon.stop() == 0
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    log = daemon.process.log()
    assert "Traceback" not in log, log
    assert "remove it by hand" in log and "api.token stays in userdata.json" in log, log


@pytest.mark.parametrize("shape", ["bare", "odd types"])
def test_read_routes_answer_for_userdata_of_other_shapes(api, root, shape):
    """A 1.2 server with no users, no ssh block, no keys anywhere; or the same keys holding other
    types: the read routes answer (defaults or a clear error), never a traceback or a generic 500."""
    def bare(data):
        for key in ("users", "ssh", "sshKeys", "timezone", "autoUpgrade", "gitea", "backblaze"):
            data.pop(key)

    def odd(data):
        data.update(users=5, ssh=None, sshKeys=None, timezone=3, autoUpgrade=[], gitea="yes", backblaze=1)

    edit_in_place(root, bare if shape == "bare" else odd)
    assert api.get("/users").json() == []
    assert api.get("/services/ssh").json() == {"enable": True, "passwordAuthentication": True}
    assert api.get("/services/ssh/keys/root").json() == []
    assert api.get("/services/ssh/keys/tester").json() == []
    assert api.get("/services/ssh/keys/user1").status_code == 404
    assert api.get("/system/configuration/timezone").json() == "Europe/Uzhgorod"
    assert api.get("/system/configuration/autoUpgrade").json() == {"enable": True, "allowReboot": False}
    assert api.get("/services/restic/backup/status").json()["status"] == "NO_KEY"
    r = api.post("/services/ssh/keys/user1", json={"public_key": keys.ed25519()})
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("method, url, body", [
    ("POST", "/services/gitea/enable", None),
    ("PUT", "/system/configuration/timezone", {"timezone": "Europe/Paris"}),
    ("PUT", "/system/configuration/autoUpgrade", {"enable": False}),
    ("PUT", "/services/restic/backblaze/config", {"accountId": "id", "accountKey": "key", "bucket": "b"}),
])
def test_a_change_waiting_for_the_userdata_lock_blocks_nothing_else(api, root, gateway, method, url, body):
    """Another process (an operator's script) holds userdata.json's lock: a change waits for it,
    and meanwhile every other call is answered; once the lock is free the change is made."""
    lock = userdata_path(root).with_name(".userdata.json.lock")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys
        fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        answers = []
        change = threading.Thread(target=lambda: answers.append(api.request(method, url, json=body)))
        change.start()
        time.sleep(0.5)  # the change is waiting for the lock now
        with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=10) as other:
            assert other.get("/users").json() == ["user1", "user2"]
            assert other.get("/auth/tokens").status_code == 200
            assert other.get("/services/ssh").status_code == 200
        assert change.is_alive() and not answers
    finally:
        holder.stdin.close()
        holder.wait(10)
    change.join(30)
    assert answers and answers[0].status_code == 200, answers and answers[0].text
