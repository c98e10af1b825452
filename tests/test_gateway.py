import json

import httpx

from stack import TOKEN, call

from spd.contract import TOKENS


def test_version_is_public(anon):
    r = anon.get("/api/version")
    assert r.status_code == 200
    assert r.json()["version"].startswith("1.2.")


def test_tokens_over_http_and_dbus(api, bus):
    r = api.get("/auth/tokens")
    assert r.status_code == 200, r.text
    names = {t["name"]: t["is_caller"] for t in r.json()}
    assert names == {"primary_token": True, "second_token": False}
    assert call(bus, TOKENS, "Authenticate", "s", TOKEN) == ["primary_token"]


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


def test_a_stopped_daemon_answers_reads_sooner_than_writes(api, daemon):
    """SIGSTOP: the daemon holds every call. A read answers 503 after the read timeout, well before
    the call timeout of the routes that change something (which the client here would not wait for)."""
    import signal

    from spd.rest.routes import CALL_TIMEOUT, READ_TIMEOUT
    from spd.rest.routes import ROUTES

    assert READ_TIMEOUT < CALL_TIMEOUT
    for route in ROUTES:
        assert route.timeout == (CALL_TIMEOUT if route.changes else READ_TIMEOUT), route.path
    assert api.get("/users").status_code == 200
    daemon.process.proc.send_signal(signal.SIGSTOP)
    try:
        # (a property the gateway's mirror already has answers at once: ask for one it has not read yet)
        r = api.get("/services/ssh/keys/tester", timeout=(READ_TIMEOUT + CALL_TIMEOUT) / 2)
        assert (r.status_code, r.json()) == (503, {"error": "The SelfPrivacy daemon did not answer in time"})
    finally:
        daemon.process.proc.send_signal(signal.SIGCONT)
    assert api.get("/users").status_code == 200


def test_every_change_leaves_one_audit_line_without_secrets(api, daemon, gateway):
    """Device, method, path and status, once per request that changes something; nothing for reads;
    no password, token or mnemonic in either log."""
    password = "Corr3ct-Horse-Battery-9f2d"
    assert api.get("/users").status_code == 200
    r = api.post("/users", json={"username": "auditee", "password": password})
    assert r.status_code == 201, r.text
    assert api.post("/users", json={"username": "auditee", "password": password}).status_code == 409
    mnemonic = api.post("/auth/new_device").json()["token"]
    applied = api.get("/system/configuration/apply").status_code  # a GET that changes something
    gateway.stop()
    assert daemon.stop() == 0
    lines = [line for line in gateway.process.log().splitlines() if "request=" in line]
    assert lines == ["spd-gateway: INFO: device=primary_token request=POST /users status=201",
                     "spd-gateway: INFO: device=primary_token request=POST /users status=409",
                     "spd-gateway: INFO: device=primary_token request=POST /auth/new_device status=200",
                     "spd-gateway: INFO: device=primary_token request=GET /system/configuration/apply "
                     f"status={applied}"], lines
    for log in (gateway.process.log(), daemon.process.log()):
        for secret in (password, TOKEN, mnemonic, mnemonic.split()[0] + " " + mnemonic.split()[1]):
            assert secret not in log


def test_answer_headers_are_sent_once_and_stripped_of_line_breaks():
    """gateway.app.Answer sends its fixed headers pre-encoded and printable values as they are: a
    caller's value for a fixed header does not make a second one, and CR/LF/NUL are still removed."""
    from sanic.headers import format_http1_response

    from gateway.app import Answer

    answer = Answer({"error": "x"}, status=405,
                    headers={"Cache-Control": "max-age=60", "Allow": "GET", "X-Odd": "a\r\nSet-Cookie: b\x00"})
    head = format_http1_response(405, answer.processed_headers).decode()
    lines = head.split("\r\n")
    assert [line for line in lines if line.lower().startswith("cache-control")] == ["cache-control: no-store"]
    assert "x-content-type-options: nosniff" in lines and "Allow: GET" in lines
    assert "X-Odd: aSet-Cookie: b" in lines and "content-type: application/json" in lines
    assert answer.body == b'{"error":"x"}'
