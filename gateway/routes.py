"""The route table: every REST route declared once — method, path, D-Bus member, where its arguments
come from, its body fields, and how the reply becomes the JSON the app parses. The Sanic handlers
(app.py) and the OpenAPI document are generated from it."""

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from spd.dbus.names import TOKENS

from .errors import HTTPError
from .fields import Field  # noqa: F401  (routes are declared with it)

API_VERSION = "1.2.7"


@dataclass
class Ctx:
    """What a handler knows about one request."""

    path: dict
    body: dict
    token: str | None = None  # the caller's bearer token
    device: str | None = None  # the caller's device name


@dataclass(frozen=True)
class Reply:
    """A reply shaper's answer when the status depends on the D-Bus reply."""

    status: int
    body: Any


def path(name):
    return lambda ctx: ctx.path[name]


def body(name):
    return lambda ctx: ctx.body[name]


def caller_token(ctx):
    return ctx.token


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # Sanic syntax: /users/<username>
    summary: str
    interface: str | None = None
    member: str | None = None
    signature: str = ""  # of the D-Bus arguments
    args: tuple = ()  # one callable(Ctx) per D-Bus argument
    fields: dict = field(default_factory=dict)  # JSON body: name -> Field
    reply: Callable[[list, Ctx], Any] | Any = None  # D-Bus reply -> JSON body (or a constant)
    status: int = 200
    public: bool = False  # no bearer token needed
    limited: bool = False  # failed attempts are limited per client address
    check: Callable[[Ctx], None] | None = None  # a rule of the HTTP API checked before the call
    tag: str = ""
    response: dict | None = None  # JSON Schema of the success body (for OpenAPI and the fuzz tests)
    # Error statuses the daemon can answer for this route beyond those the OpenAPI document derives
    # from the route itself (see gateway/openapi.py): e.g. (404, 409), or (status, JSON Schema) pairs
    # when that status has a body other than {"error"}.
    errors: tuple = ()


# JSON Schema shorthands for `response`.
STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NUMBER = {"type": "number"}


def nullable(schema: dict) -> dict:
    return {**schema, "nullable": True}


def obj(**props) -> dict:
    """An object with exactly these properties, all present."""
    return {"type": "object", "properties": props, "required": list(props)}


def arr(items: dict) -> dict:
    return {"type": "array", "items": items}


MESSAGE = obj(message=STR)
STATUS_MESSAGE = obj(status=INT, message=STR)


def first(out, ctx):
    return out[0]


def tagged(tag: str, routes: list) -> list:
    """The same routes, grouped under one OpenAPI tag."""
    return [replace(r, tag=tag) for r in routes]


# --- tokens ------------------------------------------------------------------------------

def _token_list(out, ctx):
    return [{"name": name, "date": date, "is_caller": name == ctx.device} for name, date in out[0]]


def _token_to_delete(ctx):
    name = ctx.body.get("token_name") or ctx.body.get("token")
    if not name:
        raise HTTPError(400, "token_name is required")
    if name == ctx.device:
        raise HTTPError(400, "Cannot delete the token this request is made with")
    return name


def _recovery_status(out, ctx):
    exists, valid, date, expiration, uses = out
    return {"exists": exists, "valid": valid, "date": date or None,
            "expiration": expiration or None, "uses_left": uses if uses >= 0 else None}


def _token(out, ctx):
    return {"token": out[0]}


TOKEN = obj(token=STR)
MNEMONIC = {"token": Field(str, description="the mnemonic words"),
            "device": Field(str, description="a name for the new device", max_length=255)}

TOKEN_ROUTES = tagged("tokens", [
    Route("GET", "/auth/tokens", "List device tokens", TOKENS, "List", reply=_token_list,
          response=arr(obj(name=STR, date=STR, is_caller=BOOL))),
    Route("DELETE", "/auth/tokens", "Delete a device token", TOKENS, "Delete", "s",
          args=(_token_to_delete,), reply={"message": "Token deleted"}, response=MESSAGE, errors=(404,),
          fields={"token_name": Field(str, False, description="the device name of the token"),
                  "token": Field(str, False, description="same as token_name (API 1.2 document)")}),
    Route("POST", "/auth/tokens", "Replace the caller's token", TOKENS, "Refresh", "s",
          args=(caller_token,), reply=_token, response=TOKEN),
    Route("POST", "/auth/new_device", "Create a one-time new-device mnemonic", TOKENS,
          "CreateNewDevice", reply=_token, response=TOKEN),
    Route("DELETE", "/auth/new_device", "Forget the new-device mnemonic", TOKENS, "ForgetNewDevice",
          reply={"token": None}, response=obj(token=nullable(STR))),
    Route("POST", "/auth/new_device/authorize", "Redeem a new-device mnemonic", TOKENS,
          "AuthorizeNewDevice", "ss", args=(body("token"), body("device")), fields=MNEMONIC,
          reply=lambda out, ctx: {"message": "Device authorized", "token": out[0]},
          response=obj(message=STR, token=STR),
          public=True, limited=True, errors=(404,)),
    Route("GET", "/auth/recovery_token", "Recovery token status", TOKENS, "GetRecoveryStatus",
          reply=_recovery_status,
          response=obj(exists=BOOL, valid=BOOL, date=nullable(STR), expiration=nullable(STR),
                       uses_left=nullable(INT))),
    Route("POST", "/auth/recovery_token", "Create a recovery mnemonic", TOKENS, "CreateRecovery", "si",
          args=(lambda ctx: ctx.body["expiration"] or "", lambda ctx: ctx.body["uses"] or 0),
          reply=_token, response=TOKEN,
          fields={"expiration": Field(str, False, description="ISO-8601 date-time", max_length=64),
                  "uses": Field(int, False, minimum=1, description="how many devices it may authorize")}),
    Route("POST", "/auth/recovery_token/use", "Redeem the recovery mnemonic", TOKENS, "UseRecovery",
          "ss", args=(body("token"), body("device")), fields=MNEMONIC, reply=_token, response=TOKEN,
          public=True, limited=True, errors=(404,)),
])

# --- system --------------------------------------------------------------------------------

def _openapi_document(out, ctx):
    from .openapi import cached_document  # it reads this table: import once the table exists
    return cached_document()


COMMON_ROUTES = [
    Route("GET", "/api/version", "API version", reply={"version": API_VERSION}, public=True,
          tag="system", response=obj(version=STR)),
    Route("GET", "/api/swagger.json", "This API as an OpenAPI 3 document (browsable at /api/docs)",
          reply=_openapi_document, public=True, tag="system",
          response={"type": "object", "required": ["openapi", "info", "paths"]}),
]


ROUTES = [*TOKEN_ROUTES, *COMMON_ROUTES]
