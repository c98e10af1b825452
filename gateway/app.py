"""The Sanic app factory: one handler per row of the route table."""

import json
import logging

from sanic import Sanic
from sanic.exceptions import SanicException
from sanic.response import json as json_response

from spd.idle import Activity

from .daemon import Daemon
from .errors import HTTPError
from .limits import FailureLimiter, client_address
from .routes import ROUTES, Ctx, Reply, Route

log = logging.getLogger("spd-gateway")

MAX_BODY = 64 * 1024
MAX_TOKEN = 512


def create_app(bus_address: str, name: str = "spd-gateway") -> Sanic:
    app = Sanic(name)
    app.config.REQUEST_MAX_SIZE = MAX_BODY
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.ACCESS_LOG = False
    app.config.MOTD = False
    app.ctx.daemon = Daemon(bus_address)
    app.ctx.limiter = FailureLimiter()
    app.ctx.activity = Activity()  # requests in progress, for the idle exit

    @app.before_server_start
    async def connect(app):
        try:
            await app.ctx.daemon.connect()
        except HTTPError:
            log.warning("the bus is not reachable yet; requests will answer 503 until it is")

    @app.after_server_stop
    async def disconnect(app):
        app.ctx.daemon.close()

    for i, route in enumerate(ROUTES):
        app.add_route(_handler(app, route), route.path, methods=[route.method], name=f"route{i}")

    app.error_handler.add(Exception, _on_exception)
    return app


def _error(status: int, message: str):
    return json_response({"error": message}, status=status)


def _on_exception(request, exception):
    """Sanic's own errors (unknown route, wrong method, body too large, ...) as {"error"}; anything
    unexpected is logged here and answered without its insides."""
    if isinstance(exception, SanicException):
        return _error(exception.status_code, str(exception) or "Request error")
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _error(500, "Internal error")


def _handler(app, route: Route):
    daemon: Daemon = app.ctx.daemon
    limiter: FailureLimiter = app.ctx.limiter
    activity: Activity = app.ctx.activity

    async def handle(request, **path_params):
        address = ctx = None
        activity.begin()
        try:
            ctx = Ctx(path={k: _text(k, v) for k, v in path_params.items()}, body={})
            if not route.public:
                ctx.token = _bearer(request)
                ctx.device = await daemon.authenticate(ctx.token)
            if route.fields:
                ctx.body = _parse_body(request.body, route.fields)
            if route.limited:
                address = client_address(request)
                if limiter.blocked(address):
                    raise HTTPError(429, "Too many failed attempts; try again later")
            if route.check:
                route.check(ctx)
            args = [source(ctx) for source in route.args]
            out = await daemon.call(route.interface, route.member, route.signature, args) if route.member else []
            result = route.reply(out, ctx) if callable(route.reply) else route.reply
            status = route.status
            if isinstance(result, Reply):
                status, result = result.status, result.body
        except HTTPError as e:
            if address is not None and e.status == 404:
                limiter.failed(address)
            status, result = e.status, {"error": e.message}
        finally:
            activity.end()
        if route.method != "GET":
            log.info("%s %s %s by %s", route.method, request.path, status, (ctx and ctx.device) or "-")
        return json_response(result, status=status)

    return handle


def _bearer(request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise HTTPError(401, "Missing Authorization header")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN or not token.isascii() \
            or not token.isprintable():
        raise HTTPError(401, "Invalid token")
    return token


def _text(name: str, value: str, max_length: int = 4096) -> str:
    """A string that can travel over D-Bus: UTF-8, no NUL, bounded."""
    if len(value) > max_length:
        raise HTTPError(400, f"{name} is longer than {max_length} characters")
    if "\0" in value:
        raise HTTPError(400, f"{name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPError(400, f"{name} is not valid UTF-8") from None
    return value


def _parse_body(raw: bytes, fields: dict) -> dict:
    if raw is None or not raw.strip():
        data = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise HTTPError(400, "The body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HTTPError(400, "The body must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise HTTPError(400, f"Unknown field: {unknown[0][:64]}")
    body = {}
    for name, spec in fields.items():
        value = data.get(name)
        if value is None:
            if spec.required:
                raise HTTPError(400, f"{name} is required")
            body[name] = spec.default
            continue
        if spec.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, spec.type)
        if not ok:
            raise HTTPError(400, f"{name} must be {_TYPE_NAMES[spec.type]}")
        if isinstance(value, str):
            value = _text(name, value, spec.max_length)
        body[name] = value
    return body


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean"}
