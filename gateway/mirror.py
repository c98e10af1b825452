"""The gateway's copy of the daemon's properties (as GDBusProxy and Cockpit's D-Bus client keep one).

A property is read with Properties.Get the first time a route needs it (one property at a time, so a
property that cannot be read now, e.g. Services1.Status while systemd is away, fails only its own
routes) and then kept current by the daemon's PropertiesChanged. Everything is applied in the order
the messages arrive, in the bus connection's message handler: a Get reply is stored when it passes
there (not when the awaiting request resumes), so a signal that follows it on the wire is never
overwritten by the older reply. The daemon emits a change before it replies to the call that made it,
so a client that got the reply of its write reads the new value from here, on any connection.

The copy is dropped when the daemon's name changes owner or the bus connection is lost (both seen by
gateway/daemon.py, which calls drop()). A property invalidated without its value is forgotten and
read again when next needed. While the bus refuses our match rules nothing is kept and every read asks
the daemon, as before the mirror existed.
"""

import asyncio
import logging
from typing import Callable

from dbus_fast import Message, MessageType

from spd.dbus.names import BUS_NAME, PATH, PROPERTIES

log = logging.getLogger("spd-gateway")

RULE = (f"type='signal',sender='{BUS_NAME}',path='{PATH}',interface='{PROPERTIES}',"
        "member='PropertiesChanged'")

# listener(interface, new values, values before) on a change (a value before is None when it was not
# kept); listener(None, {}, {}) when the copy is dropped: every watcher must start again.
Listener = Callable[[str | None, dict, dict], None]


class Mirror:
    def __init__(self, call):
        self._call = call  # Daemon.call: a Get for a property not kept (yet)
        self._props: dict[str, dict] = {}  # interface -> property -> plain value
        self._loading: dict[int, tuple[str, str, int]] = {}  # Get serial -> (interface, name, generation)
        self._generation = 0
        self._owner = None  # the daemon's unique bus name, from its replies: only its signals count
        self.enabled = False  # whether the daemon's PropertiesChanged reach us
        self.listeners: list[Listener] = []

    def cached(self, interface: str) -> dict:
        return self._props.get(interface, {})

    def kept(self, interface: str, names: tuple) -> dict | None:
        """These properties of the interface (name -> value) when the copy has them all, else None."""
        values = self._props.get(interface)
        if values is not None and all(n in values for n in names):
            return values
        return None

    async def get(self, interface: str, names: tuple) -> dict:
        """These properties of the interface (name -> value), from the copy where it has them."""
        values = self._props.get(interface, {})
        missing = [n for n in names if n not in values]
        if not missing:
            return values
        got = await asyncio.gather(*(self._load(interface, n) for n in missing))
        # on_message stored the replies already, and applied any change that followed them: prefer that.
        return {**dict(zip(missing, got)), **self._props.get(interface, {})}

    async def _load(self, interface: str, name: str):
        generation, sent = self._generation, []

        def loading(serial):
            if self.enabled:
                sent.append(serial)
                self._loading[serial] = (interface, name, generation)

        try:
            (value,) = await self._call(PROPERTIES, "Get", "ss", [interface, name], on_send=loading)
        finally:
            for serial in sent:  # a reply that never came (timeout) leaves nothing behind
                self._loading.pop(serial, None)
        return value.value

    def drop(self) -> None:
        """Forget everything (daemon gone, restarted, or connection lost)."""
        self._generation += 1
        self._loading.clear()
        self._owner = None
        had = bool(self._props)
        self._props.clear()
        if had:
            self._notify(None, {}, {})

    def on_message(self, msg: Message) -> None:
        """Called by Daemon for every message on the connection, in wire order."""
        if msg.message_type in (MessageType.METHOD_RETURN, MessageType.ERROR):
            loading = self._loading.pop(msg.reply_serial, None)
            if loading is not None and msg.message_type == MessageType.METHOD_RETURN \
                    and loading[2] == self._generation:
                interface, name, _ = loading
                self._props.setdefault(interface, {})[name] = msg.body[0].value
                self._owner = msg.sender
        elif msg.message_type == MessageType.SIGNAL and msg.member == "PropertiesChanged" \
                and msg.interface == PROPERTIES and msg.path == PATH and msg.sender == self._owner:
            # (anyone may send us a signal directly; only the daemon's own change the copy)
            interface, changed, invalidated = msg.body
            values = self._props.setdefault(interface, {})
            for name in invalidated:  # a value we cannot know without asking: read it again when needed
                values.pop(name, None)
            # A signal carries the whole new value: keep it even if no route read it yet.
            new = {name: v.value for name, v in changed.items()}
            before = {name: values.get(name) for name in new}
            values.update(new)
            if new:
                self._notify(interface, new, before)

    def _notify(self, interface, new, before):
        for listener in list(self.listeners):
            try:
                listener(interface, new, before)
            except Exception:  # one watcher's bug must not stop the others or the copy
                log.exception("a mirror listener failed")
