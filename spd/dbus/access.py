"""Who may call what: one table, checked before every call is dispatched, denying what it does not list.

The bus policy (data/dbus-1/system.d) already keeps everyone but root and the gateway's group away from
the daemon; this check holds on its own if that policy is missing or loosened. A caller is identified
by its unique bus name, resolved once through the bus driver (GetConnectionCredentials: uid and
groups, never a PID) and cached until the bus says the name is gone. Unique names are never reused on
a bus, so a cached entry cannot be inherited by another process.

dbus-fast hooks (`add_message_handler`) run synchronously before dispatch. A call from a caller we
already know is decided there, with no extra round trip. A call from a new caller is held; its
credentials are fetched, then it (and whatever the same caller sent meanwhile, in order) is
dispatched or refused. A failed lookup, or a caller that disconnected meanwhile, is refused.

Every call that changes something leaves one log line with the caller's uid, the member and the
result. The log line is written when the reply leaves (so the result is known), by `CheckedBus.send`;
a call that asks for no reply is logged when it is dispatched.

To add an interface: add its rows to TABLE (one per method and per property) and its introspection
XML to data/dbus-1/interfaces/. tests/test_access.py fails while either is missing.
"""

import asyncio
import contextvars
import grp
import logging
import time
from dataclasses import dataclass

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface

from . import polkit
from .names import BACKUPS, SERVICES, SSH, SYSTEM, TOKENS, USERS

log = logging.getLogger("spd.access")

# The kinds of caller a rule can name.
ROOT = "root"  # uid 0
GATEWAY = "gateway"  # a process in the gateway's group (selfprivacy-api unless configured otherwise)


@dataclass(frozen=True)
class Rule:
    callers: frozenset  # of ROOT, GATEWAY
    change: bool  # a call that changes state: logged with the caller's uid and the result


@dataclass(frozen=True)
class Prop:
    read: Rule  # Properties.Get (and GetAll, which needs read access to every property)
    write: Rule  # Properties.Set


def reads(*callers) -> Rule:
    return Rule(frozenset(callers), change=False)


def changes(*callers) -> Rule:
    return Rule(frozenset(callers), change=True)


def prop(read=(ROOT, GATEWAY), write=(ROOT, GATEWAY)) -> Prop:
    """A property row. Read-only properties: write=()."""
    return Prop(reads(*read), changes(*write))


ADMIN = (ROOT, GATEWAY)

# interface -> member (method or property) -> who may. Anything not listed is refused.
TABLE: dict[str, dict[str, Rule | Prop]] = {
    TOKENS: {
        "Authenticate": reads(*ADMIN),
        "List": reads(*ADMIN),
        "Refresh": changes(*ADMIN),
        "Delete": changes(*ADMIN),
        "CreateNewDevice": changes(*ADMIN),
        "ForgetNewDevice": changes(*ADMIN),
        "AuthorizeNewDevice": changes(*ADMIN),
        "GetRecoveryStatus": reads(*ADMIN),
        "CreateRecovery": changes(*ADMIN),
        "UseRecovery": changes(*ADMIN),
    },
    USERS: {
        "List": reads(*ADMIN),
        "Create": changes(*ADMIN),
        "Delete": changes(*ADMIN),
    },
    SSH: {
        "Enable": prop(),
        "PasswordAuthentication": prop(),
        "Configure": changes(*ADMIN),
        "ListKeys": reads(*ADMIN),
        "AddRootKey": changes(*ADMIN),
        "AddKey": changes(*ADMIN),
        "RemoveKey": changes(*ADMIN),
    },
    BACKUPS: {
        "State": prop(write=()),
        "Progress": prop(write=()),
        "ErrorMessage": prop(write=()),
        "GetStatus": reads(*ADMIN),
        "ListSnapshots": reads(*ADMIN),
        "Reload": changes(*ADMIN),
        "StartBackup": changes(*ADMIN),
        "StartRestore": changes(*ADMIN),
        "SetBackblazeConfig": changes(*ADMIN),
    },
    SERVICES: {
        "Enabled": prop(write=()),
        "Status": prop(write=()),
        "Enable": changes(*ADMIN),
        "Disable": changes(*ADMIN),
        "GetStatus": reads(*ADMIN),
        "GetDkim": reads(*ADMIN),
    },
    SYSTEM: {
        "Timezone": prop(write=()),
        "AutoUpgrade": prop(write=()),
        "AllowReboot": prop(write=()),
        "Jobs": prop(write=()),
        "SetTimezone": changes(*ADMIN),
        "SetAutoUpgrade": changes(*ADMIN),
        "Apply": changes(*ADMIN),
        "Upgrade": changes(*ADMIN),
        "Rollback": changes(*ADMIN),
        "Reboot": changes(*ADMIN),
        "Pull": changes(*ADMIN),
        "GetVersion": reads(*ADMIN),
        "GetPythonVersion": reads(*ADMIN),
    },
}

