"""The gateway's copy of the daemon's properties (as GDBusProxy and Cockpit's D-Bus client keep one).

A property is read with Properties.Get the first time a route needs it (one property at a time, so a
property that cannot be read now, e.g. Services1.Status while systemd is away, fails only its own
routes) and then kept current by the daemon's PropertiesChanged, which names what changed and never
carries a value (spd/dbus/base.py): the name is forgotten at once and read again with Get when it was
kept or a watcher (/events) follows it. Reads of a property being fetched share that fetch.

Everything is applied in the order the messages arrive, in the bus connection's message handler: a Get
reply is stored when it passes there (not when the awaiting request resumes). The daemon emits a change
before it replies to the call that made it, so a client that got the reply of its write finds the
property forgotten here, and its read waits for a Get sent after the change. A Get whose reply has not
come when an invalidation arrives is answered after it: its value is already the new one.

gateway/daemon.py passes only the daemon's own signals (from its current unique name) and drops the
copy (drop()) when the daemon's name changes owner or the bus connection is lost; a generation counter
keeps a reply to a Get sent before that out of the new copy. While the bus refuses our match rules
nothing is kept and every read asks the daemon, as before the mirror existed.
"""

import asyncio
import collections
import logging
from typing import Callable

from dbus_fast import Message, MessageType

from spd.contract import PATH, PROPERTIES
from spd.runtime.listeners import Listeners
from spd.rest.errors import HTTPError

log = logging.getLogger("spd-gateway")

# listener(interface, new values, values before) on a change (a value before is None when it was not
# kept); listener(None, {}, {}) when the copy is dropped: every watcher must start again.
Listener = Callable[[str | None, dict, dict], None]
_UNSEEN = object()  # a fetch no watcher waits for: its reply is stored, not announced


class _Fetch:
    """A Get in flight for one property, until its reply passes on_message."""

    def __init__(self, generation: int):
        self.generation = generation
        self.task = None  # the Get, which every read of the property awaits
        self.before = _UNSEEN  # the value an invalidation forgot: announce the reply as its change


class Mirror:
    def __init__(self, call):
        self._call = call  # Daemon.call: a Get for a property not kept (yet)
        self._props: dict[str, dict] = {}  # interface -> property -> plain value
        self._fetching: dict[tuple[str, str], _Fetch] = {}  # (interface, name) -> its Get in flight
        self._loading: dict[int, tuple[str, str]] = {}  # Get serial -> (interface, name)
        self._generation = 0
        self._watched = collections.Counter()  # (interface, name) -> how many watchers follow it
        self.enabled = False  # whether the daemon's PropertiesChanged reach us
        self.listeners = Listeners(log, "the property mirror")  # each a Listener

    def cached(self, interface: str) -> dict:
        return self._props.get(interface, {})

    def kept(self, interface: str, names: tuple) -> dict | None:
        """These properties of the interface (name -> value) when the copy has them all, else None."""
        values = self._props.get(interface)
        if values is not None and all(n in values for n in names):
            return values
        return None

    def watch(self, interface: str, names: tuple, by: int = 1) -> None:
        """A watcher follows these properties (by=-1: no longer): their changes are read even
        when no value is kept (one that could not be read, or one no route read yet)."""
        for name in names:
            self._watched[(interface, name)] += by
            if self._watched[(interface, name)] <= 0:
                del self._watched[(interface, name)]

    async def get(self, interface: str, names: tuple) -> dict:
        """These properties of the interface (name -> value), from the copy where it has them."""
        values = self._props.get(interface, {})
        missing = [n for n in names if n not in values]
        if not missing:
            return values
        got = await asyncio.gather(*(self._load(interface, n) for n in missing))
        # on_message stored the replies already, and applied any change that followed them: prefer that.
        return {**dict(zip(missing, got)), **self._props.get(interface, {})}

    def _load(self, interface: str, name: str):
        """The property's value by a Get: the one in flight, or a new one."""
        if not self.enabled:  # no signals: nothing is kept, each read asks
            return self._get(interface, name, None)
        fetch = self._fetch(interface, name)
        return asyncio.shield(fetch.task)  # one reader giving up must not cancel the others' read

    def _fetch(self, interface: str, name: str) -> _Fetch:
        key = (interface, name)
        fetch = self._fetching.get(key)
        if fetch is None:
            fetch = self._fetching[key] = _Fetch(self._generation)
            fetch.task = asyncio.ensure_future(self._get(interface, name, fetch))
            fetch.task.add_done_callback(_retrieve)
        return fetch

    async def _get(self, interface: str, name: str, fetch: _Fetch | None):
        sent = []

        def loading(serial):
            if fetch is not None and self._fetching.get((interface, name)) is fetch:
                sent.append(serial)
                self._loading[serial] = (interface, name)

        try:
            (value,) = await self._call(PROPERTIES, "Get", "ss", [interface, name], on_send=loading)
        finally:
            for serial in sent:  # a reply that never came (timeout) leaves nothing behind
                self._loading.pop(serial, None)
            if fetch is not None and self._fetching.get((interface, name)) is fetch:
                del self._fetching[(interface, name)]
        return value.value

    def drop(self) -> None:
        """Forget everything (daemon gone, restarted, or connection lost)."""
        self._generation += 1
        self._loading.clear()
        self._fetching.clear()
        had = bool(self._props)
        self._props.clear()
        if had:
            self.listeners.notify(None, {}, {})

    def on_message(self, msg: Message) -> None:
        """Called by Daemon for every reply and every signal of the daemon, in wire order."""
        if msg.message_type in (MessageType.METHOD_RETURN, MessageType.ERROR):
            loading = self._loading.pop(msg.reply_serial, None)
            fetch = loading and self._fetching.pop(loading, None)
            if fetch is None or fetch.generation != self._generation:
                return
            interface, name = loading
            if msg.message_type == MessageType.METHOD_RETURN:
                value = msg.body[0].value
                self._props.setdefault(interface, {})[name] = value
                if fetch.before is not _UNSEEN:
                    self.listeners.notify(interface, {name: value}, {name: fetch.before})
        elif msg.message_type == MessageType.SIGNAL and msg.member == "PropertiesChanged" \
                and msg.interface == PROPERTIES and msg.path == PATH:
            interface, _, invalidated = msg.body  # (spd sends no values: a value is read, checked)
            values = self._props.get(interface, {})
            for name in invalidated:
                had = name in values
                before = values.pop(name, None)
                if had or (interface, name) in self._watched:
                    fetch = self._fetching.get((interface, name))
                    if fetch is None:
                        fetch = self._fetch(interface, name)
                    if fetch.before is _UNSEEN:  # (a second invalidation: the first value before counts)
                        fetch.before = before


def _retrieve(task: asyncio.Task) -> None:
    """A fetch only the copy wanted (after an invalidation) may fail unread: that is no error here."""
    if not task.cancelled():
        e = task.exception()
        if e is not None and not isinstance(e, HTTPError):
            log.warning("reading a property failed: %r", e)
