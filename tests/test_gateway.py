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