# The polkit action (live-and-local.md §5) that decides a call for a caller who is neither root nor
# the gateway's group: the interface's ".manage" for a change, "read" for a read, except Tokens1,
# whose every member is tokens.manage (tokens are credentials), and Reboot, which has its own.
READ_ACTION = "org.selfprivacy.read"
MANAGE_ACTIONS = {
    USERS: "org.selfprivacy.users.manage",
    SSH: "org.selfprivacy.ssh.manage",
    SERVICES: "org.selfprivacy.services.manage",
    SYSTEM: "org.selfprivacy.system.manage",
    BACKUPS: "org.selfprivacy.backups.manage",
    TOKENS: "org.selfprivacy.tokens.manage",
}
OWN_ACTIONS = {(SYSTEM, "Reboot"): "org.selfprivacy.system.reboot"}


def polkit_action(interface: str, member: str, change: bool) -> str | None:
    if interface not in MANAGE_ACTIONS:
        return None
    if (interface, member) in OWN_ACTIONS:
        return OWN_ACTIONS[(interface, member)]
    if change or interface == TOKENS:
        return MANAGE_ACTIONS[interface]
    return READ_ACTION


ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
DBUS = "org.freedesktop.DBus"
PROPERTIES = "org.freedesktop.DBus.Properties"
# Open to whoever the bus lets through: they reveal what data/dbus-1/interfaces ships anyway.
PUBLIC_INTERFACES = frozenset({"org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Peer"})
CACHE_MAX = 1024

_CALL = MessageType.METHOD_CALL
_SIGNAL = MessageType.SIGNAL
_REPLIES = (MessageType.METHOD_RETURN, MessageType.ERROR)
_PUBLIC = Rule(frozenset(), change=False)


@dataclass(frozen=True)
class Caller:
    uid: int
    kinds: frozenset  # of ROOT, GATEWAY


# The caller of the call being dispatched, for code that wants to say who asked.
caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


