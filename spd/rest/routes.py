"""The route table: every REST route declared once — method, path, D-Bus member, where its arguments
come from, its body fields, and how the reply becomes the JSON the app parses. The Sanic handlers
(gateway/app.py), the OpenAPI document (spd/rest/openapi.py) and spdctl's commands are generated
from it."""

import base64
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..contract import BACKUPS, PROPERTIES, SERVICE_NAMES, SERVICES, SSH, STATUS_KEYS, SYSTEM, TOKENS, USERS
from .errors import HTTPError
from .fields import Field, Setting

API_VERSION = "1.2.7"
CALL_TIMEOUT = 30.0  # calls that change something: a git pull, a job's start
READ_TIMEOUT = 10.0  # reads: a daemon that stopped answering must not hold them for the full 30 s


@dataclass(slots=True)
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


def const(value):
    return lambda ctx: value


@dataclass(frozen=True)
class Call:
    """One D-Bus call of a route; `when(ctx)` false skips it (a setting the body does not give)."""

    interface: str
    member: str
    signature: str = ""
    args: tuple = ()
    when: Callable[[Ctx], bool] | None = None


@dataclass(frozen=True)
class Props:
    """A read answered from properties: from the gateway's mirror (gateway/mirror.py), which asks the
    daemon only for what it has no copy of. `shape({name: value}, ctx)` makes the JSON body, for the
    route and for its /events topic (gateway/events.py), made again when one of `names` changes."""

    interface: str
    names: tuple
    shape: Callable[[dict, Ctx], Any]


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
    tag: str = ""
    response: dict | None = None  # JSON Schema of the success body (for OpenAPI and the fuzz tests)
    # Several calls in order instead of interface/member (each Set<Property> of a multi-field PUT);
    # the reply shaper gets the last one's reply.
    calls: tuple = ()
    # Error statuses the daemon can answer for this route beyond those the OpenAPI document derives
    # from the route itself (see spd/rest/openapi.py): e.g. (404, 409), or (status, JSON Schema) pairs
    # when that status has a body other than {"error"}.
    errors: tuple = ()
    props: Props | None = None  # answered from the mirror (see props())
    topic: str = ""  # its GET /events topic
    stream: bool = False  # answers text/event-stream (GET /events)
    acts: bool = False  # a GET that changes something: starts a job, reboots, pulls, rescans

    @property
    def changes(self) -> bool:
        """Whether the route changes something: the gateway logs it, and waits longer for it."""
        return self.method != "GET" or self.acts

    @property
    def timeout(self) -> float:
        return CALL_TIMEOUT if self.changes else READ_TIMEOUT

    @property
    def steps(self) -> tuple:
        """The D-Bus calls this route makes, in order (none for a route the gateway answers)."""
        if self.member:
            return (Call(self.interface, self.member, self.signature, self.args),)
        return self.calls


async def answer(route: Route, ctx: Ctx, call, read=None) -> tuple[int, Any]:
    """The status and JSON body of `route` for `ctx`, its D-Bus calls made with
    `await call(interface, member, signature, args)` (which raises for an error reply). A props()
    route shows `await read(interface, names)` ({name: value}): the gateway reads its mirror; without
    `read`, each property is asked with Properties.Get through `call`. The gateway answers HTTP with
    it, spdctl prints it (--json)."""
    if route.props:
        p = route.props
        if read is None:
            values = {name: (await call(PROPERTIES, "Get", "ss", [p.interface, name]))[0].value
                      for name in p.names}
        else:
            values = await read(p.interface, p.names)
        return shown(route, values, ctx)
    out = []
    for step in route.steps:
        if step.when is None or step.when(ctx):
            out = await call(step.interface, step.member, step.signature,
                             [source(ctx) for source in step.args])
    return _status(route, route.reply(out, ctx) if callable(route.reply) else route.reply)


def shown(route: Route, values: dict, ctx: Ctx) -> tuple[int, Any]:
    """The status and JSON body of a props() route, given its properties' values."""
    return _status(route, route.props.shape(values, ctx))


