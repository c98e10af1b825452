"""The gateway's property mirror and GET /events (live-and-local.md sections 2 and 3), with real
processes: a private bus, spd and the gateway."""

import signal

import httpx
import pytest

from sse import Events
from stack import SECOND_TOKEN, TOKEN, Daemon, Gateway, eventually
from systemd_helpers import systemd  # noqa: F401
from userdata_helpers import edit_by_rename

ALL = ["users", "ssh", "services", "timezone", "autoUpgrade", "backup", "snapshots", "tokens"]
ROUTE = {"users": "/users", "ssh": "/services/ssh", "services": "/services/status",
         "timezone": "/system/configuration/timezone", "autoUpgrade": "/system/configuration/autoUpgrade",
         "backup": "/services/restic/backup/status", "snapshots": "/services/restic/backup/list",
         "tokens": "/auth/tokens"}


def topics():
    from gateway.events import ALL_TOPICS
    return [t for t in ALL_TOPICS if t != "job"]


# --- the mirror --------------------------------------------------------------------------------

def mirrored_paths():
    """Every GET route of the table answered from the mirror, with the demo's path parameters."""
    from spd.rest.routes import ROUTES
    return [r.path.replace("<username>", "tester") for r in ROUTES if r.props]


def test_mirrored_reads_need_no_round_trip(systemd, api, daemon):  # noqa: F811
    """With the daemon stopped (SIGSTOP), the mirrored routes still answer: from the copy."""
    assert set(ROUTE.values()) <= set(mirrored_paths())
    expected = {p: api.get(p) for p in mirrored_paths()}
    assert all(r.status_code == 200 for r in expected.values()), {p: r.text for p, r in expected.items()}
    daemon.process.proc.send_signal(signal.SIGSTOP)
    try:
        for p in mirrored_paths():
            r = api.get(p, timeout=5)
            assert (r.status_code, r.json()) == (200, expected[p].json()), p
    finally:
        daemon.process.proc.send_signal(signal.SIGCONT)


def test_mirror_follows_a_hand_edit(api, root):
    assert api.get("/system/configuration/timezone").json() == "Europe/Moscow"
    edit_by_rename(root, lambda d: d.update(timezone="Asia/Tokyo"))
    assert eventually(lambda: api.get("/system/configuration/timezone").json(), "Asia/Tokyo") == "Asia/Tokyo"


def test_no_stale_read_after_a_daemon_restart(api, daemon, bus, root, tmp_path):
    """The copy is dropped when the daemon's name changes owner: what a new daemon read from a file
    changed while none ran is what the gateway answers."""
    assert api.get("/services/ssh").json() == {"enable": True, "passwordAuthentication": True}
    assert daemon.stop() == 0
    assert api.get("/services/ssh").status_code == 503
    edit_by_rename(root, lambda d: d["ssh"].update(passwordAuthentication=False))
    (tmp_path / "again").mkdir()
    again = Daemon(bus, root, tmp_path / "again")
    try:
        assert api.get("/services/ssh").json() == {"enable": True, "passwordAuthentication": False}
    finally:
        assert again.stop() == 0


def test_mirror_follows_a_recovery_token_expiring(api):
    """`valid` changes with the clock: the daemon signals that moment, and the copy follows."""
    import datetime
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    assert api.post("/auth/recovery_token", json={"expiration": expires.isoformat()}).status_code == 200
    assert api.get("/auth/recovery_token").json()["valid"] is True
    assert eventually(lambda: api.get("/auth/recovery_token").json()["valid"], False) is False


