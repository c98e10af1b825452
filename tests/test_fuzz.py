"""Property-based fuzzing of every route in the OpenAPI document (so every row of the route table),
with schemathesis against the real gateway and daemon, with a valid token: no 5xx, no response
outside the documented statuses and schemas, invalid input refused with a 4xx, a refusal changing no
file under the state root, and afterwards every file sound and every userdata.json key that spd
does not manage as it was.

One stack serves the whole module (the last test checks what the fuzzing left behind). systemd and
logind are python-dbusmock processes with the units the API touches; /etc/nixos is a git checkout
with an upstream so that the pull route can succeed; restic uses a local repository.

The token: `POST /auth/tokens` replaces the caller's token, so the test follows it (each request
uses the newest token). `DELETE /auth/tokens` cannot remove it (the caller's own token is refused).
"""

import json
import os
import subprocess

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from spd.rest import openapi
from spd.rest.routes import ROUTES
from stack import TOKEN, Bus, Daemon, Gateway, make_root
from systemd_helpers import LogindMock, demo_systemd
from userdata_helpers import userdata

# Examples per route and phase: enough to find the edge cases of every field, small enough that
# the whole module runs in about a minute with the full route table.
EXAMPLES = int(os.environ.get("SPD_FUZZ_EXAMPLES", "30"))

# What spd writes in userdata.json (spec/behaviour.md, "Files"); every other key must survive as is.
MANAGED = {"users", "ssh", "sshKeys", "username", "hashedMasterPassword", "timezone", "autoUpgrade",
           "backblaze", "resticPassword"}
SERVICES = {"bitwarden", "gitea", "nextcloud", "ocserv", "pleroma"}  # only their "enable" is managed


def _git_checkout(nixos, origin):
    """Make the state root's etc/nixos a checkout of a local upstream (userdata/ stays untracked)."""
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "init", "-q", "--bare", origin], check=True)
    (nixos / ".gitignore").write_text("userdata/\n")
    (nixos / "configuration.nix").write_text("{ ... }: { }\n")
    for step in (["init", "-q", "-b", "master"], ["add", "-A"], ["commit", "-q", "-m", "config"],
                 ["remote", "add", "origin", str(origin)], ["push", "-q", "-u", "origin", "master"]):
        subprocess.run([*git, "-C", nixos, *step], check=True, capture_output=True)


class Fuzz:
    def __init__(self, work):
        self.bus = Bus(work / "bus")
        self.root = make_root(work / "root")
        _git_checkout(self.root / "etc" / "nixos", work / "nixos-config.git")
        self.mocks = [demo_systemd(self.bus, work), LogindMock(self.bus, work)]
        self.daemon = Daemon(self.bus, self.root, work, env={"SPD_RESTIC_REPOSITORY": work / "restic"})
        self.gateway = Gateway(self.bus, work)
        self.token = TOKEN
        self.requests = 0
        self.userdata = userdata(self.root)  # as the daemon left it at start

    def headers(self):
        """The newest token, and a new client address each time (as nginx would set it), so that
        the failed-attempt limit of the redeem routes never stops the fuzzing from reaching the
        daemon."""
        self.requests += 1
        return {"Authorization": f"Bearer {self.token}",
                "X-Real-IP": f"10.{self.requests >> 16 & 255}.{self.requests >> 8 & 255}.{self.requests & 255}"}

    def files(self) -> dict:
        """Every file under the state root -> its bytes; not git's insides, not the (empty) lock
        files that a refused change may leave."""
        return {p: p.read_bytes() for p in self.root.rglob("*")
                if p.is_file() and ".git" not in p.relative_to(self.root).parts
                and not (p.name.startswith(".") and p.name.endswith(".lock"))}

    def stop(self):
        self.gateway.stop()
        self.daemon.stop()
        for mock in self.mocks:
            mock.stop()
        self.bus.stop()


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    f = Fuzz(tmp_path_factory.mktemp("fuzz"))
    yield f
    f.stop()


