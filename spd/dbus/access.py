"""The caller check: every call is decided from the rules the members declare (spd/dbus/rules.py),
denying whatever declares none.

The bus policy (data/dbus-1/system.d) lets any local user send to the daemon; this check decides,
with dbus-fast's public means only:
- a method checks its caller first thing in its wrapper (spd/dbus/base.py, as timedated calls
  bus_verify_polkit_async inside its method): `admit()` answers at once for a caller already known
  (spd/dbus/callers.py), and otherwise awaits its credentials, then polkit, while other calls go on.
- the bus's own interfaces are decided by the message handler (`add_message_handler`), which runs
  before dispatch: a property read by a known caller that its rule admits is left to dbus-fast (no
  task, no await), a refusal is answered there, and a read that must wait (new caller, polkit) is
  taken over: the handler answers it itself once allowed, from the interface's own getters.
Root and the gateway's group are decided by the rule's callers; for anyone else polkit decides the
action the rule names (spd/dbus/polkit.py, which bounds how many checks wait).

Properties are read-only (changes are methods), so Properties.Set is refused to everyone; GetAll is
allowed to whoever may read every property of the interface: root and the gateway as each rule says,
anyone else when polkit allows every action its properties name besides org.selfprivacy.read (all of
them: Tokens1's GetAll needs tokens.manage), or read when they name no other. Introspectable and Peer
are open to whoever the bus lets through: they reveal what data/dbus-1/interfaces ships anyway.
"""

import asyncio
import contextvars
import inspect
import logging

from dbus_fast import DBusError, Message, MessageType, Variant
from dbus_fast.service import ServiceInterface

from ..contract import DBUS, DBUS_ACCESS_DENIED, DBUS_PATH, PROPERTIES, match_rule
from ..runtime import audit as trail
from ..runtime.journal import Throttle
from . import polkit
from .callers import Caller, Callers, caller
from .rules import ADMIN, GATEWAY, READ, Rule, declared, reads

log = logging.getLogger("spd.access")

PUBLIC_INTERFACES = frozenset({"org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Peer"})
UNKNOWN_CALLER = "The caller's credentials could not be checked"

_CALL = MessageType.METHOD_CALL
_SIGNAL = MessageType.SIGNAL
_PUBLIC = reads(callers=())

# The method call being dispatched, for its wrapper's admit(): set by the message handler, which runs
# just before dbus-fast starts the method (whose task copies the context).
_dispatching: contextvars.ContextVar[tuple["Access", Message] | None] = contextvars.ContextVar(
    "dispatching", default=None)


async def admit(rule: Rule) -> bool:
    """True once the caller of the method being dispatched may call it (`rule`); otherwise raises the
    D-Bus error to answer, or is False when the call expects no answer (the refusal is logged).
    Every method's wrapper awaits this before it runs."""
    dispatching = _dispatching.get()
    if dispatching is None:  # not called through the bus by a checked message: fail closed
        raise DBusError(DBUS_ACCESS_DENIED, UNKNOWN_CALLER)
    access, msg = dispatching
    try:
        caller.set(await access.admit(msg, rule))  # seen by the member (its audit line names the uid)
    except DBusError:
        if _expects_reply(msg):
            raise
        return False  # dropped: dbus-fast would log a refusal nobody waits for as a crash
    return True


