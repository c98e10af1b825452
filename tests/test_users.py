"""Users over HTTP and D-Bus: GET/POST /users, DELETE /users/<u>, Users1."""

import asyncio
import os
import re
import subprocess
import threading

import httpx

from stack import TOKEN, call, get_property, refusal
from userdata_helpers import edit_by_rename, edit_in_place, userdata, userdata_path

from spd.contract import USERS


def raw(root) -> bytes:
    return userdata_path(root).read_bytes()


def user_entry(root, name):
    return next((u for u in userdata(root).get("users", []) if u["username"] == name), None)


def openssl_crypt(password: str, hashed: str) -> str:
    """The SHA-512 crypt of `password` with `hashed`'s salt, by an independent implementation."""
    salt = hashed.split("$")[2]
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password.encode(),
                         capture_output=True, check=True)
    return out.stdout.decode().strip()


def test_list_users(api, bus):
    r = api.get("/users")
    assert r.status_code == 200
    assert r.json() == ["user1", "user2"]  # not the master user "tester"
    assert get_property(bus, USERS, "Users") == ["user1", "user2"]


def test_list_users_empty(api, root):
    edit_by_rename(root, lambda data: data.pop("users"))
    assert api.get("/users").json() == []


def test_create_user_hashes_the_password(api, root):
    password = "correct horse battery staple ü"
    r = api.post("/users", json={"username": "alice", "password": password})
    assert r.status_code == 201, r.text
    assert r.json() == {"result": 0, "username": "alice"}
    entry = user_entry(root, "alice")
    assert set(entry) == {"username", "hashedPassword"}
    assert re.fullmatch(r"\$6\$[./0-9A-Za-z]+\$[./0-9A-Za-z]{86}", entry["hashedPassword"])
    assert openssl_crypt(password, entry["hashedPassword"]) == entry["hashedPassword"]
    assert password not in raw(root).decode()
    assert api.get("/users").json() == ["user1", "user2", "alice"]


def test_username_of_32_characters_is_fine(api, root):
    name = "a" * 32
    assert api.post("/users", json={"username": name, "password": "pw"}).status_code == 201
    assert user_entry(root, name) is not None


REFUSED = [
    ({"password": "pw"}, 400),
    ({"username": "bob"}, 400),
    ({"username": 7, "password": "pw"}, 400),
    ({"username": "bob", "password": 7}, 400),
    ({"username": "bob", "password": "pw", "admin": True}, 400),
    ({"username": "Bob", "password": "pw"}, 400),
    ({"username": "bob\n", "password": "pw"}, 400),
    ({"username": "\nbob", "password": "pw"}, 400),
    ({"username": "bob-x", "password": "pw"}, 400),
    ({"username": "b", "password": "pw"}, 400),
    ({"username": "1bob", "password": "pw"}, 400),
    ({"username": "a" * 33, "password": "pw"}, 400),
    ({"username": "bob", "password": ""}, 400),
    ({"username": "bob", "password": "pw\nroot::0:0"}, 400),
    ({"username": "bob", "password": "pw\rx"}, 400),
    ({"username": "bob", "password": "pw\0x"}, 400),
    ({"username": "bob", "password": "x" * 257}, 400),
    ({"username": "root", "password": "pw"}, 409),
    ({"username": "sshd", "password": "pw"}, 409),
    ({"username": "nginx", "password": "pw"}, 409),
    ({"username": "gitea", "password": "pw"}, 409),
    ({"username": "redis", "password": "pw"}, 409),
    ({"username": "nobody", "password": "pw"}, 409),
    ({"username": "systemd_x", "password": "pw"}, 409),
    ({"username": "systemd-network", "password": "pw"}, 409),
    ({"username": "nixbld12", "password": "pw"}, 409),
    ({"username": "user1", "password": "pw"}, 409),
    ({"username": "tester", "password": "pw"}, 409),  # the master user
]


def test_create_user_refused(api, root):
    before = raw(root)
    for body, status in REFUSED:
        r = api.post("/users", json=body)
        assert r.status_code == status, (body, r.text)
        assert isinstance(r.json()["error"], str) and r.json()["error"]
        assert raw(root) == before, body
    assert api.get("/users").json() == ["user1", "user2"]


# Names a NixOS server already uses (the list, and some of every source of spd/reserved.py).
SYSTEM_NAMES = ["dhcpcd", "sddm", "wheel", "users", "kmem", "sys", "sync", "vmail", "virtualMail",
                "dovenull2", "postdrop", "keys", "shadow", "kvm", "jicofo", "kanidm", "vikunja", "hedgedoc",
                "murmur", "bin", "daemon", "mail", "nscd", "acme"]


