"""The OpenAPI document (generated from the route table) and the request-body checks that share its
field definitions."""

import json
import re

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from spd.rest import openapi
from spd.rest.fields import INT32_MAX, INT32_MIN, Field
from spd.rest.routes import ROUTES


@pytest.fixture(scope="module")
def document():
    return openapi.document()


def operations(doc):
    return [(method.upper(), path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def test_served_document_is_the_generated_one_and_valid(anon, document):
    r = anon.get("/api/swagger.json")
    assert r.status_code == 200
    served = r.json()
    assert served == json.loads(json.dumps(document))
    validate(served)  # raises on an invalid OpenAPI document
    assert served["openapi"].startswith("3.0.")


def test_every_route_once(document):
    ops = operations(document)
    assert sorted((m, p) for m, p, _ in ops) == sorted(
        (r.method, openapi.openapi_path(r.path)) for r in ROUTES)
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_operation_follows_its_route(route, document):
    op = document["paths"][openapi.openapi_path(route.path)][route.method.lower()]
    responses = op["responses"]
    assert str(route.status) in responses
    if route.response is not None:
        assert responses[str(route.status)]["content"]["application/json"]["schema"] == route.response
    if route.public:
        assert op["security"] == [] and "401" not in responses
    else:
        assert op["security"] == [{"bearerAuth": []}] and "401" in responses
    assert ("503" in responses) == bool(route.steps or route.stream)  # only routes that call the daemon
    assert ("429" in responses) == (route.limited or route.stream)
    for status in route.errors:
        assert str(status if isinstance(status, int) else status[0]) in responses
    for status, r in responses.items():
        if int(status) >= 400 and not any(isinstance(e, tuple) and e[0] == int(status) for e in route.errors):
            assert r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    params = openapi.path_params(route.path)
    assert [p["name"] for p in op.get("parameters", []) if p["in"] == "path"] == params
    if params:
        assert "404" in responses and "400" in responses
    if route.fields:
        assert "400" in responses
        body = op["requestBody"]["content"]["application/json"]["schema"]
        assert body["additionalProperties"] is False
        assert set(body["properties"]) == set(route.fields)
        assert set(body.get("required", [])) == {n for n, f in route.fields.items() if f.required}
    else:
        assert "requestBody" not in op


def test_sanic_paths_become_openapi_paths():
    assert openapi.openapi_path("/users/<username>") == "/users/{username}"
    assert openapi.openapi_path("/services/ssh/keys/<username:str>") == "/services/ssh/keys/{username}"
    assert openapi.path_params("/a/<x>/b/<y:int>") == ["x", "y"]


# --- one definition: what Field.parse accepts is exactly what Field.schema() allows ---------------

PROBES = [None, True, False, 0, 1, -1, 7, 1.0, 2.5, INT32_MAX, INT32_MAX + 1, INT32_MIN, INT32_MIN - 1,
          10**30, "", "x", "a\0b", "é" * 10, "y" * 64, "y" * 65, "z" * 4096, "z" * 4097, [], [1], {},
          {"a": 1}, float("nan")]
FIELDS = [Field(str), Field(str, False), Field(str, max_length=64), Field(int), Field(int, False),
          Field(int, False, minimum=1), Field(bool), Field(bool, False)]


@pytest.mark.parametrize("spec", FIELDS, ids=repr)
def test_validation_and_schema_agree(spec):
    validator = OAS30Validator(spec.schema())
    for value in PROBES:
        if value is None:
            continue  # absent/null is the body's business (required), checked below
        try:
            spec.parse("f", value)
            accepted = True
        except Exception as e:
            assert getattr(e, "status", None) == 400, (value, e)
            accepted = False
        assert accepted == validator.is_valid(value), (spec.schema(), value)
    assert validator.is_valid(None) == (not spec.required)


# --- bodies over HTTP: every bad body is a 400 with a readable error, and changes nothing ----------

BAD_BODIES = [
    (b'{"uses": true}', "uses must be an integer"),
    (b'{"uses": 1.0}', "uses must be an integer"),
    (b'{"uses": 1e400}', "uses must be an integer"),
    (b'{"uses": NaN}', "uses must be an integer"),
    (b'{"uses": 99999999999999999999}', "uses must be at most 2147483647"),
    (b'{"uses": 2147483648}', "uses must be at most 2147483647"),
    (b'{"uses": 0}', "uses must be at least 1"),
    (b'{"uses": -5}', "uses must be at least 1"),
    (b'{"uses": "3"}', "uses must be an integer"),
    (b'{"uses": {"n": 1}}', "uses must be an integer"),
    (b'{"uses": [1]}', "uses must be an integer"),
    (b'{"expiration": {"a": {"b": 1}}}', "expiration must be a string"),
    (b'{"expiration": 5}', "expiration must be a string"),
    (b'{"expiration": "' + b"9" * 65 + b'"}', "expiration is longer than 64 characters"),
    (b'{"expiration": "\\ud800"}', "expiration is not valid UTF-8"),
    (b'{"expiration": "a\\u0000b"}', "expiration contains a NUL character"),
    (b'{"expiration": "\xff\xfe"}', "The body is not valid JSON"),
    (b'{"bogus": 1}', "Unknown field: bogus"),
    (b'{"\\ud800": 1}', "Unknown field: (a name that cannot be shown)"),
    (b'[]', "The body must be a JSON object"),
    (b'null', "The body must be a JSON object"),
    (b'"uses"', "The body must be a JSON object"),
    (b'17', "The body must be a JSON object"),
    (b'{"uses": 1', "The body is not valid JSON"),
    (b"[" * 30000 + b"]" * 30000, "The body is not valid JSON"),
    (b'{"uses": ' + b"9" * 5000 + b"}", "The body is not valid JSON"),
    (b"\r", "The body is not valid JSON"),  # whitespace is a body (an absent one is {}), and not JSON
    (b" \n", "The body is not valid JSON"),
]


def test_bad_bodies_are_400_and_change_nothing(api):
    wrong = []
    for raw, error in BAD_BODIES:
        r = api.post("/auth/recovery_token", content=raw, headers={"Content-Type": "application/json"})
        if r.status_code != 400 or r.json() != {"error": error}:
            wrong.append((raw[:60], r.status_code, r.text[:200]))
    assert not wrong
    assert api.get("/auth/recovery_token").json()["exists"] is False


def test_missing_required_field_is_400(anon):
    r = anon.post("/auth/recovery_token/use", json={"token": "words"})
    assert r.status_code == 400 and r.json() == {"error": "device is required"}
    r = anon.post("/auth/recovery_token/use", json={"token": None, "device": "d"})
    assert r.status_code == 400 and r.json() == {"error": "token is required"}


def test_null_and_absent_optional_fields_take_their_default(api):
    r = api.post("/auth/recovery_token", json={"expiration": None, "uses": None})
    assert r.status_code == 200, r.text
    status = api.get("/auth/recovery_token").json()
    assert status["exists"] and status["expiration"] is None and status["uses_left"] is None


def test_body_too_large_is_413(api):
    r = api.post("/auth/recovery_token", content=b" " * (65 * 1024))
    assert r.status_code == 413 and "error" in r.json()


@pytest.mark.parametrize("path", ["/auth/tokens%00", "/auth/%2e%2e/auth/tokens", "/auth/" + "a" * 4000,
                                  "/auth/tokens/%ff", "/auth/tokens/%ed%a0%80"])
def test_odd_paths_are_json_4xx(api, path):
    r = api.get(path)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert "error" in r.json()


def test_wrong_method_is_405_with_allow(api):
    r = api.put("/auth/tokens")
    assert r.status_code == 405
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST", "DELETE"}
    assert "error" in r.json()


def test_docs_page_works_offline(anon):
    r = anon.get("/api/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert 'fetch("swagger.json")' in r.text
    assert "http://" not in r.text and "https://" not in r.text  # nothing from a CDN


def test_allow_lists_the_methods_of_the_route_table():
    from gateway.app import _allowed_methods
    assert _allowed_methods("/auth/tokens") == ["DELETE", "GET", "POST"]
    assert _allowed_methods("/api/swagger.json") == ["GET"]
    assert _allowed_methods("/api/swaggerXjson") == []  # the dot is not a wildcard


def test_with_the_daemon_down_every_route_answers_a_documented_status(api, daemon, document):
    daemon.stop()
    for route in ROUTES:
        path = re.sub(r"<[^>]+>", "x", route.path)
        r = api.request(route.method, path, json={})
        documented = document["paths"][openapi.openapi_path(route.path)][route.method.lower()]["responses"]
        assert str(r.status_code) in documented, (route.method, route.path, r.status_code, r.text)
        if route.steps and not route.fields:
            assert r.status_code == 503 and "error" in r.json(), (route.method, route.path, r.text)