class CheckedBus(MessageBus):
    """The daemon's bus connection: tells Access about every reply it sends."""

    __slots__ = ("on_send",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_send = None

    def send(self, msg: Message):
        if self.on_send is not None and msg.message_type in _REPLIES:
            self.on_send(msg)
        return super().send(msg)


class Access:
    def __init__(self, bus: CheckedBus, interfaces: list[ServiceInterface], gateway_group: str,
                 table=None):
        self.bus = bus
        self.gateway_group = gateway_group
        self._gateway_gid = _gid(gateway_group)
        self._methods: dict[tuple, Rule] = {}
        self._props: dict[tuple, Prop] = {}
        self._get_all: dict[str, Rule] = {}
        self._compile(TABLE if table is None else table, interfaces)
        self._callers: dict[str, Caller] = {}
        self._held: dict[str, list[Message]] = {}  # unique name -> calls waiting for its lookup
        self._gone: set[str] = set()  # held callers that disconnected during their lookup
        self._in_flight: dict[tuple, tuple] = {}  # (sender, serial) -> (Caller, label if logged)
        self._tasks: set = set()
        self._asking = 0  # calls waiting for polkit
        self._authorized: set[tuple] = set()  # (sender, serial) polkit allowed, being dispatched
        self.last_call = time.monotonic()

    def _compile(self, table, interfaces):
        for iface, rows in table.items():
            for member, row in rows.items():
                (self._props if isinstance(row, Prop) else self._methods)[(iface, member)] = row
        # GetAll answers every property of an interface: only for who may read each one of them.
        for interface in interfaces:
            names = [p.name for p in interface.introspect().properties]
            allowed = frozenset((ROOT, GATEWAY))
            for name in names:
                row = self._props.get((interface.name, name))
                allowed &= row.read.callers if row else frozenset()
            self._get_all[interface.name] = Rule(allowed, change=False)

    async def start(self) -> None:
        """Watch callers disconnect (to forget them), then check every call. Call before export."""
        await self.bus.call(Message(
            destination=DBUS, path="/org/freedesktop/DBus", interface=DBUS, member="AddMatch",
            signature="s",
            body=[f"type='signal',sender='{DBUS}',interface='{DBUS}',member='NameOwnerChanged',arg2=''"]))
        self.bus.add_message_handler(self._on_message)
        self.bus.on_send = self._on_reply

    # --- what the idle exit needs -----------------------------------------------------------

    def idle_for(self) -> float:
        """Seconds since the last call ended; 0 while one is running or waiting."""
        if self._in_flight or self._held or self._asking:
            return 0.0
        return time.monotonic() - self.last_call

    # --- the check --------------------------------------------------------------------------

    def rule(self, msg: Message) -> Rule | None:
        """The row that decides this call: None when nothing allows it."""
        iface = msg.interface
        if iface in PUBLIC_INTERFACES:
            return _PUBLIC
        if iface == PROPERTIES:
            body = msg.body
            if msg.member == "Get" and msg.signature == "ss":
                row = self._props.get((body[0], body[1]))
                return row.read if row else None
            if msg.member == "Set" and msg.signature == "ssv":
                row = self._props.get((body[0], body[1]))
                return row.write if row else None
            if msg.member == "GetAll" and msg.signature == "s":
                return self._get_all.get(body[0])
            return None
        return self._methods.get((iface, msg.member))

    def _on_message(self, msg: Message):
        if msg.message_type is not _CALL:
            if msg.message_type is _SIGNAL and msg.member == "NameOwnerChanged" and msg.sender == DBUS:
                self._forget(msg.body[0])
            return None
        self.last_call = time.monotonic()
        sender = msg.sender
        known = self._callers.get(sender)
        if known is None:
            if sender in self._held:
                self._held[sender].append(msg)
            else:
                self._held[sender] = [msg]
                self._spawn(self._look_up(sender))
            return True  # held: dispatched or refused once the lookup answers
        return self._decide(msg, known)

    def _decide(self, msg: Message, who: Caller):
        rule = self.rule(msg)
        if rule is _PUBLIC:
            return None
        action = self._polkit_action(msg, rule) if rule is not None and not who.kinds else None
        if action is not None:  # neither root nor the gateway: polkit decides
            if (msg.sender, msg.serial) not in self._authorized:
                self._spawn(self._ask_polkit(msg, who, action))
                return True  # held: dispatched or refused once polkit answers
            self._authorized.discard((msg.sender, msg.serial))
        elif rule is None or not (who.kinds & rule.callers):
            log.warning("refused %s to uid %d (%s)", _label(msg), who.uid, msg.sender)
            return _denied(msg, f"{_label(msg)} is not allowed for uid {who.uid}")
        if _expects_reply(msg):
            self._in_flight[(msg.sender, msg.serial)] = (who, _label(msg) if rule.change else None)
        elif rule.change:  # no reply will leave to log it by: log it now, or it would leave no trace
            log.info("uid=%d call=%s result=(no reply requested)", who.uid, _label(msg))
        caller.set(who)
        return None

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _polkit_action(msg: Message, rule: Rule) -> str | None:
        """The action polkit decides this call by; None when polkit may not allow it at all (a
        read-only property's Set, a member of no interface of ours)."""
        if not rule.callers:
            return None
        if msg.interface == PROPERTIES:
            interface, member = msg.body[0], msg.body[1] if len(msg.body) > 1 else ""
        else:
            interface, member = msg.interface, msg.member
        return polkit_action(interface, member, rule.change)

    async def _ask_polkit(self, msg: Message, who: Caller, action: str) -> None:
        """polkit decides; other calls go on meanwhile (a person may be typing a password)."""
        self._asking += 1
        try:
            refusal = await polkit.check(self.bus, msg.sender, action, polkit.interactive(msg))
        finally:
            self._asking -= 1
            self.last_call = time.monotonic()
        if refusal is None:
            self._authorized.add((msg.sender, msg.serial))
            self.bus._process_message(msg)  # back through _decide, which now lets it through
            return
        log.warning("refused %s to uid %d (%s): %s", _label(msg), who.uid, msg.sender, refusal[0])
        if _expects_reply(msg):
            self.bus.send(Message.new_error(msg, *refusal))

    async def _look_up(self, sender: str) -> None:
        who = None
        try:
            reply = await self.bus.call(Message(
                destination=DBUS, path="/org/freedesktop/DBus", interface=DBUS,
                member="GetConnectionCredentials", signature="s", body=[sender]))
            if reply.message_type is MessageType.METHOD_RETURN and sender not in self._gone:
                who = self._caller(reply.body[0])
        except Exception as e:  # the bus went away: refuse
            log.warning("cannot look up caller %s: %s", sender, e)
        held = self._held.pop(sender, [])
        self._gone.discard(sender)
        if who is None:
            log.warning("refused %d call(s) from %s: its credentials are unknown", len(held), sender)
            for msg in held:
                if _expects_reply(msg):
                    self.bus.send(_denied(msg, "The caller's credentials could not be checked"))
            return
        if len(self._callers) >= CACHE_MAX:
            self._callers.clear()
        self._callers[sender] = who
        for msg in held:  # in the order they came; the cache now decides each one
            self.bus._process_message(msg)

    def _caller(self, creds: dict) -> Caller | None:
        if "UnixUserID" not in creds:
            return None
        uid = creds["UnixUserID"].value
        groups = creds["UnixGroupIDs"].value if "UnixGroupIDs" in creds else []
        if self._gateway_gid is None:
            self._gateway_gid = _gid(self.gateway_group)
        kinds = set()
        if uid == 0:
            kinds.add(ROOT)
        if self._gateway_gid is not None and self._gateway_gid in groups:
            kinds.add(GATEWAY)
        return Caller(uid, frozenset(kinds))

    def _forget(self, name: str) -> None:
        self._callers.pop(name, None)
        if name in self._held:
            self._gone.add(name)

    def _on_reply(self, msg: Message) -> None:
        entry = self._in_flight.pop((msg.destination, msg.reply_serial), None)
        if entry is not None:
            self.last_call = time.monotonic()
            who, label = entry
            if label is not None:
                result = "ok" if msg.message_type is MessageType.METHOD_RETURN else msg.error_name
                log.info("uid=%d call=%s result=%s", who.uid, label, result)

    def check_table(self, interfaces: list[ServiceInterface]) -> list[str]:
        """Exported methods and properties that have no row (each would be refused to everyone)."""
        missing = []
        for interface in interfaces:
            info = interface.introspect()
            for m in info.methods:
                if (interface.name, m.name) not in self._methods:
                    missing.append(f"{interface.name}.{m.name}")
            for p in info.properties:
                if (interface.name, p.name) not in self._props:
                    missing.append(f"{interface.name}.{p.name}")
        return missing


def _label(msg: Message) -> str:
    """What a call is about, for the log. Interface and member names are checked by the bus; the
    property names in a Properties call are any text a caller chose: escaped, so they cannot forge
    log lines."""
    if msg.interface == PROPERTIES and msg.body and isinstance(msg.body[0], str):
        target = ".".join(str(x)[:255] for x in msg.body[:2])
        if not target.isprintable():
            target = target.encode("unicode_escape").decode("ascii")
        return f"{msg.member} {target}"
    return f"{msg.interface}.{msg.member}"


def _denied(msg: Message, text: str):
    if not _expects_reply(msg):
        return True  # handled: dropped without an answer nobody waits for
    return Message.new_error(msg, ACCESS_DENIED, text)


def _expects_reply(msg: Message) -> bool:
    return not (msg.flags & 0x1)  # NO_REPLY_EXPECTED


def _gid(group: str) -> int | None:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        log.warning("group %s does not exist: only root may call spd", group)
        return None
