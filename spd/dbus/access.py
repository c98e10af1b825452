"""The caller check: every call is decided before it is dispatched, from the rules the members declare
(spd/dbus/rules.py), denying whatever declares none.

The bus policy (data/dbus-1/system.d) lets any local user send to the daemon; this check decides.
dbus-fast hooks (`add_message_handler`) run synchronously before dispatch: a call from a caller
already known (spd/dbus/callers.py) is decided there with no extra round trip; a call from a new
caller waits for its credentials (spd/dbus/held.py). Root and the gateway's group are decided by the
rule's callers; for anyone else polkit decides the action the rule names (spd/dbus/polkit.py): the
call waits for its answer (other calls go on) and is then dispatched or refused.

Properties are read-only (changes are methods), so Properties.Set is refused to everyone; GetAll is
allowed to whoever may read every property of the interface: root and the gateway as each rule says,
anyone else when polkit allows every action its properties name besides org.selfprivacy.read (all of
them: Tokens1's GetAll needs tokens.manage), or read when they name no other. Introspectable and Peer are open to
whoever the bus lets through: they reveal what data/dbus-1/interfaces ships anyway.
"""

import asyncio
import logging

from dbus_fast import Message, MessageType
from dbus_fast.service import ServiceInterface

from . import polkit
from .callers import Caller, Callers, caller
from .held import Held
from .names import DBUS, DBUS_ACCESS_DENIED, PROPERTIES
from .rules import ADMIN, READ, Rule, declared, reads

log = logging.getLogger("spd.access")

PUBLIC_INTERFACES = frozenset({"org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Peer"})

_CALL = MessageType.METHOD_CALL
_SIGNAL = MessageType.SIGNAL
_PUBLIC = reads(callers=())


class Access:
    def __init__(self, bus, interfaces: list[ServiceInterface], gateway_group: str):
        self.bus = bus
        self.callers = Callers(bus, gateway_group)
        self.held = Held(bus, self.callers.look_up, self._refuse)
        self._methods: dict[tuple, Rule] = {}
        self._props: dict[tuple, Rule] = {}
        self._get_all: dict[str, Rule | None] = {}
        self._get_all_actions: dict[str, tuple] = {}  # interface -> the polkit actions its GetAll needs
        self.undeclared: list[str] = []  # exported members without a rule: refused to everyone
        self.checks = polkit.Checks(bus)
        self._asking: set[Message] = set()  # calls waiting for polkit
        self._authorized: set[Message] = set()  # ... that polkit allowed, being dispatched
        self._tasks: set = set()
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

    async def start(self) -> None:
        """Watch callers disconnect (to forget them), then check every call. Call before export."""
        await self.bus.call(Message(
            destination=DBUS, path="/org/freedesktop/DBus", interface=DBUS, member="AddMatch",
            signature="s",
            body=[f"type='signal',sender='{DBUS}',interface='{DBUS}',member='NameOwnerChanged',arg2=''"]))
        self.bus.add_message_handler(self._on_message)

    def waiting(self) -> int:
        """Calls held for their caller's credentials or for polkit (the idle exit waits for them too)."""
        return len(self.held) + len(self._asking)

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

    def _on_message(self, msg: Message):
        if msg.message_type is not _CALL:
            if msg.message_type is _SIGNAL and msg.member == "NameOwnerChanged" and msg.sender == DBUS:
                self.callers.forget(msg.body[0])
                self.checks.gone(msg.body[0])
            return None
        known = self.callers.get(msg.sender)
        if known is None:
            self.held.hold(msg)
            return True  # held: dispatched or refused once the lookup answers
        return self.decide(msg, known)

    def decide(self, msg: Message, who: Caller):
        """None to dispatch the call, or the refusal (True: dropped, when no reply is expected)."""
        rule = self.rule(msg)
        if rule is _PUBLIC:
            return None
        if rule is not None and rule.callers and not who.kinds:  # neither root nor the gateway
            if msg not in self._authorized:
                self._ask_polkit(msg, who, self.actions(msg, rule))
                return True  # held: dispatched or refused once polkit answers
            self._authorized.discard(msg)
        elif rule is None or not (who.kinds & rule.callers):
            log.warning("refused %s to uid %d (%s)", _label(msg), who.uid, msg.sender)
            return _denied(msg, f"{_label(msg)} is not allowed for uid {who.uid}")
        caller.set(who)  # seen by the member (its audit line names the uid)
        return None

    def actions(self, msg: Message, rule: Rule) -> tuple:
        """The polkit actions a caller that is neither root nor the gateway needs for this call."""
        if msg.interface == PROPERTIES and msg.member == "GetAll":
            return self._get_all_actions[msg.body[0]]
        return (rule.action,)

    def _ask_polkit(self, msg: Message, who: Caller, actions: tuple) -> None:
        self._asking.add(msg)
        task = asyncio.get_running_loop().create_task(self._polkit_decides(msg, who, actions))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _polkit_decides(self, msg: Message, who: Caller, actions: tuple) -> None:
        """polkit's answer (a person may be typing a password; Checks bounds the rest)."""
        try:
            refusal = await self.checks.check(msg.sender, who.uid, actions, polkit.interactive(msg))
        finally:
            self._asking.discard(msg)
        if refusal is None:
            self._authorized.add(msg)
            self.bus._process_message(msg)  # through decide() again, which lets it pass (see held.py)
            return
        log.warning("refused %s to uid %d (%s): polkit: %s", _label(msg), who.uid, msg.sender, refusal[0])
        if _expects_reply(msg):
            self.bus.send(Message.new_error(msg, *refusal))

    def _refuse(self, msg: Message, text: str) -> None:
        if _expects_reply(msg):
            self.bus.send(_denied(msg, text))


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
    return Message.new_error(msg, DBUS_ACCESS_DENIED, text)


def _expects_reply(msg: Message) -> bool:
    return not (msg.flags & 0x1)  # NO_REPLY_EXPECTED