class Access:
    def __init__(self, bus, interfaces: list[ServiceInterface], gateway_group: str):
        self.bus = bus
        self.callers = Callers(bus, gateway_group)
        self.checks = polkit.Checks(bus)
        self._methods: dict[tuple, Rule] = {}
        self._props: dict[tuple, Rule] = {}
        self._get_all: dict[str, Rule | None] = {}
        self._get_all_actions: dict[str, tuple] = {}  # interface -> the polkit actions its GetAll needs
        self._exported: dict[str, tuple] = {}  # interface -> (the object, {property: signature})
        self.undeclared: list[str] = []  # exported members without a rule: refused to everyone
        self._waiting = 0  # calls waiting for their caller's credentials or for polkit
        self._tasks: set = set()
        # At most 100 refusals a uid logged every 30 s: journald's default burst is 10,000 per 30 s
        # a unit, and a stranger can cause refusals at will.
        self.refusals = Throttle(log, lambda uid: "calls of " + ("unknown callers" if uid is None else f"uid {uid}"),
                                 burst=100, every=30.0)
        for interface in interfaces:
            self._compile(interface)

    def _compile(self, interface: ServiceInterface) -> None:
        rules, info, name = declared(interface), interface.introspect(), interface.name
        for kind, members, into in (("method", info.methods, self._methods),
                                    ("property", info.properties, self._props)):
            for member in members:
                if member.name in rules:
                    into[(name, member.name)] = rules[member.name]
                else:
                    self.undeclared.append(f"{name}.{member.name}")
        # GetAll answers every property: only for who may read each one of them.
        reading = [self._props.get((name, p.name)) for p in info.properties]
        self._get_all[name] = reads(callers=ADMIN.intersection(*(r.callers if r else () for r in reading)))
        self._get_all_actions[name] = tuple(sorted({r.action for r in reading if r} - {READ})) or (READ,)
        self._exported[name] = (interface, {p.name: p.signature for p in info.properties})

    async def start(self) -> None:
        """Watch callers disconnect (to forget them), then check every call. Call before export."""
        await self.bus.call(Message(
            destination=DBUS, path=DBUS_PATH, interface=DBUS, member="AddMatch", signature="s",
            body=[match_rule(sender=DBUS, path=DBUS_PATH, interface=DBUS, member="NameOwnerChanged", arg2="")]))
        self.bus.add_message_handler(self._on_message)

    def waiting(self) -> int:
        """Calls waiting for their caller's credentials or for polkit (the idle exit waits for them)."""
        return self._waiting

    # --- the check --------------------------------------------------------------------------

    def rule(self, msg: Message) -> Rule | None:
        """The rule that decides this call: None when nothing allows it."""
        iface = msg.interface
        if iface in PUBLIC_INTERFACES:
            return _PUBLIC
        if iface == PROPERTIES:
            body = msg.body
            if msg.member == "Get" and msg.signature == "ss":
                return self._props.get((body[0], body[1]))
            if msg.member == "GetAll" and msg.signature == "s":
                return self._get_all.get(body[0])
            return None  # Set: every property is read-only
        return self._methods.get((iface, msg.member))

    def decide(self, msg: Message, who: Caller, rule: Rule | None) -> tuple | None:
        """None when `who` may make this call; the polkit actions that must allow it when polkit
        decides; raises the D-Bus error to refuse it with."""
        if rule is _PUBLIC:
            return None
        if rule is not None and rule.callers and not who.kinds:  # neither root nor the gateway
            if msg.interface == PROPERTIES and msg.member == "GetAll":
                return self._get_all_actions[msg.body[0]]
            return (rule.action,)
        if rule is None or not (who.kinds & rule.callers):
            raise self._refused(msg, who, rule, DBUS_ACCESS_DENIED, f"{_label(msg)} is not allowed for uid {who.uid}")
        return None

    async def admit(self, msg: Message, rule: Rule | None) -> Caller:
        """The caller, once it may make this call (credentials looked up, polkit asked: other calls
        go on meanwhile); raises the D-Bus error to refuse it with. A refused change is in the audit
        trail too (spd/runtime/audit.py; the gateway writes its own)."""
        who = self.callers.get(msg.sender)
        if who is not None and self.decide(msg, who, rule) is None:
            return who  # decided at once: root and the gateway never wait
        self._waiting += 1
        try:
            if who is None:
                who = await self.callers.look_up(msg.sender)
            if who is None:
                raise self._refused(msg, None, rule, DBUS_ACCESS_DENIED, UNKNOWN_CALLER)
            actions = self.decide(msg, who, rule)
            if actions is not None:
                refusal = await self.checks.check(msg.sender, who.uid, actions, polkit.interactive(msg))
                if refusal is not None:
                    by = "spd" if refusal[0] == polkit.LIMITS_EXCEEDED else "polkit"  # (the cap is ours)
                    raise self._refused(msg, who, rule, *refusal, by=by)
            return who
        finally:
            self._waiting -= 1

    def _refused(self, msg: Message, who: Caller | None, rule: Rule | None, error: str, text: str,
                 by: str = "spd") -> DBusError:
        """A refusal, to raise: logged, and in the audit trail when it refuses a change (the gateway
        writes its own), unless the caller's refusals are past what the journal can take from one
        uid (self.refusals): one caller's flood must not push out the others' refusals."""
        uid = who.uid if who is not None else None
        if self.refusals.allow(uid):
            log.warning("refused %s to %s (%s) by %s: %s", _label(msg),
                        "an unknown caller" if uid is None else f"uid {uid}", msg.sender, by, text)
            if rule is not None and rule.change and (who is None or GATEWAY not in who.kinds):
                entry = trail.daemon_entry(uid, trail.action(msg.interface, msg.member), msg.body, error)
                trail.write(entry, log, None)  # (its text line is the warning above)
        return DBusError(error, text)

    def _on_message(self, msg: Message):
        if msg.message_type is not _CALL:
            if msg.message_type is _SIGNAL and msg.member == "NameOwnerChanged" and msg.sender == DBUS \
                    and msg.body[0].startswith(":") and not msg.body[2]:  # a caller left (other rules bring arrivals)
                self.callers.forget(msg.body[0])
                self.checks.gone(msg.body[0])
            return None
        rule = self.rule(msg)
        if rule is _PUBLIC:
            return None
        if rule is not None and msg.interface != PROPERTIES:
            _dispatching.set((self, msg))  # the method decides, in admit()
            return None
        who = self.callers.get(msg.sender)
        if who is not None:
            try:
                if self.decide(msg, who, rule) is None:
                    return None  # dbus-fast answers the read: the fast path
            except DBusError as e:
                return _answer(msg, Message.new_error(msg, e.type, e.text))
        task = asyncio.get_running_loop().create_task(self._answer_later(msg, rule))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True  # answered by _answer_later

    async def _answer_later(self, msg: Message, rule: Rule | None) -> None:
        """A property read (or a refusal) that waits for the caller's credentials or polkit, answered
        here once decided: dbus-fast cannot be handed the message back."""
        try:
            await self.admit(msg, rule)
            reply = await self._read(msg)
        except DBusError as e:
            reply = Message.new_error(msg, e.type, e.text)
        except Exception as e:  # a getter's bug: said here, not to the caller (as dbus-fast does)
            log.exception("reading %s failed", _label(msg))
            reply = Message.new_error(msg, "org.freedesktop.DBus.Error.Failed", f"Internal error: {type(e).__name__}")
        if _expects_reply(msg):
            self.bus.send(reply)

    async def _read(self, msg: Message) -> Message:
        """The reply to an allowed Get or GetAll, from the interface's own getters."""
        interface, signatures = self._exported[msg.body[0]]
        names = [msg.body[1]] if msg.member == "Get" else list(signatures)
        values = {}
        for name in names:
            value = getattr(interface, name)
            values[name] = Variant(signatures[name], await value if inspect.isawaitable(value) else value)
        if msg.member == "Get":
            return Message.new_method_return(msg, "v", [values[names[0]]])
        return Message.new_method_return(msg, "a{sv}", [values])


def _answer(msg: Message, reply: Message):
    """What the message handler returns to answer a call: True (dropped) when none is expected."""
    return reply if _expects_reply(msg) else True


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


def _expects_reply(msg: Message) -> bool:
    return not (msg.flags & 0x1)  # NO_REPLY_EXPECTED
