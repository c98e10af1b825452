import json

import httpx

from stack import TOKEN, call


def test_version_is_public(anon):
    r = anon.get("/api/version")
    assert r.status_code == 200
    assert r.json()["version"].startswith("1.2.")


def test_tokens_over_http_and_dbus(api, bus):
    r = api.get("/auth/tokens")
    assert r.status_code == 200, r.text
    names = {t["name"]: t["is_caller"] for t in r.json()}
    assert names == {"primary_token": True, "second_token": False}
    assert call(bus, "org.selfprivacy.Tokens1", "Authenticate", "s", TOKEN) == ["primary_token"]


def test_daemon_gone_gives_503_and_coming_back_works(api, daemon, bus, root, tmp_path):
    from stack import Daemon

    assert api.get("/auth/tokens").status_code == 200
    assert daemon.stop() == 0
    r = api.get("/auth/tokens")
    assert (r.status_code, r.json()) == (503, {"error": "The SelfPrivacy daemon is not reachable"})
    (tmp_path / "again").mkdir()
    again = Daemon(bus, root, tmp_path / "again")
    try:
        assert api.get("/auth/tokens").status_code == 200
    finally:
        assert again.stop() == 0


def test_answers_are_never_cached_nor_sniffed(api, anon):
    for r in (api.post("/auth/new_device"), api.get("/auth/tokens"), anon.get("/auth/tokens"),
              anon.get("/no/such/route"), anon.post("/auth/recovery_token/use", content=b"{")):
        assert r.headers["cache-control"] == "no-store", (r.request.url, r.headers)
        assert r.headers["x-content-type-options"] == "nosniff"


def test_server_errors_never_describe_the_insides():
    from types import SimpleNamespace

    from sanic.exceptions import NotFound, ServerError

    from gateway.app import _on_exception

    request = SimpleNamespace(method="GET", path="/x")
    r = _on_exception(request, ServerError("Invalid response type <coroutine at 0x7f> in /opt/x.py"))
    assert r.status == 500 and json.loads(r.body) == {"error": "Internal error"}
    r = _on_exception(request, KeyError("secret"))
    assert r.status == 500 and json.loads(r.body) == {"error": "Internal error"}
    r = _on_exception(request, NotFound("Requested URL /x not found"))
    assert r.status == 404 and json.loads(r.body) == {"error": "Requested URL /x not found"}


def test_without_the_bus_signals_no_token_is_cached(tmp_path):
    """When the gateway cannot subscribe to Tokens1.Changed (here: a bus that allows no match rule),
    a cached token would outlive its deletion: then nothing may be cached."""
    from stack import OPEN_POLICY, SECOND_TOKEN, Bus, Daemon, Gateway, make_root

    bus = Bus(tmp_path / "bus", policy=OPEN_POLICY + '\n  <limit name="max_match_rules_per_connection">0</limit>')
    daemon = gateway = None
    try:
        daemon = Daemon(bus, make_root(tmp_path / "root"), tmp_path)
        gateway = Gateway(bus, tmp_path)
        second = {"Authorization": f"Bearer {SECOND_TOKEN}"}
        assert httpx.get(gateway.url + "/auth/tokens", headers=second).status_code == 200
        deleted = httpx.request("DELETE", gateway.url + "/auth/tokens", json={"token_name": "second_token"},
                                headers={"Authorization": f"Bearer {TOKEN}"})
        assert deleted.status_code == 200
        assert httpx.get(gateway.url + "/auth/tokens", headers=second).status_code == 401
        assert httpx.get(gateway.url + "/auth/tokens", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    finally:
        for p in (gateway, daemon):
            if p is not None:
                p.stop()
        bus.stop()
