"""Robustness: nothing is lost, bad state on disk gives a clear error (never a traceback), failures
become state, and the daemon keeps answering."""

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
from stack import REPO, TOKEN, Daemon, Gateway, call, dbus_call, files_containing, get_property

from spd import jsonfile
from spd.errors import Failed
from spd.jsonfile import JsonFile

USERDATA = "etc/nixos/userdata/userdata.json"
TOKENS = "org.selfprivacy.Tokens1"


# --- the store, in-process ----------------------------------------------------------------------

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


# --- through the stack --------------------------------------------------------------------------

def test_userdata_not_an_object_is_a_clear_error(api, root, daemon):
    """A file that becomes invalid keeps the last good values for reads (live-and-local.md 1); every
    change answers the error, and the file is never rewritten."""
    path = root / USERDATA
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
    folder = (root / USERDATA).parent
    before = (root / USERDATA).read_bytes()
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
    assert (root / USERDATA).read_bytes() == before
    assert sorted(x.name for x in folder.iterdir()) == files


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_the_daemon_starts_without_a_usable_userdata(bus, root, tmp_path, damage):
    """A corrupt or missing userdata.json: the daemon starts and says so in its log, device tokens
    keep working (the app can log in and see the error), every call that needs userdata answers the
    same clear error, and once the file is fixed everything works again without a restart."""
    path = root / USERDATA
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


# --- userdata of other shapes -----------------------------------------------------------------

def _rewrite(root, change):
    path = root / USERDATA
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=4))


@pytest.mark.parametrize("shape", ["bare", "odd types"])
def test_read_routes_answer_for_userdata_of_other_shapes(api, root, shape):
    """A 1.2 server with no users, no ssh block, no keys anywhere; or the same keys holding other
    types: the read routes answer (defaults or a clear error), never a traceback or a generic 500."""
    def bare(data):
        for key in ("users", "ssh", "sshKeys", "timezone", "autoUpgrade", "gitea", "backblaze"):
            data.pop(key)

    def odd(data):
        data.update(users=5, ssh=None, sshKeys=None, timezone=3, autoUpgrade=[], gitea="yes", backblaze=1)

    _rewrite(root, bare if shape == "bare" else odd)
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


def test_user_entry_without_keys(api, root):
    """user2 of the demo server has no sshKeys: listed as none, and a key can be added."""
    assert api.get("/services/ssh/keys/user2").json() == []
    key = keys.ed25519("k")
    assert api.post("/services/ssh/keys/user2", json={"public_key": key}).status_code == 201
    assert api.get("/services/ssh/keys/user2").json() == [key]


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


# --- backups ------------------------------------------------------------------------------------

def test_a_slow_reload_never_hides_a_newer_backup(bus, root, tmp_path):
    """Reload asks restic for the list; a backup finishes meanwhile and loads the list with its new
    snapshot; the Reload's older answer arrives last: the new snapshot must stay listed."""
    from test_backups import Stack, backup, restic_children

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


# --- start-up -----------------------------------------------------------------------------------

def test_a_corrupt_legacy_tokens_file_does_not_stop_the_daemon(bus, root, tmp_path):
    """The 1.2 server's tokens.json cannot be read: spd starts, says so, and keeps the file and
    userdata's api.token for the operator (nothing imported, nothing lost)."""
    legacy = root / "etc/nixos/userdata/tokens.json"
    legacy.write_text('{"tokens": [{"token": "abc"')
    userdata = (root / USERDATA).read_bytes()
    daemon = Daemon(bus, root, tmp_path)
    try:
        assert "tokens.json is not valid JSON" in daemon.process.log()
        assert get_property(bus, "org.selfprivacy.Users1", "Users") == ["user1", "user2"]
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.process.log(), daemon.process.log()
    assert legacy.read_text() == '{"tokens": [{"token": "abc"'
    assert (root / USERDATA).read_bytes() == userdata


def test_a_fixed_legacy_tokens_file_is_imported_at_the_next_start(bus, root, tmp_path):
    """The operator fixes the 1.2 server's tokens.json: the next start imports it and removes it."""
    legacy = root / "etc/nixos/userdata/tokens.json"
    good = legacy.read_text()
    legacy.write_text('{"tokens": [{"token": "abc"')
    daemon = Daemon(bus, root, tmp_path)
    try:
        assert dbus_call(bus, TOKENS, "Authenticate", "s", TOKEN)[0] == "org.selfprivacy.Error.NotFound"
    finally:
        assert daemon.stop() == 0
    legacy.write_text(good)
    daemon = Daemon(bus, root, tmp_path)
    try:
        assert call(bus, TOKENS, "Authenticate", "s", TOKEN) == ["primary_token"]
        assert "imported 2 device tokens" in daemon.process.log()
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.process.log(), daemon.process.log()
    assert not legacy.exists()
    assert files_containing(root, TOKEN) == []