def test_names_nixos_already_uses_are_refused_like_reserved_ones(api, root):
    before = raw(root)
    for name in SYSTEM_NAMES:
        r = api.post("/users", json={"username": name, "password": "pw"})
        assert r.status_code == 409, (name, r.text)
        assert r.json() == {"error": f"The username {name!r} is reserved for the system"}
    assert raw(root) == before
    assert api.post("/users", json={"username": "wheeler", "password": "pw"}).status_code == 201


def test_create_user_needs_a_token(anon, root):
    before = raw(root)
    assert anon.post("/users", json={"username": "bob", "password": "pw"}).status_code == 401
    assert anon.get("/users").status_code == 401
    assert anon.delete("/users/user1").status_code == 401
    assert raw(root) == before


def test_delete_user(api, root, bus):
    r = api.delete("/users/user2")
    assert r.status_code == 200, r.text
    assert r.json() == {"result": 0, "username": "user2"}
    assert user_entry(root, "user2") is None
    assert api.get("/users").json() == ["user1"]
    assert api.delete("/users/user2").status_code == 404


def test_delete_user_refused(api, root):
    before = raw(root)
    for name, status in [("tester", 400), ("ghost", 404), ("root", 404), ("USER1", 404), ("user1%0A", 404)]:
        r = api.delete(f"/users/{name}")
        assert r.status_code == status, (name, r.text)
        assert "error" in r.json()
    assert raw(root) == before


def test_users_over_dbus(bus, daemon, root):
    call(bus, USERS, "Create", "ss", "dave", "s3cret")
    assert get_property(bus, USERS, "Users") == ["user1", "user2", "dave"]
    for args, error in [(("dave", "pw"), "AlreadyExists"), (("root", "pw"), "Reserved"),
                        (("Dave", "pw"), "InvalidArgument"), (("eve", "a\nb"), "InvalidArgument")]:
        assert refusal(bus, USERS, "Create", "ss", *args).name == f"org.selfprivacy.Error.{error}", args
    assert refusal(bus, USERS, "Delete", "s", "tester").name == "org.selfprivacy.Error.InvalidArgument"
    assert refusal(bus, USERS, "Delete", "s", "ghost").name == "org.selfprivacy.Error.NotFound"
    call(bus, USERS, "Delete", "s", "dave")
    refusal(bus, USERS, "Delete", "s", "dave")
    assert user_entry(root, "dave") is None


def test_fifty_concurrent_creations(gateway, root):
    names = [f"load{i:02d}" for i in range(50)]

    async def create_all():
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            return await asyncio.gather(*(client.post("/users", json={"username": n, "password": f"pw-{n}"})
                                          for n in names))

    replies = asyncio.run(create_all())
    assert [r.status_code for r in replies] == [201] * 50
    users = userdata(root)["users"]
    assert sorted(u["username"] for u in users) == sorted(["user1", "user2", *names])
    assert all(u["hashedPassword"].startswith("$6$") for u in users)
    entry = user_entry(root, "load07")
    assert openssl_crypt("pw-load07", entry["hashedPassword"]) == entry["hashedPassword"]


def test_concurrent_duplicates_make_one_user(gateway, root):
    async def create_same():
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            return await asyncio.gather(*(client.post("/users", json={"username": "twin", "password": f"p{i}"})
                                          for i in range(10)))

    statuses = sorted(r.status_code for r in asyncio.run(create_same()))
    assert statuses == [201] + [409] * 9
    assert [u["username"] for u in userdata(root)["users"]].count("twin") == 1


def _processes_showing(secret: bytes) -> list:
    """Processes whose argv or environment contains `secret`."""
    seen = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for what in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as f:
                    if secret in f.read():
                        seen.append((pid, what))
            except OSError:
                pass
    return seen


def test_password_never_in_argv_or_environment(gateway, daemon, root):
    secret = "Zq9-unique-password-marker"
    seen, done = [], threading.Event()

    def watch():
        while not done.is_set():
            seen.extend(_processes_showing(secret.encode()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        async def create():
            async with httpx.AsyncClient(base_url=gateway.url, timeout=60,
                                         headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                return await asyncio.gather(*(client.post("/users", json={"username": f"sec{i}",
                                                                            "password": f"{secret}{i}"})
                                              for i in range(20)))

        assert {r.status_code for r in asyncio.run(create())} == {201}
    finally:
        done.set()
        watcher.join()
    assert seen == []
    assert secret not in raw(root).decode()
    assert secret not in gateway.process.log() and secret not in daemon.process.log()


def test_users_null_is_no_users(api, root):
    """`users: null` (as `sshKeys: null`) means none yet: a user can be created."""
    edit_in_place(root, lambda data: data.update(users=None))
    assert api.get("/users").json() == []
    assert api.post("/users", json={"username": "bob", "password": "pw"}).status_code == 201
    assert api.get("/users").json() == ["bob"]
    assert [u["username"] for u in userdata(root)["users"]] == ["bob"]