def _status(route: Route, result) -> tuple[int, Any]:
    if isinstance(result, Reply):
        return result.status, result.body
    return route.status, result


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


def given(name):
    """A Call's `when`: the body has this field."""
    return lambda ctx: ctx.body.get(name) is not None


def props(interface: str, names: tuple, shape, topic: str = ""):
    """The route fields of a read of these properties: shape({name: value}, ctx), from the mirror (the
    D-Bus member here is what the mirror asks the daemon for each one it has no copy of). `topic`
    names it in GET /events."""
    return dict(interface=PROPERTIES, member="Get", signature="ss", args=(const(interface), const(names[0])),
                props=Props(interface, tuple(names), shape), topic=topic)


def prop(interface: str, name: str, shape=None, topic: str = ""):
    """The route fields of a read of one property: its value, shaped by shape(value, ctx)."""
    return props(interface, (name,),
                 (lambda p, ctx: p[name]) if shape is None else (lambda p, ctx: shape(p[name], ctx)), topic)


@dataclass(frozen=True)
class Settings:
    """Settings declared once: GET `path` answers them (from the mirror), PUT `path` writes each one
    its body gives with Set<property>, and spdctl's `command` shows and sets them (spdctl/main.py).
    `single`: one setting whose GET answers its bare value and whose PUT requires it."""

    path: str
    interface: str
    topic: str
    summaries: tuple  # GET's, PUT's
    reply: str  # PUT's answer
    settings: tuple  # of Setting
    command: str  # spdctl's
    help: str  # spdctl's
    single: bool = False

    def routes(self) -> list:
        names = tuple(s.property for s in self.settings)
        if self.single:
            (only,) = self.settings
            shape, response = (lambda p, ctx: p[only.property]), _SCHEMAS[only.field.type]
        else:
            shape = lambda p, ctx: {s.name: p[s.property] for s in self.settings}  # noqa: E731
            response = obj(**{s.name: _SCHEMAS[s.field.type] for s in self.settings})
        calls = tuple(Call(self.interface, f"Set{s.property}", _SIGNATURES[s.field.type], (body(s.name),),
                           given(s.name)) for s in self.settings)
        return [Route("GET", self.path, self.summaries[0], **props(self.interface, names, shape, self.topic),
                      response=response),
                Route("PUT", self.path, self.summaries[1], calls=calls, reply=self.reply, response=STR,
                      fields={s.name: s.field for s in self.settings})]


_SCHEMAS = {bool: BOOL, str: STR}
_SIGNATURES = {bool: "b", str: "s"}


def tagged(tag: str, routes: list) -> list:
    """The same routes, grouped under one OpenAPI tag."""
    return [replace(r, tag=tag) for r in routes]


# --- tokens ------------------------------------------------------------------------------

def _token_list(devices, ctx):
    return [{"name": name, "date": date, "is_caller": name == ctx.device} for name, date in devices]


def _token_to_delete(ctx):
    name = ctx.body.get("token_name") or ctx.body.get("token")
    if not name:
        raise HTTPError(400, "token_name is required")
    if name == ctx.device:
        raise HTTPError(400, "Cannot delete the token this request is made with")
    return name


def _recovery_status(recovery, ctx):
    exists, valid, date, expiration, uses = recovery
    return {"exists": exists, "valid": valid, "date": date or None,
            "expiration": expiration or None, "uses_left": uses if uses >= 0 else None}


def _token(out, ctx):
    return {"token": out[0]}


TOKEN = obj(token=STR)
MNEMONIC = {"token": Field(str, description="the mnemonic words"),
            "device": Field(str, description="a name for the new device", max_length=255)}