def test_read_your_writes_under_16_clients(gateway):
    """16 clients at once: each writes (creates, then deletes its own user) and, once the reply came,
    reads on another connection: the read always shows the write."""
    import concurrent.futures

    def client(i):
        name = f"ryw{i}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=60) as writer, \
                httpx.Client(base_url=gateway.url, headers=headers, timeout=60) as reader:
            for _ in range(3):
                r = writer.post("/users", json={"username": name, "password": "secret"})
                assert r.status_code == 201, r.text
                assert name in reader.get("/users").json()
                assert writer.delete(f"/users/{name}").status_code == 200
                assert name not in reader.get("/users").json()
            for enable in (False, True):  # one property each client shares: the last write wins
                assert writer.put("/services/ssh", json={"passwordAuthentication": enable}).status_code == 200

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for f in [pool.submit(client, i) for i in range(16)]:
            f.result()


def test_without_the_bus_signals_every_read_asks_the_daemon(tmp_path):
    """A bus that refuses our match rules: no copy, so a hand edit is seen at once; no /events."""
    from stack import OPEN_POLICY, Bus, make_root

    bus = Bus(tmp_path / "bus", policy=OPEN_POLICY + '\n  <limit name="max_match_rules_per_connection">0</limit>')
    daemon = gateway = None
    try:
        root = make_root(tmp_path / "root")
        daemon = Daemon(bus, root, tmp_path)
        gateway = Gateway(bus, tmp_path)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        url = gateway.url + "/system/configuration/timezone"
        assert httpx.get(url, headers=headers).json() == "Europe/Moscow"
        edit_by_rename(root, lambda d: d.update(timezone="Asia/Tokyo"))
        assert httpx.get(url, headers=headers).json() == "Asia/Tokyo"
        r = httpx.get(gateway.url + "/events", headers=headers)
        assert r.status_code == 503 and "error" in r.json()
    finally:
        for p in (gateway, daemon):
            if p is not None:
                p.stop()
        bus.stop()


# --- GET /events --------------------------------------------------------------------------------

def test_full_state_first_then_a_change(systemd, gateway, api):  # noqa: F811
    with Events(gateway.url) as events:
        assert events.status == 200
        assert events.response.headers["content-type"].startswith("text/event-stream")
        assert events.response.headers["cache-control"] == "no-store"
        assert events.response.headers["x-accel-buffering"] == "no"
        first = dict(events.take(len(topics())))
        assert sorted(first) == sorted(topics())
        for topic in topics():  # the same bodies as the routes
            assert first[topic] == api.get(ROUTE[topic]).json(), topic
        assert api.put("/system/configuration/timezone", json={"timezone": "Asia/Tokyo"}).status_code == 200
        assert events.next() == ("timezone", "Asia/Tokyo")
        assert api.put("/services/ssh", json={"enable": False}).status_code == 200
        assert events.next() == ("ssh", {"enable": False, "passwordAuthentication": True})


def test_tokens_topic_marks_the_streams_own_token(gateway):
    with Events(gateway.url, token=SECOND_TOKEN, topics="tokens") as events:
        topic, data = events.next()
        assert topic == "tokens"
        assert {t["name"]: t["is_caller"] for t in data} == {"primary_token": False, "second_token": True}


def test_topic_filter(gateway, api):
    with Events(gateway.url, topics="timezone,backup") as events:
        assert sorted(t for t, _ in events.take(2)) == ["backup", "timezone"]
        assert api.put("/services/ssh", json={"enable": False}).status_code == 200  # not asked for
        assert api.put("/system/configuration/timezone", json={"timezone": "Asia/Tokyo"}).status_code == 200
        assert events.next() == ("timezone", "Asia/Tokyo")


def test_job_topic_follows_a_rebuild(systemd, gateway, api):  # noqa: F811
    systemd.add_unit("sp-nixos-rebuild.service")
    with Events(gateway.url, topics="job,timezone") as events:
        assert events.next()[0] == "timezone"  # a job has no state before one runs
        assert api.get("/system/configuration/apply").status_code == 200
        seen = events.until("job", {"name": "apply", "result": "done"})
        assert all(topic == "job" and data["name"] == "apply" for topic, data in seen), seen


