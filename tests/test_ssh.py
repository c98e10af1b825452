"""SSH over HTTP and D-Bus: settings as properties with PropertiesChanged, and parsed public keys."""

import asyncio
import base64
import os

import httpx
import pytest
from dbus_fast import Variant

import ssh_helpers as keys
from stack import BUS_NAME, PATH, TOKEN, busctl, call, eventually, get_property, refusal
from userdata_helpers import edit_by_rename, edit_in_place, userdata, userdata_path

from spd.contract import PROPERTIES, SSH

ROOT_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPP56BVBjHNwYn/m8ynDdGYWr1MQeI6P6zK99m7WeSHT "
            "tester@laptop")


# --- settings ------------------------------------------------------------------------------

def test_get_settings(api, root, bus):
    assert api.get("/services/ssh").json() == {"enable": True, "passwordAuthentication": True}
    assert busctl(bus, "get-property", BUS_NAME, PATH, SSH,  # as an operator reads it
                  "PasswordAuthentication") == {"type": "b", "data": True}
    edit_by_rename(root, lambda data: data["ssh"].update(passwordAuthentication=False))
    changed = {"enable": True, "passwordAuthentication": False}
    assert eventually(lambda: api.get("/services/ssh").json(), changed) == changed


def test_settings_default_to_true(api, root):
    edit_by_rename(root, lambda data: [data["ssh"].pop("enable"), data["ssh"].pop("passwordAuthentication")])
    assert api.get("/services/ssh").json() == {"enable": True, "passwordAuthentication": True}
    edit_by_rename(root, lambda data: data.pop("ssh"))
    assert api.get("/services/ssh").json() == {"enable": True, "passwordAuthentication": True}
    assert api.post("/services/ssh/enable").status_code == 200
    # Written as asked, though absent means the same: that meaning is the NixOS configuration's.
    assert userdata(root)["ssh"] == {"enable": True}


def test_put_sets_only_given_fields(api, root):
    r = api.put("/services/ssh", json={"passwordAuthentication": False})
    assert r.status_code == 200, r.text
    assert userdata(root)["ssh"] | {"rootKeys": None} == {"enable": True, "passwordAuthentication": False,
                                                          "rootKeys": None}
    assert api.put("/services/ssh", json={"enable": False}).status_code == 200
    assert api.get("/services/ssh").json() == {"enable": False, "passwordAuthentication": False}
    assert api.put("/services/ssh", json={}).status_code == 200
    assert api.put("/services/ssh", json={"enable": True, "passwordAuthentication": True}).status_code == 200
    assert api.get("/services/ssh").json() == {"enable": True, "passwordAuthentication": True}


def test_put_refuses_non_booleans(api, root):
    before = userdata_path(root).read_bytes()
    for body in ({"enable": "false"}, {"enable": 0}, {"passwordAuthentication": "yes"},
                 {"enable": True, "passwordAuthentication": [True]}, {"enable": True, "port": 22}, [True]):
        r = api.put("/services/ssh", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]
    assert userdata_path(root).read_bytes() == before


def test_post_enable(api, root):
    assert api.put("/services/ssh", json={"enable": False}).status_code == 200
    assert userdata(root)["ssh"]["enable"] is False
    r = api.post("/services/ssh/enable")
    assert r.status_code == 200
    assert r.json() == {"status": 0, "message": "SSH enabled"}
    assert userdata(root)["ssh"]["enable"] is True


def _changes(signals, count: int) -> list:
    """The SSH1 properties each of the first `count` PropertiesChanged names (the daemon sends
    names, never values)."""
    signals.wait(count)
    assert all(not changed for _, changed, _ in signals.raw), signals.raw
    return [names for interface, _, names in signals.raw if interface == SSH]


def test_properties_changed_once_per_change_and_never_for_same_value(api, bus, signals):
    assert api.put("/services/ssh", json={"enable": True}).status_code == 200  # same value
    assert api.put("/services/ssh", json={"enable": False}).status_code == 200
    assert api.put("/services/ssh", json={"enable": False}).status_code == 200  # same value
    call(bus, SSH, "SetPasswordAuthentication", "b", "true")  # same value
    call(bus, SSH, "SetPasswordAuthentication", "b", "false")
    assert api.post("/services/ssh/enable").status_code == 200
    assert api.post("/services/ssh/enable").status_code == 200  # same value
    assert api.put("/services/ssh", json={"enable": False, "passwordAuthentication": True}).status_code == 200
    # The last change is signalled before its reply, so everything earlier has arrived too.
    assert _changes(signals, 5) == [["Enable"], ["PasswordAuthentication"], ["Enable"], ["Enable"],
                                    ["PasswordAuthentication"]]
    assert api.get("/services/ssh").json() == {"enable": False, "passwordAuthentication": True}


