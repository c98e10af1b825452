"""The gateway's one connection to the daemon, its cache of authenticated tokens, and (mirror.py) its
copy of the daemon's properties, which both follow the daemon's signals on this connection.

Anyone on the bus may send us a signal (unicast to our unique name, whatever the match rules say), so
a signal counts only from its true source: NameOwnerChanged from the bus itself, Tokens1.Changed and
PropertiesChanged from the daemon's current unique name, learnt with GetNameOwner when we connect and
from every NameOwnerChanged of its name after that.

A request costs one D-Bus round trip when its token is cached, none when it reads a mirrored
property. The cache is emptied by the daemon's
Tokens1.Changed signal (sent before the reply of the call that changed tokens, and the bus keeps
their order) and when the daemon's name changes owner; when the bus refuses to send us those
signals, nothing is cached. A generation counter stops an Authenticate
reply that raced with such a signal from re-filling the cache with a stale entry.
"""

import asyncio
import functools
import hashlib
import logging

from dbus_fast import Message, MessageType
from dbus_fast.errors import DBusError

from spd.contract import (BUS_NAME, DAEMON_OWNER_CHANGED, DBUS, DBUS_PATH, PATH, PROPERTIES, PROPERTIES_CHANGED,
                          TOKENS, TOKENS_CHANGED)
from spd.rest.errors import AUTHENTICATE, HTTPError, from_dbus, unreachable
from spd.rest.routes import CALL_TIMEOUT, READ_TIMEOUT
from spd.runtime.bus import message_bus
from spd.runtime.listeners import Listeners

from . import mirror

log = logging.getLogger("spd-gateway")

CACHE_MAX = 4096


class Daemon:
    def __init__(self, address: str):
        self.address = address
        self.bus = None
        self._connecting = asyncio.Lock()
        self._auth: dict[bytes, str] = {}
        self._generation = 0
        self._cache = False  # whether the signals that empty the cache reach us
        self._owner = None  # the daemon's unique name: only its signals count (None: not running)
        self._owner_changes = 0  # NameOwnerChanged seen: a GetNameOwner reply older than one is stale
        self.mirror = mirror.Mirror(functools.partial(self.call, timeout=READ_TIMEOUT))
        # fn() when any token may have been deleted or replaced
        self.token_listeners = Listeners(log, "the token cache")

    async def connect(self):
        async with self._connecting:
            if self.bus is not None and self.bus.connected:
                return self.bus
            self._forget()
            self._owner = None
            try:
                bus = await message_bus(self.address).connect()
            except (OSError, EOFError, DBusError, ValueError) as e:
                log.error("cannot connect to the bus %s: %s", self.address, e)
                raise unreachable() from None
            bus.add_message_handler(self._on_message)
            watched = True
            for rule in (DAEMON_OWNER_CHANGED, TOKENS_CHANGED, PROPERTIES_CHANGED):
                reply = await self._bus_call(bus, "AddMatch", "s", rule)
                if reply.message_type == MessageType.ERROR:
                    watched = False
                    log.warning("cannot watch the daemon's signals (%s): every request will be authenticated "
                                "and answered by the daemon", reply.error_name)
            # After the match on NameOwnerChanged: an owner change from now on is seen either way.
            seen = self._owner_changes
            reply = await self._bus_call(bus, "GetNameOwner", "s", BUS_NAME)
            if seen == self._owner_changes:  # (else that signal, newer than this reply, told us)
                self._owner = reply.body[0] if reply.message_type == MessageType.METHOD_RETURN else None
            # Without the signals a cached token would outlive its deletion and a mirrored property
            # its change: cache and mirror only with them.
            self._cache = self.mirror.enabled = watched
            self.bus = bus
            self._watch = asyncio.get_running_loop().create_task(self._until_disconnected(bus))
            return bus

    @staticmethod
    async def _bus_call(bus, member: str, signature: str, arg: str):
        return await bus.call(Message(destination=DBUS, path=DBUS_PATH, interface=DBUS,
                                      member=member, signature=signature, body=[arg]))

    async def _until_disconnected(self, bus):
        """A lost connection loses the signals too: forget what they kept current."""
        try:
            await bus.wait_for_disconnect()
        except Exception:  # disconnected with an error: the same for us
            pass
        if self.bus is bus:
            self._forget()

    def close(self):
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None

    async def call(self, interface: str, member: str, signature: str = "", body=(),
                   timeout: float = CALL_TIMEOUT, on_send=None, statuses=None) -> list:
        """Call a daemon method; its D-Bus error becomes the matching HTTPError (statuses: from_dbus's).
        on_send(serial) learns the call's serial before it is sent (the mirror recognizes its Get replies
        by it)."""
        bus = self.bus if self.bus is not None and self.bus.connected else await self.connect()
        msg = Message(destination=BUS_NAME, path=PATH, interface=interface, member=member,
                      signature=signature, body=list(body))
        if on_send is not None:
            msg.serial = bus.next_serial()
            on_send(msg.serial)
        try:
            async with asyncio.timeout(timeout):  # no extra task per call, unlike wait_for
                reply = await bus.call(msg)
        except asyncio.TimeoutError:
            raise HTTPError(503, "The SelfPrivacy daemon did not answer in time") from None
        except (EOFError, OSError):
            raise unreachable() from None
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise from_dbus(reply.error_name, text, statuses)
        return reply.body

    def known(self, token: str) -> str | None:
        """The device name behind a token when it is cached (no round trip), else None."""
        return self._auth.get(hashlib.sha256(token.encode()).digest())

    async def authenticate(self, token: str) -> str:
        """The device name behind a token; 401 when there is none."""
        key = hashlib.sha256(token.encode()).digest()
        name = self._auth.get(key)
        if name is not None:
            return name
        generation = self._generation
        (name,) = await self.call(TOKENS, "Authenticate", "s", [token], READ_TIMEOUT, statuses=AUTHENTICATE)
        if generation == self._generation and self._cache:
            if len(self._auth) >= CACHE_MAX:
                self._auth.clear()
            self._auth[key] = name
        return name

    def _forget(self, owner_changed=True):
        self._auth.clear()
        self._generation += 1
        if owner_changed:
            self.mirror.drop()
        self.token_listeners.notify()

    def _on_message(self, msg):
        if msg.message_type != MessageType.SIGNAL:
            self.mirror.on_message(msg)  # replies: the bus delivers one only from whom we called
        elif msg.member == "NameOwnerChanged" and msg.sender == DBUS and msg.interface == DBUS \
                and msg.body and msg.body[0] == BUS_NAME:
            self._owner_changes += 1
            self._owner = msg.body[2] or None
            self._forget()
        elif self._owner is not None and msg.sender == self._owner and msg.path == PATH:
            if msg.member == "Changed" and msg.interface == TOKENS:
                self._forget(owner_changed=False)
            elif msg.interface == PROPERTIES:
                self.mirror.on_message(msg)
        return None