def test_a_damaged_token_store_answers_logins_with_500_and_its_message(api, anon, root):
    """spd's own token store (var/lib/spd/tokens.json) damaged while it runs: every login (a bearer
    token, a mnemonic) answers 500 with the store's message; fixed, it works again."""
    store = root / "var/lib/spd/tokens.json"
    good = store.read_bytes()
    store.write_text('{"tokens": [')
    message = {"error": "tokens.json is not valid JSON; refusing to change it"}
    r = api.get("/auth/tokens")
    assert (r.status_code, r.json()) == (500, message)
    r = anon.post("/auth/recovery_token/use", json={"token": "word " * 18, "device": "phone"})
    assert (r.status_code, r.json()) == (500, message)
    assert store.read_text() == '{"tokens": ['  # never rewritten
    store.write_bytes(good)
    assert api.get("/auth/tokens").status_code == 200


def test_a_userdata_folder_that_cannot_be_written_does_not_stop_the_daemon(bus, root, tmp_path):
    """Nothing under etc/nixos/userdata can be created or removed: spd starts, reads still work,
    and tokens.json, already imported, is reported as left behind."""
    folder = (root / USERDATA).parent
    _make_immutable(folder)
    try:
        daemon = Daemon(bus, root, tmp_path)
        try:
            assert get_property(bus, "org.selfprivacy.Users1", "Users") == ["user1", "user2"]
            assert call(bus, "org.selfprivacy.Tokens1", "Authenticate", "s", TOKEN) != []
        finally:
            assert daemon.stop() == 0
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    log = daemon.process.log()
    assert "Traceback" not in log, log
    assert "remove it by hand" in log and "api.token stays in userdata.json" in log, log


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


def test_users_null_is_no_users(api, root):
    """`users: null` (as `sshKeys: null`) means none yet: a user can be created."""
    _rewrite(root, lambda data: data.update(users=None))
    assert api.get("/users").json() == []
    assert api.post("/users", json={"username": "bob", "password": "pw"}).status_code == 201
    assert api.get("/users").json() == ["bob"]
    assert [u["username"] for u in json.loads((root / USERDATA).read_text())["users"]] == ["bob"]


def test_keys_with_odd_whitespace_and_comments(api, root):
    """Tabs and runs of spaces around the parts, a comment with inner spaces or none: stored as
    `TYPE BLOB comment`, found again whatever the comment or spacing when removed."""
    kind, blob = keys.ed25519("odd").split()[:2]
    r = api.post("/services/ssh/keys/user2", json={"public_key": f" \t{kind}\t\t{blob}   my  laptop \t"})
    assert r.status_code == 201, r.text
    assert api.get("/services/ssh/keys/user2").json() == [f"{kind} {blob} my  laptop"]
    r = api.post("/services/ssh/keys/user2", json={"public_key": f"{kind} {blob}"})
    assert r.status_code == 409, r.text
    r = api.request("DELETE", "/services/ssh/keys/user2", json={"public_key": f"{kind}  {blob} other"})
    assert r.status_code == 200, r.text
    assert api.get("/services/ssh/keys/user2").json() == []


# --- the daemon keeps answering ----------------------------------------------------------------

@pytest.mark.parametrize("method, url, body", [
    ("POST", "/services/gitea/enable", None),
    ("PUT", "/system/configuration/timezone", {"timezone": "Europe/Paris"}),
    ("PUT", "/system/configuration/autoUpgrade", {"enable": False}),
    ("PUT", "/services/restic/backblaze/config", {"accountId": "id", "accountKey": "key", "bucket": "b"}),
])
def test_a_change_waiting_for_the_userdata_lock_blocks_nothing_else(api, root, gateway, method, url, body):
    """Another process (an operator's script) holds userdata.json's lock: a change waits for it,
    and meanwhile every other call is answered; once the lock is free the change is made."""
    lock = (root / USERDATA).with_name(".userdata.json.lock")
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


def test_async_and_sync_changes_mixed_lose_nothing(tmp_path):
    """Group commits on the worker thread and synchronous updates on the loop thread, interleaved:
    every change lands once, and no read ever goes back in time."""
    import asyncio

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