def test_a_setting_is_written_as_asked_even_when_absent_means_the_same(api, bus, root, signals):
    """What an absent key means is the NixOS configuration's choice: the value given is written.
    The effective value does not change, so no signal goes out."""
    edit_in_place(root, lambda data: [data["ssh"].pop("enable"), data["ssh"].pop("passwordAuthentication")])
    assert api.get("/services/ssh").json() == {"enable": True, "passwordAuthentication": True}
    assert api.put("/services/ssh", json={"enable": True}).status_code == 200
    assert userdata(root)["ssh"]["enable"] is True and "passwordAuthentication" not in userdata(root)["ssh"]
    assert api.put("/services/ssh", json={"passwordAuthentication": True}).status_code == 200
    assert userdata(root)["ssh"]["passwordAuthentication"] is True
    assert api.put("/services/ssh", json={"passwordAuthentication": False}).status_code == 200
    assert _changes(signals, 1) == [["PasswordAuthentication"]]
    assert get_property(bus, SSH, "PasswordAuthentication") is False


def test_setters_over_dbus(bus, daemon, root):
    refusal(bus, SSH, "SetEnable", "s", "no")  # not a boolean
    # read-only: changes are Set<Property> methods
    refusal(bus, PROPERTIES, "Set", "ssv", SSH, "Enable", Variant("b", False))
    assert userdata(root)["ssh"]["enable"] is True
    call(bus, SSH, "SetEnable", "b", "false")
    assert userdata(root)["ssh"]["enable"] is False
    assert get_property(bus, SSH, "Enable") is False


# --- keys ----------------------------------------------------------------------------------

def test_list_keys(api, bus):
    assert api.get("/services/ssh/keys/root").json() == [ROOT_KEY]
    assert api.get("/services/ssh/keys/tester").json() == [ROOT_KEY]
    user1 = api.get("/services/ssh/keys/user1").json()
    assert len(user1) == 1 and user1[0].startswith("ssh-rsa ")
    assert api.get("/services/ssh/keys/user2").json() == []
    r = api.get("/services/ssh/keys/ghost")
    assert r.status_code == 404 and r.json()["error"]
    keys_property = get_property(bus, SSH, "Keys")
    assert keys_property["user1"] == user1 and keys_property["user2"] == []
    assert keys_property["root"] == keys_property["tester"] == [ROOT_KEY]


def test_add_root_key(api, root):
    key = keys.ed25519("me@phone")
    r = api.put("/services/ssh/key/send", json={"public_key": key})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == 0
    assert userdata(root)["ssh"]["rootKeys"] == [ROOT_KEY, key]
    assert api.get("/services/ssh/keys/root").json() == [ROOT_KEY, key]
    assert api.put("/services/ssh/key/send", json={"public_key": key}).status_code == 409
    # The same key material with another comment is the same key.
    same = key.rsplit(" ", 1)[0] + " other@laptop"
    assert api.put("/services/ssh/key/send", json={"public_key": same}).status_code == 409
    assert api.put("/services/ssh/key/send", json={}).status_code == 400


def test_keys_are_stored_reserialised(api, root):
    key = keys.ed25519()
    kind, blob = key.split()
    r = api.post("/services/ssh/keys/user2", json={"public_key": f"  {kind} \t{blob}   my laptop  "})
    assert r.status_code == 201, r.text
    assert userdata(root)["users"][1]["sshKeys"] == [f"{kind} {blob} my laptop"]


def test_every_allowed_key_type(api, root):
    every = [keys.ed25519("a"), keys.keygen("rsa", 2048), keys.keygen("rsa", 4096), keys.rsa(16384),
             keys.keygen("ecdsa", 256), keys.keygen("ecdsa", 384), keys.keygen("ecdsa", 521),
             keys.sk_ed25519("yubi"), keys.sk_ecdsa()]
    for key in every:
        r = api.post("/services/ssh/keys/tester", json={"public_key": key})
        assert r.status_code == 201, (key[:30], r.text)
    assert userdata(root)["sshKeys"] == [ROOT_KEY, *every]


