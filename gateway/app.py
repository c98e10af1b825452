"""The Sanic app factory: one handler per row of the route table."""

import functools
import logging
import re

from sanic import Sanic
from sanic.exceptions import MethodNotAllowed, SanicException
from sanic.response import html

from spd.rest.errors import HTTPError
from spd.rest.fields import MAX_PATH_PARAM, parse_body, text
from spd.rest.routes import ROUTES, Ctx, Route, answer, shown
from spd.runtime import audit as trail
from spd.runtime.idle import Activity

from . import docs as docs_page
from . import events
from . import protocol
from .answer import Answer
from .daemon import Daemon
from .limits import FailureLimiter, client_address

log = logging.getLogger("spd-gateway")

# SPD_RESULT of the gateway's own refusals (the daemon's carry its error kind).
HTTP_KINDS = {400: "InvalidArgument", 401: "Unauthenticated", 404: "NotFound", 503: "Unavailable"}
MAX_BODY = 64 * 1024
MAX_TOKEN = 512
def create_app(bus_address: str, name: str = "spd-gateway") -> Sanic:
    app = Sanic(name)
    app.config.REQUEST_MAX_SIZE = MAX_BODY
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.ACCESS_LOG = False
    app.config.MOTD = False
    protocol.configure(app)
    app.ctx.daemon = Daemon(bus_address)
    app.ctx.limiter = FailureLimiter()
    app.ctx.activity = Activity()  # requests in progress, for the idle exit
    app.ctx.events = events.Hub(app.ctx.daemon)

    @app.before_server_start
    async def connect(app):
        try:
            await app.ctx.daemon.connect()
        except HTTPError:
            log.warning("the bus is not reachable yet; requests will answer 503 until it is")

    @app.before_server_stop
    async def end_streams(app):
        app.ctx.events.end_all()

    @app.after_server_stop
    async def disconnect(app):
        app.ctx.daemon.close()

    for i, route in enumerate(ROUTES):
        app.add_route(_handler(app, route), route.path, methods=[route.method], name=f"route{i}")

    async def docs(request):
        return html(docs_page.PAGE, headers={"X-Content-Type-Options": "nosniff"})

    app.add_route(docs, "/api/docs", methods=["GET"], name="docs")

    app.error_handler.add(Exception, _on_exception)
    return app


def _error(status: int, message: str, headers=None):
    return Answer({"error": message}, status=status, headers=headers)


def _on_exception(request, exception):
    """Sanic's own errors (unknown route, wrong method, body too large, ...) as {"error"}; anything
    unexpected is logged here and answered without its insides."""
    if isinstance(exception, SanicException):
        headers = dict(exception.headers or {})
        if isinstance(exception, MethodNotAllowed) and not headers.get("Allow"):
            # Sanic leaves Allow out for routes with parameters; a 405 must carry it (RFC 9110)
            headers["Allow"] = ", ".join(_allowed_methods(request.path))
        if exception.status_code < 500:
            return _error(exception.status_code, str(exception) or "Request error", headers or None)
    # Our bug, or one of Sanic's own 5xx errors: their text may describe our insides.
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _error(getattr(exception, "status_code", 500), "Internal error")


_PATTERNS = [(re.compile("^" + "[^/]+".join(map(re.escape, re.split(r"<[^>]+>", r.path))) + "$"), r.method)
             for r in ROUTES]


def _allowed_methods(path: str) -> list[str]:
    return sorted({method for pattern, method in _PATTERNS if pattern.match(path)})


def _handler(app, route: Route):
    daemon: Daemon = app.ctx.daemon
    limiter: FailureLimiter = app.ctx.limiter
    activity: Activity = app.ctx.activity
    hub: events.Hub = app.ctx.events
    # What does not change from one request to the next is looked up once, here.
    call = functools.partial(daemon.call, timeout=route.timeout)
    mirror = daemon.mirror
    props, changes = route.props, route.changes

    async def handle(request, **path_params):
        address = ctx = attempt = None
        status, kind = 500, ""
        activity.begin()
        try:
            ctx = Ctx(path={k: text(k, v, MAX_PATH_PARAM) for k, v in path_params.items()}
                      if path_params else {}, body={})
            if not route.public:
                ctx.token = _bearer(request)
                ctx.device = daemon.known(ctx.token) or await daemon.authenticate(ctx.token)
            if route.stream:
                topics = events.parse_topics(",".join(request.args.getlist("topics")))
                await events.serve(request, hub, ctx.token, ctx.device, topics)
                return None  # the stream was the answer
            if route.fields:
                ctx.body = parse_body(request.body, route.fields)
            if route.limited:
                address = client_address(request)
                attempt = limiter.begin(address)  # counted as failed until it is known not to be
                if attempt is None:
                    raise HTTPError(429, "Too many failed attempts; try again later")
            # A mirrored read with everything in the copy is answered without awaiting anything.
            values = props and mirror.kept(props.interface, props.names)
            if values is not None:
                status, result = shown(route, values, ctx)
            else:
                status, result = await answer(route, ctx, call, mirror.get)
        except HTTPError as e:
            status, result, kind = e.status, {"error": e.message}, e.kind
        finally:
            activity.end()
            if attempt is not None and status != 404:  # only wrong words count
                limiter.release(address, attempt)
            if changes:
                _audit(route, request.path, ctx, status, kind)
        return Answer(result, status=status)

    return handle


def _audit(route: Route, path: str, ctx: Ctx | None, status: int, kind: str) -> None:
    """The audit entry of a request that changes something (spd/runtime/audit.py): who, which D-Bus member,
    its non-secret subject, the outcome; never a body or a token. None for a request whose token
    named no device, or that the failure limiter turned away: a flood of them is not a trail."""
    device = ctx and ctx.device
    if status == 429 or not (device or route.public):
        return
    names, subject = [], ""
    for step in route.steps:
        try:
            if step.when is None or step.when(ctx):
                names.append(trail.action(step.interface, step.member))
                subject = subject or trail.target(names[-1], [source(ctx) for source in step.args])
        except (HTTPError, KeyError, TypeError):  # a body refused before it was read
            pass
    result = "ok" if status < 400 else kind or HTTP_KINDS.get(status, "Failed")
    fields = trail.gateway_entry(device, f"{route.method} {route.path}", status, names, subject, result)
    trail.write(fields, log, "device=%s request=%s %s status=%d", device or "-", route.method, path, status)


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