@pytest.mark.parametrize("query", ["nope", "timezone,nope", ","])
def test_unknown_topic_is_400(api, query):
    r = api.get("/events", params={"topics": query})
    assert r.status_code == 400 and "topic" in r.json()["error"]


def test_needs_a_token(anon):
    assert anon.get("/events").status_code == 401


def test_keep_alive(bus, daemon, tmp_path):
    gateway = Gateway(bus, tmp_path, env={"SPD_EVENTS_KEEPALIVE": "0.2"})
    try:
        with Events(gateway.url, topics="timezone") as events:
            assert events.next()[0] == "timezone"
            assert events.comments_only(3) == [": keep-alive"] * 3  # nothing changes: only those come
    finally:
        gateway.stop()


def test_ninth_stream_of_a_token_is_429(gateway):
    streams = [Events(gateway.url, topics="timezone") for _ in range(8)]
    try:
        assert [s.status for s in streams] == [200] * 8
        r = httpx.get(gateway.url + "/events", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 429 and "error" in r.json()
        with Events(gateway.url, token=SECOND_TOKEN, topics="timezone") as other:  # per token
            assert other.status == 200
        streams.pop().close()
        with Events(gateway.url, topics="timezone") as again:  # a closed one frees its place
            assert again.status == 200 and again.next()[0] == "timezone"
    finally:
        for s in streams:
            s.close()


def test_stream_ends_when_its_token_is_deleted(gateway, api):
    with Events(gateway.url, token=SECOND_TOKEN, topics="timezone") as second, \
            Events(gateway.url, topics="timezone") as first:
        assert second.next()[0] == "timezone" and first.next()[0] == "timezone"
        assert api.request("DELETE", "/auth/tokens", json={"token_name": "second_token"}).status_code == 200
        assert second.ended()
        # the other token's stream goes on
        assert api.put("/system/configuration/timezone", json={"timezone": "Asia/Tokyo"}).status_code == 200
        assert first.next() == ("timezone", "Asia/Tokyo")


def test_stream_ends_when_its_token_is_replaced(gateway, api):
    with Events(gateway.url, topics="timezone") as events:
        assert events.next()[0] == "timezone"
        r = api.post("/auth/tokens")
        assert r.status_code == 200
        assert events.ended()
        with Events(gateway.url, token=r.json()["token"], topics="timezone") as again:
            assert again.next() == ("timezone", "Europe/Moscow")


def test_reconnect_after_a_daemon_restart_gets_full_state(gateway, daemon, bus, root, tmp_path):
    with Events(gateway.url, topics="ssh,timezone") as events:
        assert len(events.take(2)) == 2
        assert daemon.stop() == 0
        assert events.ended()
    with Events(gateway.url) as down:
        assert down.status == 503
    edit_by_rename(root, lambda d: d.update(timezone="Asia/Tokyo"))
    (tmp_path / "again").mkdir()
    again = Daemon(bus, root, tmp_path / "again")
    try:
        with Events(gateway.url, topics="ssh,timezone") as events:
            assert dict(events.take(2)) == {"ssh": {"enable": True, "passwordAuthentication": True},
                                             "timezone": "Asia/Tokyo"}
    finally:
        assert again.stop() == 0


def test_the_document_has_the_stream(anon):
    op = anon.get("/api/swagger.json").json()["paths"]["/events"]["get"]
    assert "text/event-stream" in op["responses"]["200"]["content"]
    assert {"400", "401", "429", "503"} <= set(op["responses"])
    assert [p["name"] for p in op["parameters"]] == ["topics"]


def test_keep_alive_comes_before_the_answer_deadline():
    """A stream lives as long as lines are sent: the keep-alive must come before the gateway's
    answer deadline would cut a quiet stream off."""
    from gateway import events, protocol
    assert events.KEEPALIVE < protocol.RESPONSE_DEADLINE


# --- issue 16: restarts, revocation, HTTP/1.0, the cap, vanished clients -------------------------

def test_every_topic_right_after_a_daemon_restart(systemd, gateway, daemon, bus, root, tmp_path):  # noqa: F811
    """Streams opened after spd restarted hear every change: the job topic too, which reads no
    property when it opens, so only the bus (GetNameOwner, NameOwnerChanged) tells the gateway who
    the new daemon is."""
    systemd.add_unit("sp-nixos-rebuild.service")
    systemd.add_unit("postfix.service", "inactive")
    assert daemon.stop() == 0
    (tmp_path / "again").mkdir()
    again = Daemon(bus, root, tmp_path / "again")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with Events(gateway.url, topics="job") as job:  # first: nothing has read from the new daemon
            assert job.status == 200
            with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as api:
                assert api.get("/system/configuration/apply").status_code == 200
                job.until("job", {"name": "apply", "result": "done"})
                with Events(gateway.url, topics=",".join(topics())) as events:
                    assert sorted(t for t, _ in events.take(len(topics()))) == sorted(topics())
                    assert api.post("/users", json={"username": "fresh", "password": "secret"}).status_code == 201
                    assert "fresh" in events.until("users")[-1][1]
                    assert api.put("/services/ssh", json={"enable": False}).status_code == 200
                    assert events.until("ssh")[-1][1]["enable"] is False
                    systemd.set_state("postfix.service", "active")
                    assert events.until("services")[-1][1]["smtp"] == 0
                    assert api.put("/system/configuration/timezone", json={"timezone": "Asia/Tokyo"}).status_code == 200
                    assert events.until("timezone")[-1][1] == "Asia/Tokyo"
                    r = api.put("/system/configuration/autoUpgrade", json={"enable": False})
                    assert r.status_code == 200, r.text
                    assert events.until("autoUpgrade")[-1][1]["enable"] is False
                    assert api.request("DELETE", "/auth/tokens", json={"token_name": "second_token"}).status_code == 200
                    assert [t["name"] for t in events.until("tokens")[-1][1]] == ["primary_token"]
    finally:
        assert again.stop() == 0


def test_a_stream_never_hears_of_its_own_revocation(gateway, api):
    """The stream of a deleted token ends without the tokens event listing the devices left; the
    other token's stream gets it."""
    with Events(gateway.url, token=SECOND_TOKEN, topics="tokens") as second, \
            Events(gateway.url, topics="tokens") as first:
        assert second.next()[0] == "tokens" and first.next()[0] == "tokens"
        assert api.request("DELETE", "/auth/tokens", json={"token_name": "second_token"}).status_code == 200
        assert [t["name"] for t in first.next()[1]] == ["primary_token"]
        assert second.next() is None


def test_http_1_0_gets_the_full_state_without_chunked_encoding(gateway):
    """HTTP/1.0 has no chunked encoding (RFC 9112 7.1): one response with its length, then the end."""
    import socket
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as s:
        s.sendall(f"GET /events?topics=timezone HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    assert lines[0].split()[1] == "200", head
    assert not any(line.startswith("transfer-encoding") for line in lines), head
    assert f"content-length: {len(body)}" in lines, head
    assert body == b'event: timezone\ndata: "Europe/Moscow"\n\n'


def test_streams_of_all_tokens_are_capped(bus, daemon, tmp_path):
    gateway = Gateway(bus, tmp_path, env={"SPD_EVENTS_MAX_STREAMS": "3"})
    streams = [Events(gateway.url, topics="timezone"), Events(gateway.url, topics="timezone"),
               Events(gateway.url, token=SECOND_TOKEN, topics="timezone")]
    try:
        assert [s.status for s in streams] == [200] * 3
        for token in (TOKEN, SECOND_TOKEN):
            r = httpx.get(gateway.url + "/events", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 503 and "at most 3" in r.json()["error"]
        streams.pop().close()
        with Events(gateway.url, topics="timezone") as again:  # a closed one frees its place
            assert again.status == 200
    finally:
        for s in streams:
            s.close()
        gateway.stop()
