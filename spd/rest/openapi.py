"""The OpenAPI 3.0 document, generated from the route table (never written beside it).

Besides the statuses a route declares (`status`, `errors`), each operation documents the errors the
gateway itself can answer for it: 400 for a body or path parameter it checks, 401 when a token is
needed, 404 when a path parameter names something, 413 for a body or URL too large, 429 for routes with a
failed-attempt limit and for streams (a limit per token), and 503 for any route that calls the daemon
(which may be down) or streams its state."""

import re

from .fields import MAX_PATH_PARAM, body_schema
from .routes import ALL_TOPICS, API_VERSION, ROUTES, Route

OPENAPI_VERSION = "3.0.3"
ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
ERROR = {"$ref": "#/components/schemas/Error"}
_PARAM = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)(?::[^>]*)?>")
_REASONS = {
    200: "OK", 201: "Created", 400: "Invalid request", 401: "Missing or invalid token",
    403: "Refused", 404: "Not found", 409: "Conflict", 413: "Body or URL too large",
    429: "Too many failed attempts (or, for a stream, too many open)", 500: "Internal error",
    503: "The daemon or a backend is unreachable",
}


def path_params(sanic_path: str) -> list[str]:
    return _PARAM.findall(sanic_path)


def openapi_path(sanic_path: str) -> str:
    """/users/<username> or /users/<username:str> -> /users/{username}"""
    return _PARAM.sub(r"{\1}", sanic_path)


def operation_id(route: Route) -> str:
    words = re.findall(r"[A-Za-z0-9]+", _PARAM.sub(r"by_\1", route.path))
    return "_".join([route.method.lower(), *words])


def error_statuses(route: Route) -> dict[int, dict]:
    """Error status -> JSON Schema of its body, for one route."""
    derived = set()
    if route.fields or path_params(route.path):
        derived.add(400)
    if route.fields or path_params(route.path):
        derived.add(413)
    if not route.public:
        derived.add(401)
    if path_params(route.path):
        derived.add(404)
    if route.limited or route.stream:  # failed attempts; open streams per token
        derived.add(429)
    if route.steps or route.stream:
        derived.add(503)
    out = {status: ERROR for status in derived}
    for entry in route.errors:
        status, schema = entry if isinstance(entry, tuple) else (entry, ERROR)
        out[status] = schema
    return dict(sorted(out.items()))


def _response(status: int, schema: dict | None, description: str | None = None) -> dict:
    r = {"description": description or _REASONS.get(status, "")}
    if schema is not None:
        r["content"] = {"application/json": {"schema": schema}}
    return r


def operation(route: Route) -> dict:
    op = {"operationId": operation_id(route), "summary": route.summary}
    if route.tag:
        op["tags"] = [route.tag]
    op["security"] = [] if route.public else [{"bearerAuth": []}]
    params = path_params(route.path)
    if params:
        op["parameters"] = [{"name": name, "in": "path", "required": True,
                             "schema": {"type": "string", "minLength": 1, "maxLength": MAX_PATH_PARAM}}
                            for name in params]
    if route.stream:
        op["parameters"] = [{"name": "topics", "in": "query", "required": False,
                             "description": "comma-separated topics (default: all): " + ", ".join(ALL_TOPICS),
                             "schema": {"type": "string", "maxLength": 256}}]
    if route.fields:
        op["requestBody"] = {
            "required": any(f.required for f in route.fields.values()),
            "content": {"application/json": {"schema": body_schema(route.fields)}},
        }
    responses = {str(route.status): _response(route.status, route.response or {})}
    if route.stream:
        responses[str(route.status)]["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
    for status, schema in error_statuses(route).items():
        responses.setdefault(str(status), _response(status, schema))
    op["responses"] = responses
    return op


def document(routes=None) -> dict:
    routes = ROUTES if routes is None else routes
    paths: dict = {}
    for route in routes:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = operation(route)
    tags = list(dict.fromkeys(r.tag for r in routes if r.tag))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "SelfPrivacy API",
            "version": API_VERSION,
            "description": "REST API 1.2 of a SelfPrivacy server, served by spd-gateway. Every route "
                           "except the public ones needs `Authorization: Bearer <device token>`. "
                           "Errors are JSON objects with an `error` string.",
        },
        "tags": [{"name": t} for t in tags],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


_cached: dict | None = None


def cached_document(out=None, ctx=None) -> dict:
    """The document for the live route table, built once (a reply shaper for the route table)."""
    global _cached
    if _cached is None:
        _cached = document()
    return _cached