def _tamper(key: str, change) -> str:
    kind, blob = key.split()[:2]
    return f"{kind} {base64.b64encode(change(base64.b64decode(blob))).decode()}"


def invalid_keys() -> dict:
    ed = keys.ed25519()
    kind, blob = ed.split()
    ec = keys.keygen("ecdsa", 256)
    return {
        "empty": "",
        "type only": "ssh-ed25519",
        "embedded newline": f"{ed}\nssh-ed25519 {blob}",
        "trailing newline": ed + "\n",
        "carriage return": f"{ed}\rx",
        "command= prefix": f'command="/bin/sh -c evil" {ed}',
        "options prefix": f"no-pty,from=\"*\" {ed}",
        "dsa": "ssh-dss " + blob,
        "unknown type": "ssh-foo " + blob,
        "type mismatch": f"ssh-rsa {blob}",
        "bad base64": f"{kind} {blob[:-3]}!!!",
        "base64 padding": f"{kind} {blob}=",
        "truncated blob": _tamper(ed, lambda b: b[:-1]),
        "trailing bytes": _tamper(ed, lambda b: b + b"\0"),
        "short ed25519": f"{kind} " + base64.b64encode(keys.string(b"ssh-ed25519") + keys.string(b"x" * 31)).decode(),
        "rsa 1024": keys.keygen("rsa", 1024),
        "rsa over 16384": keys.rsa(16392),
        "ecdsa curve mismatch": ec.replace("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", 1),
        "ecdsa point off curve": _tamper(ec, lambda b: b[:-1] + bytes([b[-1] ^ 1])),
        "sk without application": "sk-ssh-ed25519@openssh.com " + base64.b64encode(
            keys.string(b"sk-ssh-ed25519@openssh.com") + keys.string(os.urandom(32))).decode(),
        "control character": f"{ed} comment\x1b[31m",
        "C1 control character": f"{ed} comment\x9b31m",
        "Unicode line separator": f"{ed} comment\u2028ssh-ed25519 {blob}",
        "next line (NEL)": f"{ed} comment\x85ssh-ed25519 {blob}",
    }


def test_invalid_keys_are_refused_and_never_written(api, root):
    before = userdata_path(root).read_bytes()
    for name, key in invalid_keys().items():
        for method, url in (("PUT", "/services/ssh/key/send"), ("POST", "/services/ssh/keys/user1"),
                            ("POST", "/services/ssh/keys/tester")):
            r = api.request(method, url, json={"public_key": key})
            assert r.status_code == 400, (name, url, r.text)
            assert r.json()["error"]
    assert userdata_path(root).read_bytes() == before
    text = userdata_path(root).read_text()
    assert "command=" not in text and "evil" not in text and "ssh-dss" not in text


def test_add_user_key_failures(api, root):
    key = keys.ed25519()
    before = userdata_path(root).read_bytes()
    r = api.post("/services/ssh/keys/root", json={"public_key": key})
    assert (r.status_code, r.json()) == (400, {"error": "The keys of root are added with AddRootKey, not AddKey"})
    assert api.post("/services/ssh/keys/ghost", json={"public_key": key}).status_code == 404
    assert api.post("/services/ssh/keys/user1", json={}).status_code == 400
    assert api.post("/services/ssh/keys/user1", json={"public_key": 5}).status_code == 400
    assert userdata_path(root).read_bytes() == before
    assert api.post("/services/ssh/keys/user1", json={"public_key": key}).status_code == 201
    assert api.post("/services/ssh/keys/user1", json={"public_key": key}).status_code == 409
    assert api.post("/services/ssh/keys/tester", json={"public_key": ROOT_KEY}).status_code == 409
    assert api.post("/services/ssh/keys/user2", json={"public_key": key}).status_code == 201
    assert userdata(root)["users"][1]["sshKeys"] == [key]


