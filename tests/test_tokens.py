"""API tokens end to end: HTTP -> gateway -> D-Bus -> daemon -> token store on disk."""

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from mnemonic import Mnemonic

from stack import BUS_NAME, PATH, SECOND_TOKEN, TOKEN, Daemon, call, files_containing, get_property, refusal
from userdata_helpers import userdata, userdata_path

from spd.contract import TOKENS, USERS

STORE = "var/lib/spd/tokens.json"


def store_bytes(root):
    return (root / STORE).read_bytes()


def edit_store(root, change):
    """Change the token store the way an operator's script would (the daemon re-reads it)."""
    path = root / STORE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def future(**delta):
    return (datetime.now(timezone.utc) + timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def iso(text):
    """Parse the way the app does (Dart's DateTime.parse accepts this ISO-8601 shape)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the 1.2 server's files ------------------------------------------------------------------

def test_legacy_tokens_are_imported_and_leave_no_plaintext(api, gateway, root):
    assert api.get("/auth/tokens").status_code == 200
    r = httpx.get(gateway.url + "/auth/tokens", headers={"Authorization": f"Bearer {SECOND_TOKEN}"})
    assert r.status_code == 200
    assert [t["name"] for t in r.json() if t["is_caller"]] == ["second_token"]
    for secret in (TOKEN, SECOND_TOKEN, "legacy-api-token-from-userdata"):
        assert files_containing(root, secret) == []
    assert not (root / "etc/nixos/userdata/tokens.json").exists()
    assert (root / STORE).stat().st_mode & 0o777 == 0o600
    assert userdata(root)["api"] == {"enableSwagger": False, "skippedMigrations": []}


def test_api_token_from_userdata_without_tokens_json(bus, root, tmp_path):
    (root / "etc/nixos/userdata/tokens.json").unlink()
    d = Daemon(bus, root, tmp_path)
    try:
        assert call(bus, TOKENS, "Authenticate", "s", "legacy-api-token-from-userdata") == ["primary_token"]
        assert files_containing(root, "legacy-api-token-from-userdata") == []
    finally:
        assert d.stop() == 0


def test_legacy_pending_mnemonics_are_imported(bus, root, tmp_path):
    words = Mnemonic("english")
    recovery, new_device = bytes(range(24)), bytes(range(100, 116))
    legacy = {
        "tokens": [{"token": TOKEN, "name": "primary_token", "date": "2022-07-15 17:41:31.675698"}],
        "recovery_token": {"token": recovery.hex(), "date": "2022-11-11 11:48:54.228038",
                           "expiration": None, "uses_left": 2},
        "new_device": {"token": new_device.hex(), "date": "2022-11-11 11:48:54.228038",
                       "expiration": "2099-01-01 00:00:00.000000"},
    }
    (root / "etc/nixos/userdata/tokens.json").write_text(json.dumps(legacy))
    d = Daemon(bus, root, tmp_path)
    try:
        assert get_property(bus, TOKENS, "Recovery") == [True, True, "2022-11-11T11:48:54.228038Z", "", 2]
        assert call(bus, TOKENS, "UseRecovery", "ss", words.to_mnemonic(recovery), "laptop")[0]
        assert call(bus, TOKENS, "AuthorizeNewDevice", "ss", words.to_mnemonic(new_device), "tablet")[0]
        assert files_containing(root, recovery.hex()) == [] and files_containing(root, new_device.hex()) == []
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("uses", [-1, "2", 0])
def test_legacy_recovery_token_with_odd_uses_cannot_be_used(bus, root, tmp_path, uses):
    """A negative or non-numeric count must not mean "unlimited" (nor crash the redeem)."""
    recovery = bytes(range(24))
    legacy = {"tokens": [], "recovery_token": {"token": recovery.hex(), "date": "2022-11-11 11:48:54.228038",
                                               "expiration": None, "uses_left": uses}}
    (root / "etc/nixos/userdata/tokens.json").write_text(json.dumps(legacy))
    d = Daemon(bus, root, tmp_path)
    try:
        assert get_property(bus, TOKENS, "Recovery")[1:2] == [False]
        error = refusal(bus, TOKENS, "UseRecovery", "ss", Mnemonic("english").to_mnemonic(recovery), "x")
        assert error.name == "org.selfprivacy.Error.NotFound"
    finally:
        assert d.stop() == 0


def test_second_daemon_on_the_same_bus_refuses_to_start(bus, daemon, root, tmp_path):
    (tmp_path / "second").mkdir()
    with pytest.raises(RuntimeError, match="already owned"):
        Daemon(bus, root, tmp_path / "second")


# --- authentication -----------------------------------------------------------------------

def test_missing_and_invalid_tokens(anon):
    r = anon.get("/auth/tokens")
    assert (r.status_code, r.json()) == (401, {"error": "Missing Authorization header"})
    for header in ("Bearer nope", "Bearer", "Basic " + TOKEN, TOKEN, "Bearer " + "x" * 600):
        r = anon.get("/auth/tokens", headers={"Authorization": header})
        assert (r.status_code, r.json()) == (401, {"error": "Invalid token"}), header[:20]


def test_token_list(api):
    tokens = api.get("/auth/tokens").json()
    assert sorted(t["name"] for t in tokens) == ["primary_token", "second_token"]
    assert [t["name"] for t in tokens if t["is_caller"]] == ["primary_token"]
    for t in tokens:
        assert set(t) == {"name", "date", "is_caller"}
        assert iso(t["date"]).tzinfo is not None


def test_refresh_replaces_the_callers_token_at_once(api, gateway, bus):
    r = api.post("/auth/tokens")
    assert r.status_code == 200
    new = r.json()["token"]
    assert len(new) >= 43 and new != TOKEN
    assert api.get("/auth/tokens").status_code == 401  # old token, cached a moment ago
    ok = httpx.get(gateway.url + "/auth/tokens", headers={"Authorization": f"Bearer {new}"})
    assert ok.status_code == 200 and [t["name"] for t in ok.json() if t["is_caller"]] == ["primary_token"]
    assert refusal(bus, TOKENS, "Authenticate", "s", TOKEN).name == "org.selfprivacy.Error.NotFound"


def test_delete_token(api, gateway):
    second = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {SECOND_TOKEN}"})
    assert second.get("/auth/tokens").status_code == 200  # now cached by the gateway
    r = api.request("DELETE", "/auth/tokens", json={"token_name": "second_token"})
    assert (r.status_code, r.json()) == (200, {"message": "Token deleted"})
    assert second.get("/auth/tokens").status_code == 401
    assert [t["name"] for t in api.get("/auth/tokens").json()] == ["primary_token"]


def test_delete_token_by_the_api_documents_field(api):
    r = api.request("DELETE", "/auth/tokens", json={"token": "second_token"})
    assert r.status_code == 200


@pytest.mark.parametrize("body, status", [
    ({"token_name": "primary_token"}, 400),  # the caller's own token
    ({"token_name": "no_such_device"}, 404),
    ({}, 400),
    ({"token_name": ""}, 400),
    ({"token_name": 5}, 400),
    ({"token_name": "second_token", "extra": 1}, 400),
])
def test_delete_token_failures_change_nothing(api, root, body, status):
    before = store_bytes(root)
    r = api.request("DELETE", "/auth/tokens", json=body)
    assert r.status_code == status and isinstance(r.json()["error"], str)
    assert store_bytes(root) == before


# --- new device ---------------------------------------------------------------------------

def test_new_device_flow(api, anon, root):
    words = api.post("/auth/new_device").json()["token"]
    assert len(words.split()) == 12 and Mnemonic("english").check(words)
    assert words not in store_bytes(root).decode()
    r = anon.post("/auth/new_device/authorize", json={"token": words, "device": "Pixel 7 (work)"})
    assert r.status_code == 200 and r.json()["message"] == "Device authorized"
    token = r.json()["token"]
    mine = anon.get("/auth/tokens", headers={"Authorization": f"Bearer {token}"}).json()
    assert [t["name"] for t in mine if t["is_caller"]] == ["Pixel_7__work_"]
    again = anon.post("/auth/new_device/authorize", json={"token": words, "device": "other"})
    assert again.status_code == 404


def test_new_device_replaced_forgotten_and_expired(api, anon, root):
    first = api.post("/auth/new_device").json()["token"]
    second = api.post("/auth/new_device").json()["token"]
    assert anon.post("/auth/new_device/authorize", json={"token": first, "device": "a"}).status_code == 404
    r = api.delete("/auth/new_device")
    assert (r.status_code, r.json()) == (200, {"token": None})
    assert anon.post("/auth/new_device/authorize", json={"token": second, "device": "a"}).status_code == 404
    third = api.post("/auth/new_device").json()["token"]
    edit_store(root, lambda d: d["new_device"].update(expiration="2020-01-01T00:00:00.000000Z"))
    r = anon.post("/auth/new_device/authorize", json={"token": third, "device": "a"})
    assert r.status_code == 404


def test_clashing_and_empty_device_names(api, anon):
    names = []
    for device in ("phone", "phone", ""):
        words = api.post("/auth/new_device").json()["token"]
        token = anon.post("/auth/new_device/authorize", json={"token": words, "device": device}).json()["token"]
        me = anon.get("/auth/tokens", headers={"Authorization": f"Bearer {token}"}).json()
        names += [t["name"] for t in me if t["is_caller"]]
    assert len(set(names)) == 3 and names[0] == "phone" and names[1].startswith("phone") and names[2]


# --- recovery -----------------------------------------------------------------------------

def test_recovery_flow(api, anon):
    assert api.get("/auth/recovery_token").json() == {
        "exists": False, "valid": False, "date": None, "expiration": None, "uses_left": None}
    r = api.post("/auth/recovery_token", json={"expiration": future(days=2), "uses": 2})
    assert r.status_code == 200
    words = r.json()["token"]
    assert len(words.split()) == 18
    status = api.get("/auth/recovery_token").json()
    assert status["exists"] and status["valid"] and status["uses_left"] == 2
    assert iso(status["expiration"]) > datetime.now(timezone.utc) and iso(status["date"])
    token = anon.post("/auth/recovery_token/use", json={"token": words, "device": "laptop"}).json()["token"]
    assert anon.get("/auth/tokens", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert api.get("/auth/recovery_token").json()["uses_left"] == 1
    assert anon.post("/auth/recovery_token/use", json={"token": words, "device": "l2"}).status_code == 200
    status = api.get("/auth/recovery_token").json()
    assert (status["uses_left"], status["valid"]) == (0, False)
    assert anon.post("/auth/recovery_token/use", json={"token": words, "device": "l3"}).status_code == 404


def test_recovery_without_limits_and_replacement(api, anon):
    first = api.post("/auth/recovery_token", json={}).json()["token"]
    status = api.get("/auth/recovery_token").json()
    assert (status["valid"], status["expiration"], status["uses_left"]) == (True, None, None)
    second = api.post("/auth/recovery_token").json()["token"]
    assert anon.post("/auth/recovery_token/use", json={"token": first, "device": "x"}).status_code == 404
    for _ in range(3):
        assert anon.post("/auth/recovery_token/use", json={"token": second, "device": "x"}).status_code == 200


def test_recovery_expired(api, anon, root):
    words = api.post("/auth/recovery_token", json={"expiration": future(minutes=5)}).json()["token"]
    edit_store(root, lambda d: d["recovery_token"].update(expiration="2020-01-01T00:00:00.000000Z"))
    assert api.get("/auth/recovery_token").json()["valid"] is False
    assert anon.post("/auth/recovery_token/use", json={"token": words, "device": "x"}).status_code == 404


@pytest.mark.parametrize("body", [
    {"expiration": "2020-01-01T00:00:00.000Z"},
    {"expiration": "next tuesday"},
    {"expiration": "9999-12-31T23:59:59-12:00"},  # after year 9999 in UTC: no date can hold it
    {"expiration": "0001-01-01T00:30:00+01:00"},
    {"expiration": 5},
    {"uses": 0},
    {"uses": -3},
    {"uses": "2"},
    {"uses": True},
    {"uses": 1.5},
    {"uses": 2**40},
    {"expires": "2030-01-01T00:00:00Z"},
])
def test_recovery_create_rejects_bad_input(api, root, body):
    before = store_bytes(root)
    r = api.post("/auth/recovery_token", json=body)
    assert r.status_code == 400 and r.json()["error"]
    assert store_bytes(root) == before


def test_recovery_uses_are_never_exceeded_under_concurrency(api, gateway):
    words = api.post("/auth/recovery_token", json={"uses": 3}).json()["token"]
    start = threading.Barrier(20)

    def redeem(i):
        with httpx.Client(base_url=gateway.url, timeout=30) as c:
            start.wait()
            return c.post("/auth/recovery_token/use", json={"token": words, "device": f"d{i}"},
                          headers={"X-Real-IP": f"10.0.0.{i}"}).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(redeem, range(20)))
    assert sorted(codes) == [200] * 3 + [404] * 17
    assert len(api.get("/auth/tokens").json()) == 2 + 3


def test_new_device_words_work_once_under_concurrency(api, gateway):
    words = api.post("/auth/new_device").json()["token"]
    start = threading.Barrier(10)

    def redeem(i):
        with httpx.Client(base_url=gateway.url, timeout=30) as c:
            start.wait()
            return c.post("/auth/new_device/authorize", json={"token": words, "device": f"d{i}"}).status_code

    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(redeem, range(10)))
    assert sorted(codes) == [200] + [404] * 9


# --- the unauthenticated redeem routes -------------------------------------------------------

@pytest.mark.parametrize("route", ["/auth/new_device/authorize", "/auth/recovery_token/use"])
def test_wrong_expired_and_missing_look_the_same(api, anon, route, root):
    garbage = anon.post(route, json={"token": "not even words", "device": "x"})
    valid_but_unknown = anon.post(route, json={"token": Mnemonic("english").generate(128), "device": "x"})
    assert garbage.status_code == valid_but_unknown.status_code == 404
    assert garbage.json() == valid_but_unknown.json()


@pytest.mark.parametrize("route", ["/auth/new_device/authorize", "/auth/recovery_token/use"])
@pytest.mark.parametrize("body", [{}, {"token": "abandon"}, {"device": "x"}, {"token": 1, "device": "x"},
                                  {"token": "a", "device": ["x"]}, {"token": "a", "device": "x" * 300}])
def test_redeem_rejects_bad_input(anon, root, route, body):
    before = store_bytes(root)
    r = anon.post(route, json=body)
    assert r.status_code == 400 and r.json()["error"]
    assert store_bytes(root) == before


def test_device_names_cannot_forge_log_lines(api, anon, daemon):
    words = api.post("/auth/new_device").json()["token"]
    device = "pc\nspd.access: INFO: uid=0 call=forged result=ok"
    r = anon.post("/auth/new_device/authorize", json={"token": words, "device": device})
    assert r.status_code == 200
    assert "\nspd.access: INFO: uid=0 call=forged" not in daemon.process.log()
    assert "new device authorized: pc_spd_access" in daemon.process.log()


def test_failed_redeems_are_limited_per_client(api, anon):
    words = api.post("/auth/new_device").json()["token"]
    wrong = {"token": Mnemonic("english").generate(128), "device": "x"}
    nginx = {"X-Real-IP": "203.0.113.7", "X-Forwarded-For": "203.0.113.7"}
    codes = [anon.post("/auth/new_device/authorize", json=wrong, headers=nginx).status_code for _ in range(12)]
    assert codes[:10] == [404] * 10 and codes[10:] == [429, 429]
    blocked = anon.post("/auth/new_device/authorize", json={"token": words, "device": "x"}, headers=nginx)
    assert blocked.status_code == 429 and blocked.json()["error"]
    other = anon.post("/auth/new_device/authorize", json={"token": words, "device": "x"},
                      headers={"X-Real-IP": "198.51.100.1"})
    assert other.status_code == 200


def test_concurrent_failed_redeems_cannot_outrun_the_limit(anon):
    wrong = {"token": Mnemonic("english").generate(128), "device": "x"}
    nginx = {"X-Real-IP": "203.0.113.9"}
    barrier = threading.Barrier(30)

    def attempt(_):
        with httpx.Client(base_url=str(anon.base_url), timeout=30) as client:
            barrier.wait()
            return client.post("/auth/recovery_token/use", json=wrong, headers=nginx).status_code

    with ThreadPoolExecutor(30) as pool:
        codes = list(pool.map(attempt, range(30)))
    assert codes.count(404) == 10 and codes.count(429) == 20, codes


# --- malformed requests ---------------------------------------------------------------------

@pytest.mark.parametrize("raw", [b"{", b"[]", b'"x"', b"null", b"\xff\xfe", b'{"token": "\\ud800", "device": "x"}',
                                 b'{"token": "a\\u0000b", "device": "x"}', b'{"token": {"a": 1}, "device": "x"}'])
def test_malformed_bodies(anon, root, raw):
    before = store_bytes(root)
    r = anon.post("/auth/recovery_token/use", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]
    assert store_bytes(root) == before


def test_huge_body_is_refused(api, root):
    before = store_bytes(root)
    r = api.post("/auth/recovery_token", content=b'{"expiration": "' + b"9" * 200_000 + b'"}')
    assert r.status_code == 413 and r.json()["error"]
    assert store_bytes(root) == before


def test_unknown_routes_and_methods_answer_json(api):
    r = api.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"]
    r = api.put("/auth/tokens")
    assert r.status_code == 405 and r.json()["error"]


# --- the same over D-Bus -----------------------------------------------------------------------

def test_tokens_over_dbus(daemon, bus):
    assert sorted(n for n, _ in get_property(bus, TOKENS, "Devices")) == ["primary_token", "second_token"]
    words = call(bus, TOKENS, "CreateNewDevice")[0]
    token = call(bus, TOKENS, "AuthorizeNewDevice", "ss", words, "desk top")[0]
    assert call(bus, TOKENS, "Authenticate", "s", token) == ["desk_top"]
    new = call(bus, TOKENS, "Refresh", "s", token)[0]
    assert refusal(bus, TOKENS, "Authenticate", "s", token).name == "org.selfprivacy.Error.NotFound"
    call(bus, TOKENS, "Delete", "s", "desk_top")
    assert refusal(bus, TOKENS, "Authenticate", "s", new).name == "org.selfprivacy.Error.NotFound"
    words = call(bus, TOKENS, "CreateRecovery", "si", "", 1)[0]
    assert get_property(bus, TOKENS, "Recovery")[:2] == [True, True]
    assert call(bus, TOKENS, "UseRecovery", "ss", words, "x")[0]
    error = refusal(bus, TOKENS, "UseRecovery", "ss", words, "x")
    assert (error.name, error.text) == ("org.selfprivacy.Error.NotFound", "Token not found or expired")
    call(bus, TOKENS, "CreateNewDevice")
    call(bus, TOKENS, "ForgetNewDevice")
    assert refusal(bus, TOKENS, "CreateRecovery", "si", "garbage", 1).name == "org.selfprivacy.Error.InvalidArgument"
    assert refusal(bus, TOKENS, "Delete", "s", "nobody").name == "org.selfprivacy.Error.NotFound"


def test_busctl_introspect_shows_tokens(daemon, bus):
    # what an operator types
    r = subprocess.run(["busctl", f"--address={bus.address}", "introspect", BUS_NAME, PATH, TOKENS],
                       capture_output=True, text=True, check=True)
    members = {line.split()[0] for line in r.stdout.splitlines() if line.startswith(".")}
    assert {".Authenticate", ".Devices", ".Refresh", ".Delete", ".CreateNewDevice", ".ForgetNewDevice",
            ".AuthorizeNewDevice", ".Recovery", ".CreateRecovery", ".UseRecovery",
            ".Changed"} <= members


def test_a_corrupt_legacy_tokens_file_does_not_stop_the_daemon(bus, root, tmp_path):
    """The 1.2 server's tokens.json cannot be read: spd starts, says so, and keeps the file and
    userdata's api.token for the operator (nothing imported, nothing lost)."""
    legacy = root / "etc/nixos/userdata/tokens.json"
    legacy.write_text('{"tokens": [{"token": "abc"')
    userdata = userdata_path(root).read_bytes()
    daemon = Daemon(bus, root, tmp_path)
    try:
        assert "tokens.json is not valid JSON" in daemon.process.log()
        assert get_property(bus, USERS, "Users") == ["user1", "user2"]
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.process.log(), daemon.process.log()
    assert legacy.read_text() == '{"tokens": [{"token": "abc"'
    assert userdata_path(root).read_bytes() == userdata


def test_a_fixed_legacy_tokens_file_is_imported_at_the_next_start(bus, root, tmp_path):
    """The operator fixes the 1.2 server's tokens.json: the next start imports it and removes it."""
    legacy = root / "etc/nixos/userdata/tokens.json"
    good = legacy.read_text()
    legacy.write_text('{"tokens": [{"token": "abc"')
    daemon = Daemon(bus, root, tmp_path)
    try:
        assert refusal(bus, TOKENS, "Authenticate", "s", TOKEN).name == "org.selfprivacy.Error.NotFound"
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
