"""Clients for systemd (org.freedesktop.systemd1) and logind (org.freedesktop.login1), reached on the
daemon's own bus. The domain code (spd/services.py, spd/system.py) sees only their plain async methods.

Unit states are cached and the cache is dropped by systemd's own signals (a unit's PropertiesChanged,
UnitNew/UnitRemoved/Reloading, systemd changing owner) and after CACHE_TTL at the latest, so
`GET /services/status` costs no round trip to systemd while nothing changes. A signal is queued on our
connection before any request sent after it, so a change systemd announced is never answered stale.
"""

import asyncio
import logging
import time

from dbus_fast import Message, MessageType

from ..contract import DBUS, DBUS_PATH, DBUS_UNAVAILABLE, PROPERTIES, match_rule, owner_changed
from ..errors import Failed, Unavailable
from ..runtime.listeners import Listeners

log = logging.getLogger("spd.systemd")

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
LOGIND = "org.freedesktop.login1"
LOGIND_PATH = "/org/freedesktop/login1"
LOGIND_MANAGER = "org.freedesktop.login1.Manager"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"

TIMEOUT = 20.0  # seconds for one call to systemd or logind (the gateway gives up after 30)
CACHE_TTL = 1.0  # seconds; a safety net for changes no signal told us about


class BackendError(Exception):
    """systemd or logind answered with an error (it was reachable)."""

    def __init__(self, name: str, text: str):
        # One line at most: a Python service (such as a mock) may send a whole traceback.
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        self.name = name
        self.text = lines[-1][:200] if lines else ""
        super().__init__(f"{name}: {self.text}")


async def _call(bus, service: str, what: str, path: str, interface: str, member: str,
                signature: str = "", body=()) -> list:
    msg = Message(destination=service, path=path, interface=interface, member=member,
                  signature=signature, body=list(body))
    try:
        reply = await asyncio.wait_for(bus.call(msg), TIMEOUT)
    except asyncio.TimeoutError:
        raise Unavailable(f"{what} did not answer within {TIMEOUT:.0f} seconds") from None
    except (EOFError, OSError):
        raise Unavailable("the daemon lost its bus connection") from None
    if reply.message_type == MessageType.ERROR:
        text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
        if reply.error_name in DBUS_UNAVAILABLE:
            raise Unavailable(f"{what} ({service}) is not reachable on the bus")
        raise BackendError(reply.error_name, text)
    return reply.body