def test_delete_keys(api, root):
    user1 = api.get("/services/ssh/keys/user1").json()
    r = api.request("DELETE", "/services/ssh/keys/user1", json={"public_key": user1[0]})
    assert r.status_code == 200, r.text
    assert api.get("/services/ssh/keys/user1").json() == []
    assert api.request("DELETE", "/services/ssh/keys/user1", json={"public_key": user1[0]}).status_code == 404
    # Matched by key material: the comment may differ.
    other_comment = ROOT_KEY.rsplit(" ", 1)[0] + " elsewhere"
    assert api.request("DELETE", "/services/ssh/keys/tester", json={"public_key": other_comment}).status_code == 200
    assert userdata(root)["sshKeys"] == []
    before = userdata_path(root).read_bytes()
    for url, key, status in [("/services/ssh/keys/ghost", ROOT_KEY, 404),
                             ("/services/ssh/keys/root", keys.ed25519(), 404),
                             ("/services/ssh/keys/root", "not a key", 404),
                             ("/services/ssh/keys/root", "", 404)]:
        r = api.request("DELETE", url, json={"public_key": key})
        assert r.status_code == status, (url, key, r.text)
    assert api.request("DELETE", "/services/ssh/keys/root", json={}).status_code == 400
    assert userdata_path(root).read_bytes() == before


def test_last_root_key_leaves_placeholder(api, root):
    r = api.request("DELETE", "/services/ssh/keys/root", json={"public_key": ROOT_KEY})
    assert r.status_code == 200, r.text
    assert userdata(root)["ssh"]["rootKeys"] == [""]
    assert api.get("/services/ssh/keys/root").json() == []
    assert api.request("DELETE", "/services/ssh/keys/root", json={"public_key": ""}).status_code == 404
    key = keys.ed25519()
    assert api.put("/services/ssh/key/send", json={"public_key": key}).status_code == 201
    assert userdata(root)["ssh"]["rootKeys"] == [key]


def test_legacy_malformed_key_can_be_removed(api, root):
    edit_by_rename(root, lambda data: data["users"][1].update(sshKeys=["ssh-ed25519 not-really-a-key old"]))
    assert api.get("/services/ssh/keys/user2").json() == ["ssh-ed25519 not-really-a-key old"]
    r = api.request("DELETE", "/services/ssh/keys/user2", json={"public_key": "ssh-ed25519 not-really-a-key old"})
    assert r.status_code == 200, r.text
    assert userdata(root)["users"][1]["sshKeys"] == []


def test_twenty_concurrent_key_additions(gateway, root):
    new = [keys.ed25519(f"device{i}") for i in range(20)]

    async def add_all():
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            return await asyncio.gather(*(client.post("/services/ssh/keys/user2", json={"public_key": k})
                                          for k in new))

    assert [r.status_code for r in asyncio.run(add_all())] == [201] * 20
    stored = userdata(root)["users"][1]["sshKeys"]
    assert len(stored) == 20 and len(set(stored)) == 20 and set(stored) == set(new)


def test_ssh_routes_need_a_token(anon, root):
    before = userdata_path(root).read_bytes()
    for method, url in [("GET", "/services/ssh"), ("PUT", "/services/ssh"), ("POST", "/services/ssh/enable"),
                        ("PUT", "/services/ssh/key/send"), ("GET", "/services/ssh/keys/root"),
                        ("POST", "/services/ssh/keys/user1"), ("DELETE", "/services/ssh/keys/user1")]:
        assert anon.request(method, url).status_code == 401, url
    assert userdata_path(root).read_bytes() == before


@pytest.mark.parametrize("member, args", [("AddRootKey", ("s", "command=x ssh-ed25519 AAAA")),
                                          ("AddKey", ("ss", "user1", "ssh-rsa AAAA\nssh-rsa BBBB"))])
def test_key_errors_over_dbus(bus, daemon, member, args):
    assert refusal(bus, SSH, member, *args).name == "org.selfprivacy.Error.InvalidArgument"
    assert refusal(bus, SSH, "AddKey", "ss", "ghost", keys.ed25519()).name == "org.selfprivacy.Error.NotFound"
    assert refusal(bus, SSH, "AddKey", "ss", "root", keys.ed25519()).name == "org.selfprivacy.Error.InvalidArgument"
    assert refusal(bus, SSH, "AddRootKey", "s", ROOT_KEY).name == "org.selfprivacy.Error.AlreadyExists"


def test_user_entry_without_keys(api, root):
    """user2 of the demo server has no sshKeys: listed as none, and a key can be added."""
    assert api.get("/services/ssh/keys/user2").json() == []
    key = keys.ed25519("k")
    assert api.post("/services/ssh/keys/user2", json={"public_key": key}).status_code == 201
    assert api.get("/services/ssh/keys/user2").json() == [key]


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
