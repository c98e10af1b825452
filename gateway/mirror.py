"""The gateway's copy of the daemon's properties (as GDBusProxy and Cockpit's D-Bus client keep one).

An interface is loaded with Properties.GetAll on first use and then kept current by the daemon's
PropertiesChanged signals. Everything is applied in the order the messages arrive, in the bus
connection's message handler: the GetAll reply is stored when it passes there (not when the awaiting
request resumes), so a signal that follows it on the wire is never overwritten by the older reply.
The daemon emits a change before it replies to the call that made it, so a client that got the
reply of its write reads the new value from here on any connection.

The copy is dropped when the daemon's name changes owner, the bus connection is lost (gateway/daemon.py
calls drop()), or a signal
invalidates a property without its value; while the bus refuses our match rules nothing is kept and
every read is a GetAll at the daemon, as before the mirror existed.
"""

import logging
from typing import Callable

from dbus_fast import Message, MessageType

from spd.dbus.names import BUS_NAME, PATH, PROPERTIES

log = logging.getLogger("spd-gateway")

RULE = (f"type='signal',sender='{BUS_NAME}',path='{PATH}',interface='{PROPERTIES}',"
        "member='PropertiesChanged'")

# listener(interface, new values, values before) on a change; listener(None, {}, {}) when the copy
# is dropped (the daemon went away or restarted: every watcher must start again from GetAll).
Listener = Callable[[str | None, dict, dict], None]


class Mirror:
    def __init__(self, call):
        self._call = call  # Daemon.call: a GetAll when an interface is not kept (yet)
        self._props: dict[str, dict] = {}  # interface -> property -> plain value
        self._loading: dict[int, tuple[str, int]] = {}  # GetAll serial -> (interface, generation)
        self._generation = 0
        self.enabled = False  # whether the daemon's PropertiesChanged reach us
        self.listeners: list[Listener] = []

    def cached(self, interface: str) -> dict | None:
        return self._props.get(interface)

    async def get(self, interface: str) -> dict:
        """The interface's properties (name -> value), from the copy when it has them."""
        values = self._props.get(interface)
        if values is not None:
            return values
        generation, sent = self._generation, []

        def loading(serial):
            if self.enabled:
                sent.append(serial)
                self._loading[serial] = (interface, generation)

        try:
            (out,) = await self._call(PROPERTIES, "GetAll", "s", [interface], on_send=loading)
        finally:
            for serial in sent:  # a reply that never came (timeout) leaves nothing behind
                self._loading.pop(serial, None)
        # on_message stored the reply already, and applied any change that followed it: prefer that.
        return self._props.get(interface) or _plain(out)

    def drop(self) -> None:
        """Forget everything (daemon gone, restarted, or connection lost)."""
        self._generation += 1
        self._loading.clear()
        had = bool(self._props)
        self._props.clear()
        if had:
            self._notify(None, {}, {})

    def on_message(self, msg: Message) -> None:
        """Called by Daemon for every message on the connection, in wire order."""
        if msg.message_type in (MessageType.METHOD_RETURN, MessageType.ERROR):
            loading = self._loading.pop(msg.reply_serial, None)
            if loading is not None and msg.message_type == MessageType.METHOD_RETURN \
                    and loading[1] == self._generation:
                self._props[loading[0]] = _plain(msg.body[0])
        elif msg.message_type == MessageType.SIGNAL and msg.member == "PropertiesChanged" \
                and msg.interface == PROPERTIES and msg.path == PATH:
            interface, changed, invalidated = msg.body
            values = self._props.get(interface)
            if values is None:
                return  # not kept: the next read loads it whole
            if invalidated:
                # A value we cannot know without asking: start again from GetAll.
                log.info("%s invalidated %s: reloading the mirror", interface, ", ".join(invalidated))
                self.drop()
                return
            new = _plain(changed)
            before = {k: values.get(k) for k in new}
            values.update(new)
            self._notify(interface, new, before)

    def _notify(self, interface, new, before):
        for listener in list(self.listeners):
            try:
                listener(interface, new, before)
            except Exception:  # one watcher's bug must not stop the others or the copy
                log.exception("a mirror listener failed")


def _plain(variants: dict) -> dict:
    return {name: v.value for name, v in variants.items()}