class Systemd:
    def __init__(self, bus):
        self.bus = bus
        self._owner = None  # systemd's unique name: only its signals are believed
        self._watching = None  # the task that set up our match rules
        self.on_job_removed = Listeners(log, "systemd's JobRemoved")  # fn(unit, job_path, result)
        self.on_units_changed = Listeners(log, "systemd's unit signals")  # fn(): a state may differ now
        self._generation = 0  # bumped by every signal that may change a unit's state
        self._cache = {}  # names -> (generation, time, states)
        self._inflight = {}  # names -> (generation, task)
        self._list_by_names = True  # ListUnitsByNames: one round trip for all units (systemd >= 233)
        self._tasks = set()  # background Subscribe calls, kept until done
        bus.add_message_handler(self._on_message)

    def call(self, member: str, signature: str = "", body=(), path: str = SYSTEMD_PATH,
             interface: str = MANAGER):
        return _call(self.bus, SYSTEMD, "systemd", path, interface, member, signature, body)

    def _changed(self) -> None:
        self._generation += 1
        self.on_units_changed.notify()

    # --- units ----------------------------------------------------------------------------

    async def start_unit(self, unit: str) -> str:
        """Queue a start job (mode "replace"); the job's path."""
        await self._watch()
        try:
            (job,) = await self.call("StartUnit", "ss", [unit, "replace"])
        except BackendError as e:
            raise Failed(f"systemd did not start {unit}: {e.text or e.name}") from None
        return job

    async def unit_states(self, names: tuple) -> dict:
        """{unit: (LoadState, ActiveState)}; ("not-found", "inactive") for a unit systemd lacks."""
        await self._watch()
        generation = self._generation
        cached = self._cache.get(names)
        if cached and cached[0] == generation and time.monotonic() - cached[1] < CACHE_TTL:
            return cached[2]
        # Requests that arrive while a fetch of the same generation runs share its answer.
        flight = self._inflight.get(names)
        if flight is None or flight[0] != generation or flight[1].done():
            task = asyncio.ensure_future(self._fetch(names))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            flight = self._inflight[names] = (generation, task)
        states = await asyncio.shield(flight[1])
        if generation == self._generation:
            self._cache[names] = (generation, time.monotonic(), states)
        return states

    async def _fetch(self, names: tuple) -> dict:
        if self._list_by_names:
            try:
                (rows,) = await self.call("ListUnitsByNames", "as", [list(names)])
                return {row[0]: (row[2], row[3]) for row in rows}
            except BackendError as e:
                if e.name != UNKNOWN_METHOD:
                    raise Failed(f"systemd could not list units: {e.text or e.name}") from None
                self._list_by_names = False
                log.info("systemd has no ListUnitsByNames; asking unit by unit")
        return dict(zip(names, await asyncio.gather(*(self._one_state(n) for n in names))))

    async def _one_state(self, name: str) -> tuple:
        try:
            (path,) = await self.call("GetUnit", "s", [name])
        except BackendError:  # NoSuchUnit: not loaded, so not running
            return ("not-found", "inactive")
        try:
            (props,) = await self.call("GetAll", "s", [UNIT], path=path, interface=PROPERTIES)
        except BackendError:  # the unit went away between the two calls
            return ("not-found", "inactive")
        load, active = props.get("LoadState"), props.get("ActiveState")
        return (load.value if load else "loaded", active.value if active else "inactive")

    # --- signals --------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Once: ask for systemd's signals and learn who systemd is."""
        w = self._watching
        if w is None or (w.done() and (w.cancelled() or w.exception())):
            self._watching = asyncio.ensure_future(self._set_up_watch())
            # Its failure is each waiter's to report; one left at shutdown must not be "never retrieved".
            self._watching.add_done_callback(lambda t: t.cancelled() or t.exception())
        await asyncio.shield(self._watching)

    async def _set_up_watch(self) -> None:
        for rule in (match_rule(sender=SYSTEMD, interface=MANAGER),
                     match_rule(sender=SYSTEMD, interface=PROPERTIES, member="PropertiesChanged", arg0=UNIT),
                     owner_changed(SYSTEMD)):
            await _call(self.bus, DBUS, "the bus", DBUS_PATH, DBUS, "AddMatch", "s", [rule])
        try:
            (self._owner,) = await _call(self.bus, DBUS, "the bus", DBUS_PATH, DBUS,
                                         "GetNameOwner", "s", [SYSTEMD])
        except (BackendError, Unavailable):  # NameHasNoOwner: not running yet; NameOwnerChanged will tell
            self._owner = None
        if self._owner:
            await self._subscribe()

    async def _subscribe(self) -> None:
        """systemd sends unit and job signals only while some client is subscribed."""
        try:
            await self.call("Subscribe")
        except (BackendError, Unavailable) as e:
            log.debug("systemd Subscribe: %s", e)

    def _on_message(self, msg) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return None
        if msg.sender == DBUS and msg.member == "NameOwnerChanged" and msg.body and msg.body[0] == SYSTEMD:
            self._owner = msg.body[2] or None
            self._changed()
            if self._owner:
                task = asyncio.ensure_future(self._subscribe())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        elif self._owner is not None and msg.sender == self._owner:
            if msg.interface == MANAGER:
                if msg.member == "JobRemoved" and msg.signature == "uoss":
                    _, job, unit, result = msg.body
                    self.on_job_removed.notify(unit, job, result)
                elif msg.member in ("UnitNew", "UnitRemoved", "Reloading"):
                    self._changed()
            elif msg.interface == PROPERTIES and msg.member == "PropertiesChanged":
                self._changed()
        return None


class Logind:
    def __init__(self, bus):
        self.bus = bus

    async def reboot(self) -> None:
        """Reboot(false): not interactive, so logind never waits for a polkit prompt."""
        try:
            await _call(self.bus, LOGIND, "logind", LOGIND_PATH, LOGIND_MANAGER, "Reboot", "b", [False])
        except BackendError as e:
            raise Failed(f"logind refused to reboot: {e.text or e.name}") from None
