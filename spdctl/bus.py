"""spdctl's side of the bus: one connection to the daemon, its REST routes run over D-Bus, and the
properties it watches.

The JSON that `--json` prints is the REST body: each command names the REST route it mirrors, and
`run` answers it with spd.rest.routes.answer, the gateway's own code (the route's D-Bus calls and
its reply shaper; spd/rest/routes.py imports nothing but the bus contract and dbus-fast, no Sanic).
So there is one copy of every body, and spdctl cannot drift from the API.
"""

import asyncio

from dbus_fast import Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus

from spd.contract import BUS_NAME, DAEMON_OWNER_CHANGED, DBUS, DBUS_PATH, PATH, PROPERTIES, PROPERTIES_CHANGED
from spd.rest.errors import HTTPError
from spd.rest.routes import ROUTES, Ctx, answer
from spd.runtime.bus import message_bus

_ROUTES = {(r.method, r.path): r for r in ROUTES}


class Refused(Exception):
    """The daemon (or the bus) refused or failed: exit 1 with this message (and, with --json, the
    REST route's body when it has one for the failure, as GET /system/configuration/pull does)."""

    def __init__(self, message: str, body=None):
        super().__init__(message)
        self.body = body


class Daemon:
    def __init__(self, address: str, interactive: bool):
        self.address = address
        # Let polkit ask the person at the terminal (it may take a while: no timeout on calls).
        self.flags = MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION if interactive else MessageFlag.NONE
        self.bus: MessageBus | None = None

    async def connect(self) -> "Daemon":
        try:
            self.bus = await message_bus(self.address).connect()
        except Exception as e:
            raise Refused(f"cannot connect to the bus {self.address}: {e}") from None
        return self

    def close(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()

    async def call(self, interface: str, member: str, signature: str = "", args=(),
                   destination: str = BUS_NAME, path: str = PATH) -> list:
        """The reply's body; Refused with the daemon's message for an error."""
        reply = await self.bus.call(Message(destination=destination, path=path, interface=interface,
                                            member=member, signature=signature, body=list(args),
                                            flags=self.flags))
        if reply.message_type is MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise Refused(text or reply.error_name)
        return reply.body

    async def get(self, interface: str, name: str):
        return (await self.call(PROPERTIES, "Get", "ss", [interface, name]))[0].value

    async def run(self, method: str, path: str, params: dict | None = None, body: dict | None = None):
        """The JSON body that `method path` answers over HTTP, from the same D-Bus calls."""
        route = _ROUTES[(method, path)]
        ctx = Ctx(path=params or {}, body={**{k: f.default for k, f in route.fields.items()}, **(body or {})})
        try:
            status, result = await answer(route, ctx, self.call)
        except HTTPError as e:  # the route refused the request before any call
            raise Refused(e.message) from None
        if status >= 400:
            detail = result.get("data", "").strip()
            raise Refused(result.get("message", "failed") + (f"\n{detail}" if detail else ""), result)
        return result

    async def watch(self) -> asyncio.Queue:
        """A queue of (interface, names of the properties that changed) from now on, in the bus's
        order. Only the daemon's own signals count: those from the current owner of its name, which
        the bus tells (GetNameOwner, then NameOwnerChanged, which only the bus can send); anyone
        else may send us a PropertiesChanged. The names only, whether the signal carries values or
        just invalidates: the caller reads the values from the daemon."""
        queue: asyncio.Queue = asyncio.Queue()
        # The owner's name is learnt in the bus's order, from the GetNameOwner reply itself, so no
        # signal is judged by an owner that is older or newer than it.
        query = Message(destination=DBUS, path=DBUS_PATH, interface=DBUS, member="GetNameOwner",
                        signature="s", body=[BUS_NAME], serial=self.bus.next_serial())
        owner = None  # until the reply: the signals before it were sent before we read

        def on_message(msg: Message):
            nonlocal owner
            if msg.message_type is not MessageType.SIGNAL:
                if msg.reply_serial == query.serial:
                    owner = msg.body[0] if msg.message_type is MessageType.METHOD_RETURN else None
            elif msg.sender == DBUS and msg.member == "NameOwnerChanged" and msg.body[0] == BUS_NAME:
                owner = msg.body[2] or None
            elif (owner is not None and msg.sender == owner and msg.path == PATH
                  and msg.interface == PROPERTIES and msg.member == "PropertiesChanged"):
                interface, changed, invalidated = msg.body
                queue.put_nowait((interface, frozenset(changed) | frozenset(invalidated)))

        self.bus.add_message_handler(on_message)
        for rule in (PROPERTIES_CHANGED, DAEMON_OWNER_CHANGED):
            await self.call(DBUS, "AddMatch", "s", [rule], destination=DBUS, path=DBUS_PATH)
        await self.bus.call(query)  # NameHasNoOwner (not running: activated by the next call) is fine
        return queue