CONFIG = SchemathesisConfig.from_dict({"checks": {
    # A body can fit its schema and still be refused by a rule the schema cannot say (a timezone
    # that does not exist, a date in the past): that is a 400, not a bug.
    "positive_data_acceptance": {"enabled": False},
    # Invalid input must be refused with a 4xx; 413 (body or URL too large) is such a refusal.
    "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422,
                                                      428, 429]},
}})
# The document is built from the route table here, at collection, so each route is its own test;
# test_openapi.py checks that the gateway serves this same document.
schema = schemathesis.openapi.from_dict(openapi.document(), config=CONFIG)
STREAMS = [openapi.openapi_path(r.path) for r in ROUTES if r.stream]  # read differently: they never end


@schema.exclude(path=STREAMS).parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_route(case, fuzz):
    headers = fuzz.headers()
    before = fuzz.files()
    response = case.call(base_url=fuzz.gateway.url, headers=headers, timeout=30)
    if response.status_code >= 400:  # a refusal changes nothing
        after = fuzz.files()
        changed = sorted(str(p.relative_to(fuzz.root)) for p in before.keys() | after.keys()
                         if before.get(p) != after.get(p))
        assert not changed, f"{case.method} {case.path} answered {response.status_code} and changed {changed}"
    if case.method == "POST" and case.path == "/auth/tokens" and response.status_code == 200:
        fuzz.token = response.json()["token"]
    case.validate_response(response, headers=headers)


@schema.include(path=STREAMS).parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_stream(case, fuzz):
    """A stream never ends by itself, so it is read only up to its first event (or its error body):
    a documented status, no 5xx, and for 200 an event stream that starts with an event."""
    kwargs = case.as_transport_kwargs(base_url=fuzz.gateway.url, headers=fuzz.headers())
    with httpx.stream(kwargs["method"], kwargs["url"], params=kwargs.get("params"), headers=kwargs["headers"],
                      timeout=30) as response:
        documented = set(case.operation.definition.raw["responses"])
        if case.method.upper() != case.operation.method.upper():  # the coverage phase tries others
            documented.add("405")
        assert str(response.status_code) in documented and response.status_code < 500, response.status_code
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert next(response.iter_lines()).startswith("event: ")
        else:
            assert "error" in json.loads(response.read())


def test_state_survived_the_fuzzing(fuzz):
    """Runs after test_every_route (same module, same stack)."""
    assert fuzz.daemon.process.alive() and fuzz.gateway.process.alive()
    for name, process in (("spd", fuzz.daemon.process), ("gateway", fuzz.gateway.process)):
        assert "Traceback" not in process.log(), f"{name} logged a traceback:\n{process.log()}"
    # Every JSON file under the root parses; no temp file of an interrupted write is left.
    for path in fuzz.root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert not path.name.endswith(".tmp"), path
            if path.suffix == ".json":
                json.loads(path.read_text())
    after = userdata(fuzz.root)
    before = fuzz.userdata
    assert isinstance(after, dict)
    for key in before.keys() | after.keys():
        if key in MANAGED:
            # may change, but keeps its JSON type (a list stays a list, ...)
            if key in before and key in after:
                assert type(after[key]) is type(before[key]), key
        elif key in SERVICES and isinstance(before.get(key), dict):
            strip = lambda d: {k: v for k, v in d.items() if k != "enable"}  # noqa: E731
            assert strip(after[key]) == strip(before[key]), key
            assert isinstance(after[key].get("enable", True), bool), key
        else:
            assert after.get(key) == before.get(key), f"{key} is not spd's and changed"
    # and the stack still answers with the token the fuzzing ended with
    r = httpx.get(fuzz.gateway.url + "/auth/tokens", headers=fuzz.headers(), timeout=30)
    assert r.status_code == 200, r.text
    assert [t["name"] for t in r.json() if t["is_caller"]] == ["primary_token"]
