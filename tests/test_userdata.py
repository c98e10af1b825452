"""The userdata store: untouched keys survive every operation byte for byte; missing or corrupt files
are errors; failed changes write nothing; the lock holds across processes."""

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import pytest

import ssh_helpers as keys
from stack import REPO, make_root

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
    path = r / "etc/nixos/userdata/userdata.json"
    text = path.read_text()
    assert text.startswith("{\n")
    text = "{\n    " + ",\n    ".join(UNKNOWN) + ",\n" + text[2:]
    text = text.replace('"ssh": {\n', '"ssh": {\n        ' + NESTED + ",\n", 1)
    path.write_text(text)
    json.loads(text)
    return r


def test_unknown_keys_survive_every_operation(api, root):
    path = root / "etc/nixos/userdata/userdata.json"
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
    path = root / "etc/nixos/userdata/userdata.json"
    before = path.read_text()
    assert api.put("/services/ssh", json={"passwordAuthentication": False}).status_code == 200
    after = path.read_text()
    assert after == before.replace('"passwordAuthentication": true', '"passwordAuthentication": false', 1)


def test_corrupt_userdata_is_an_error_and_left_alone(api, root):
    path = root / "etc/nixos/userdata/userdata.json"
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
