"""Who is calling: a caller's uid and kinds (root, the gateway's group), from its unique bus name.

Credentials come from the bus driver (GetConnectionCredentials: uid and groups, never a PID) and are
cached until the bus says the name is gone. Unique names are never reused on a bus, so a cached
entry cannot be inherited by another process.
"""

import asyncio
import contextvars
import grp
import logging
from dataclasses import dataclass

from dbus_fast import Message, MessageType

from ..contract import DBUS, DBUS_PATH
from .rules import GATEWAY, ROOT

log = logging.getLogger("spd.access")

CACHE_MAX = 1024


@dataclass(frozen=True)
class Caller:
    uid: int
    kinds: frozenset  # of ROOT, GATEWAY


# The caller of the call being dispatched, for code that wants to say who asked.
caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


class Callers:
    def __init__(self, bus, gateway_group: str):
        self.bus = bus
        self.gateway_group = gateway_group
        self._gateway_gid = _gid(gateway_group)
        self._known: dict[str, Caller] = {}
        self._gone: set[str] = set()  # names that left while being looked up
        self._looking: dict[str, asyncio.Future] = {}  # name -> its lookup, which every call awaits

    def get(self, name: str) -> Caller | None:
        return self._known.get(name)

    def look_up(self, name: str) -> asyncio.Future:
        """The caller behind a unique name (then cached), or None when the bus cannot say or the name
        left meanwhile (watched from this call on). One lookup per name: its calls, all awaiting it,
        go on in the order they came."""
        if name not in self._looking:
            self._looking[name] = asyncio.ensure_future(self._fetch(name))
        return self._looking[name]

    async def _fetch(self, name: str) -> Caller | None:
        who = None
        try:
            reply = await self.bus.call(Message(
                destination=DBUS, path=DBUS_PATH, interface=DBUS,
                member="GetConnectionCredentials", signature="s", body=[name]))
            if reply.message_type is MessageType.METHOD_RETURN and name not in self._gone:
                who = self.from_credentials(reply.body[0])
        except Exception as e:  # the bus went away: unknown, so refused
            log.warning("cannot look up caller %s: %s", name, e)
        finally:
            self._looking.pop(name, None)
            self._gone.discard(name)
        if who is not None:
            if len(self._known) >= CACHE_MAX:  # the oldest goes: it is looked up again if it calls
                del self._known[next(iter(self._known))]
            self._known[name] = who
        return who

    def forget(self, name: str) -> None:
        """The name left the bus (NameOwnerChanged)."""
        self._known.pop(name, None)
        if name in self._looking:
            self._gone.add(name)

    def from_credentials(self, creds: dict) -> Caller | None:
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


def _gid(group: str) -> int | None:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        log.warning("group %s does not exist: only root may call spd", group)
        return None
