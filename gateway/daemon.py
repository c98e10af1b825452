"""The gateway's one connection to the daemon, and its cache of authenticated tokens.

A request costs one D-Bus round trip when its token is cached. The cache is emptied by the daemon's
Tokens1.Changed signal (sent before the reply of the call that changed tokens, and the bus keeps
their order) and when the daemon's name changes owner; when the bus refuses to send us those
signals, nothing is cached. A generation counter stops an Authenticate
reply that raced with such a signal from re-filling the cache with a stale entry.
"""

import asyncio
import hashlib
import logging

from dbus_fast import Message, MessageType
from dbus_fast.errors import DBusError

from spd.dbus.names import BUS_NAME, PATH, TOKENS, message_bus

from .errors import UNREACHABLE, HTTPError, from_dbus

log = logging.getLogger("spd-gateway")

CALL_TIMEOUT = 30.0  # calls that change something: a git pull, a job's start
READ_TIMEOUT = 10.0  # reads: a daemon that stopped answering must not hold them for the full 30 s
CACHE_MAX = 4096


def _unreachable() -> HTTPError:
    # A fresh error each time: one shared instance raised again and again grows its traceback.
    return HTTPError(503, UNREACHABLE)


class Daemon:
    def __init__(self, address: str):
        self.address = address
        self.bus = None
        self._connecting = asyncio.Lock()
        self._auth: dict[bytes, str] = {}
        self._generation = 0
        self._cache = False  # whether the signals that empty the cache reach us

    async def connect(self):
        async with self._connecting:
            if self.bus is not None and self.bus.connected:
                return self.bus
            self._forget()
            try:
                bus = await message_bus(self.address).connect()
            except (OSError, EOFError, DBusError, ValueError) as e:
                log.error("cannot connect to the bus %s: %s", self.address, e)
                raise _unreachable() from None
            bus.add_message_handler(self._on_message)
            watched = True
            for rule in (f"type='signal',sender='{BUS_NAME}',interface='{TOKENS}',member='Changed'",
                         "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',"
                         f"arg0='{BUS_NAME}'"):
                reply = await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                               interface="org.freedesktop.DBus", member="AddMatch",
                                               signature="s", body=[rule]))
                if reply.message_type == MessageType.ERROR:
                    watched = False
                    log.warning("cannot watch token changes (%s): every request will be authenticated "
                                "by the daemon", reply.error_name)
            # Without the signals a cached token would outlive its deletion: cache only with them.
            self._cache = watched
            self.bus = bus
            return bus

    def close(self):
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None

    async def call(self, interface: str, member: str, signature: str = "", body=(),
                   timeout: float = CALL_TIMEOUT) -> list:
        """Call a daemon method; its D-Bus error becomes the matching HTTPError."""
        bus = self.bus if self.bus is not None and self.bus.connected else await self.connect()
        msg = Message(destination=BUS_NAME, path=PATH, interface=interface, member=member,
                      signature=signature, body=list(body))
        try:
            async with asyncio.timeout(timeout):  # no extra task per call, unlike wait_for
                reply = await bus.call(msg)
        except asyncio.TimeoutError:
            raise HTTPError(503, "The SelfPrivacy daemon did not answer in time") from None
        except (EOFError, OSError):
            raise _unreachable() from None
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise from_dbus(reply.error_name, text)
        return reply.body

    async def authenticate(self, token: str) -> str:
        """The device name behind a token; 401 when there is none."""
        key = hashlib.sha256(token.encode()).digest()
        name = self._auth.get(key)
        if name is not None:
            return name
        generation = self._generation
        try:
            (name,) = await self.call(TOKENS, "Authenticate", "s", [token], READ_TIMEOUT)
        except HTTPError as e:
            if e.status == 404:
                raise HTTPError(401, "Invalid token") from None
            raise
        if generation == self._generation and self._cache:
            if len(self._auth) >= CACHE_MAX:
                self._auth.clear()
            self._auth[key] = name
        return name

    def _forget(self):
        self._auth.clear()
        self._generation += 1

    def _on_message(self, msg):
        if msg.message_type == MessageType.SIGNAL and (
            (msg.member == "Changed" and msg.interface == TOKENS)
            or (msg.member == "NameOwnerChanged" and msg.body and msg.body[0] == BUS_NAME)
        ):
            self._forget()
        return None