TOKEN_ROUTES = tagged("tokens", [
    Route("GET", "/auth/tokens", "List device tokens",
          **prop(TOKENS, "Devices", _token_list, "tokens"),
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
    Route("GET", "/auth/recovery_token", "Recovery token status",
          **prop(TOKENS, "Recovery", _recovery_status),
          response=obj(exists=BOOL, valid=BOOL, date=nullable(STR), expiration=nullable(STR),
                       uses_left=nullable(INT))),
    Route("POST", "/auth/recovery_token", "Create a recovery mnemonic", TOKENS, "CreateRecovery", "si",
          args=(body("expiration"), body("uses")),
          reply=_token, response=TOKEN,
          fields={"expiration": Field(str, False, "", "ISO-8601 date-time; none: never", max_length=64),
                  "uses": Field(int, False, 0, "how many devices it may authorize; none: any number",
                                minimum=1)}),
    Route("POST", "/auth/recovery_token/use", "Redeem the recovery mnemonic", TOKENS, "UseRecovery",
          "ss", args=(body("token"), body("device")), fields=MNEMONIC, reply=_token, response=TOKEN,
          public=True, limited=True, errors=(404,)),
])

# --- users ---------------------------------------------------------------------------------

def _user_result(username):
    return lambda out, ctx: {"result": 0, "username": username(ctx)}


USER_RESULT = obj(result=INT, username=STR)

USER_ROUTES = tagged("users", [
    Route("GET", "/users", "List users (not the master user)", **prop(USERS, "Users", topic="users"),
          response=arr(STR)),
    Route("POST", "/users", "Create a user", USERS, "Create", "ss",
          args=(body("username"), body("password")), status=201,
          fields={"username": Field(str, description="^[a-z_][a-z0-9_]+$, at most 32 characters",
                                    max_length=256),
                  "password": Field(str, description="the user's password (no line breaks)",
                                    max_length=1024)},
          reply=_user_result(body("username")), response=USER_RESULT, errors=(409,)),
    Route("DELETE", "/users/<username>", "Delete a user", USERS, "Delete", "s",
          args=(path("username"),), reply=_user_result(path("username")), response=USER_RESULT),
])

# --- ssh -----------------------------------------------------------------------------------

def _user_keys(keys, ctx):
    user = ctx.path["username"]
    if user not in keys:
        raise HTTPError(404, f"User {user} does not exist")
    return keys[user]


PUBLIC_KEY = {"public_key": Field(str, description="one line: TYPE BASE64 [comment]", max_length=16384)}
KEY_WRITTEN = "New SSH key successfully written"

SSH_SETTINGS = Settings("/services/ssh", SSH, "ssh", ("SSH settings", "Change SSH settings (only the fields given)"),
                        "SSH settings changed", (
    Setting("enable", "Enable", Field(bool, False), "SSH", "verbs", ("enable", "disable"), ("enabled", "disabled")),
    Setting("passwordAuthentication", "PasswordAuthentication", Field(bool, False), "Password authentication",
            "password-auth"),
), "ssh", "SSH settings")

SSH_ROUTES = tagged("ssh", [
    *SSH_SETTINGS.routes(),
    Route("POST", "/services/ssh/enable", "Enable SSH", SSH, "SetEnable", "b", args=(const(True),),
          reply={"status": 0, "message": "SSH enabled"}, response=STATUS_MESSAGE),
    Route("PUT", "/services/ssh/key/send", "Add a root SSH key", SSH, "AddRootKey", "s",
          args=(body("public_key"),), fields=PUBLIC_KEY, status=201,
          reply={"status": 0, "message": KEY_WRITTEN}, response=STATUS_MESSAGE, errors=(409,)),
    Route("GET", "/services/ssh/keys/<username>", "List a user's SSH keys",
          **prop(SSH, "Keys", _user_keys), response=arr(STR)),
    Route("POST", "/services/ssh/keys/<username>", "Add an SSH key to a user (not root)", SSH, "AddKey",
          "ss", args=(path("username"), body("public_key")), fields=PUBLIC_KEY, status=201,
          reply={"message": KEY_WRITTEN}, response=MESSAGE, errors=(409,)),
    Route("DELETE", "/services/ssh/keys/<username>", "Remove a user's SSH key", SSH, "RemoveKey", "ss",
          args=(path("username"), body("public_key")), fields=PUBLIC_KEY,
          reply={"message": "SSH key deleted"}, response=MESSAGE),
])

# --- services ------------------------------------------------------------------------------

def _dkim(record, ctx):
    if not record:
        raise HTTPError(404, "DKIM key not found")
    return base64.b64encode(record.encode()).decode()


SERVICE_ROUTES = tagged("services", [
    *(Route("POST", f"/services/{service}/{action}", f"{action.capitalize()} {name}", SERVICES,
            action.capitalize(), "s", args=(const(service),),
            reply={"status": 0, "message": f"{name} {action}d"}, response=STATUS_MESSAGE)
      for service, name in SERVICE_NAMES.items() for action in ("enable", "disable")),
    Route("GET", "/services/status", "Running state of the services (0 running, 3 stopped, 4 missing)",
          **prop(SERVICES, "Status", topic="services"), response=obj(**{k: INT for k in STATUS_KEYS})),
    Route("GET", "/services/mailserver/dkim", "The DKIM record, base64",
          **prop(SERVICES, "DkimRecord", _dkim), response=STR, errors=(404,)),
])

# --- backups (restic) ---------------------------------------------------------------------

def _backup_status(props, ctx):
    return {"status": props["State"], "progress": props["Progress"],
            "error_message": props["ErrorMessage"] or None}


def _snapshots(snapshots, ctx):
    """Each snapshot as restic printed it (the D-Bus variants unwrapped)."""
    return [{k: v.value for k, v in snapshot.items()} for snapshot in snapshots]


SNAPSHOT = {"type": "object", "properties": {"short_id": STR, "time": STR, "id": STR},
            "required": ["short_id", "time"]}

BACKUP_ROUTES = tagged("backups", [
    Route("GET", "/services/restic/backup/status", "Backup status",
          **props(BACKUPS, ("State", "Progress", "ErrorMessage"), _backup_status, "backup"),
          response=obj(status=STR, progress=NUMBER, error_message=nullable(STR))),
    Route("GET", "/services/restic/backup/list", "List the backups (as last loaded)",
          **prop(BACKUPS, "Snapshots", _snapshots, "snapshots"), response=arr(SNAPSHOT)),
    Route("PUT", "/services/restic/backup/create", "Start a backup", BACKUPS, "StartBackup",
          reply={"status": 0, "message": "Backup creation has started"}, response=STATUS_MESSAGE,
          errors=(400, 409)),
    Route("GET", "/services/restic/backup/reload", "Reload the backup list in the background", BACKUPS,
          "Reload", reply={"status": 0, "message": "Snapshots reload started"}, response=STATUS_MESSAGE,
          acts=True),
    Route("PUT", "/services/restic/backup/restore", "Start restoring a backup", BACKUPS, "StartRestore",
          "s", args=(body("backupId"),), fields={"backupId": Field(str, description="short_id of the backup",
                                                                   max_length=64)},
          reply={"status": 0, "message": "Backup restoration procedure started"}, response=STATUS_MESSAGE,
          errors=(404, 409)),
    Route("PUT", "/services/restic/backblaze/config", "Set the Backblaze B2 credentials", BACKUPS,
          "SetBackblazeConfig", "sss", args=(body("accountId"), body("accountKey"), body("bucket")),
          fields={"accountId": Field(str, description="B2 key ID", max_length=256),
                  "accountKey": Field(str, description="B2 application key", max_length=256),
                  "bucket": Field(str, description="B2 bucket name", max_length=63)},
          reply={"status": 0, "message": "New Backblaze settings saved"}, response=STATUS_MESSAGE),
])

# --- system --------------------------------------------------------------------------------


PULL = obj(status=INT, message=STR, data=STR)


def _pull(out, ctx):
    code, output = out
    if code == 0:
        return {"status": 0, "message": "Update completed successfully", "data": output}
    return Reply(500, {"status": code, "message": "Something went wrong", "data": output})


TIMEZONE_SETTINGS = Settings("/system/configuration/timezone", SYSTEM, "timezone",
                             ("The system timezone", "Set the system timezone"), "Timezone changed", (
    Setting("timezone", "Timezone", Field(str, description="an IANA zone name, e.g. Europe/Berlin", max_length=64),
            "Timezone", choices=()),
), "timezone", "show or set the timezone", single=True)

AUTO_UPGRADE_SETTINGS = Settings("/system/configuration/autoUpgrade", SYSTEM, "autoUpgrade",
                                 ("Auto-upgrade settings", "Change auto-upgrade settings"),
                                 "Auto-upgrade settings changed", (
    Setting("enable", "AutoUpgrade", Field(bool, False, description="upgrade automatically"), "Auto-upgrade",
            "", ("on", "off")),
    Setting("allowReboot", "AllowReboot", Field(bool, False, description="reboot after an upgrade when needed"),
            "Reboot allowed", "--allow-reboot"),
), "auto-upgrade", "show or set automatic upgrades")

SETTINGS = (SSH_SETTINGS, TIMEZONE_SETTINGS, AUTO_UPGRADE_SETTINGS)

SYSTEM_ROUTES = tagged("system", [
    *TIMEZONE_SETTINGS.routes(),
    *AUTO_UPGRADE_SETTINGS.routes(),
    Route("GET", "/system/configuration/apply", "Rebuild NixOS (sp-nixos-rebuild.service)", SYSTEM,
          "Apply", reply=0, response=INT, acts=True),
    Route("GET", "/system/configuration/upgrade", "Upgrade NixOS (sp-nixos-upgrade.service)", SYSTEM,
          "Upgrade", reply=0, response=INT, acts=True),
    Route("GET", "/system/configuration/rollback", "Roll NixOS back (sp-nixos-rollback.service)", SYSTEM,
          "Rollback", reply=0, response=INT, acts=True),
    Route("GET", "/system/reboot", "Reboot the server", SYSTEM, "Reboot",
          reply="System reboot has started", response=STR, acts=True),
    Route("GET", "/system/version", "What uname -a prints",
          **prop(SYSTEM, "Version", lambda version, ctx: {"system_version": version}),
          response=obj(system_version=STR)),
    Route("GET", "/system/pythonVersion", "The daemon's Python version", **prop(SYSTEM, "PythonVersion"),
          response=STR),
    Route("GET", "/system/configuration/pull", "git pull the NixOS configuration", SYSTEM, "Pull",
          reply=_pull, response=PULL, errors=((500, PULL),), acts=True),
])

def _openapi_document(out, ctx):
    from .openapi import cached_document  # it reads this table: import once the table exists
    return cached_document()


EVENT_ROUTES = [
    Route("GET", "/events", "Server-Sent Events: the current state of each topic, then every change "
          "(`event: <topic>`, `data:` the body of the topic's GET route; `: keep-alive` at least every "
          "15 s; at most 8 streams per token)", stream=True, tag="events", errors=(400,)),
]

COMMON_ROUTES = [
    Route("GET", "/api/version", "API version", reply={"version": API_VERSION}, public=True,
          tag="system", response=obj(version=STR)),
    Route("GET", "/api/swagger.json", "This API as an OpenAPI 3 document (browsable at /api/docs)",
          reply=_openapi_document, public=True, tag="system",
          response={"type": "object", "required": ["openapi", "info", "paths"]}),
]


ROUTES = [*TOKEN_ROUTES, *USER_ROUTES, *SSH_ROUTES, *SERVICE_ROUTES, *SYSTEM_ROUTES, *BACKUP_ROUTES,
          *EVENT_ROUTES, *COMMON_ROUTES]

# GET /events: a topic per route that names one (its body is the route's), and the job topic, which
# follows System1.Jobs.
TOPICS = {r.topic: r for r in ROUTES if r.topic}
JOB = "job"
JOBS = (SYSTEM, ("Jobs",))
ALL_TOPICS = (*TOPICS, JOB)
