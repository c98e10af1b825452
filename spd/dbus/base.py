"""What every D-Bus interface of the daemon is built from.

`method` turns domain errors (spd.errors) into named D-Bus errors (org.selfprivacy.Error.<Kind>) with
the message a person can read. Anything else is left to dbus-fast, which logs the traceback locally
and sends the caller only a generic error.

`LiveInterface` keeps every property true: its `current()` says what each property is now, and
`refresh()` compares that with what was last published and emits PropertiesChanged for what differs.
A refresh runs after every change the daemon makes (before the call's reply, so a client reads its
own writes), on every property read, and when a watched file changes under the daemon (spd/watch.py).
Signals therefore follow the effective value, whatever changed it. A state that cannot be read (a
corrupt userdata.json) keeps the last good values; a read answers the error only while there never
was a good value.
"""

import functools
import inspect
import logging

from dbus_fast import DBusError
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from ..errors import SpdError
from .names import error_name

log = logging.getLogger("spd.dbus")

_MISSING = object()


def _as_dbus(e: SpdError) -> DBusError:
    return DBusError(error_name(e.kind), e.message)


def errors_mapped(fn):
    """fn (sync or async) with SpdError turned into its D-Bus error. Signatures still come from fn's
    annotations (inspect follows functools.wraps)."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def wrapped(self, *args):
            try:
                return await fn(self, *args)
            except SpdError as e:
                raise _as_dbus(e) from None
    else:
        @functools.wraps(fn)
        def wrapped(self, *args):
            try:
                return fn(self, *args)
            except SpdError as e:
                raise _as_dbus(e) from None
    return wrapped


def method(name: str | None = None):
    """@dbus_method that maps SpdError to its D-Bus error."""
    return lambda fn: dbus_method(name)(errors_mapped(fn))


def prop():
    """A read-only property (with SpdError mapped): every state is read-only on the bus; changes
    are Set<Property> methods and verbs."""
    return lambda fn: dbus_property(access=PropertyAccess.READ)(errors_mapped(fn))


class LiveInterface(ServiceInterface):
    def __init__(self, name: str):
        super().__init__(name)
        self._published: dict = {}  # property -> the value last published
        self._error: SpdError | None = None  # why the last refresh could not read the state

    def current(self) -> dict:
        """Every property whose value comes from the domain, as it is now (may raise SpdError)."""
        return {}

    def refresh(self) -> None:
        try:
            now = self.current()
        except SpdError as e:
            if self._error is None or self._error.message != e.message:
                log.warning("%s keeps its last values: %s", self.name, e.message)
            self._error = e
            return
        self._error = None
        self.publish(now)

    def publish(self, values: dict) -> None:
        """Take these values; signal those that differ from what was published."""
        changed = {k: v for k, v in values.items() if self._published.get(k, _MISSING) != v}
        if changed:
            self._published.update(changed)
            self.emit_properties_changed(changed)  # a no-op before export

    def value(self, name: str):
        """A property's value for a read: refreshed first, so a read is never behind the files."""
        self.refresh()
        try:
            return self._published[name]
        except KeyError:
            raise self._error or SpdError(f"{name} is not known yet") from None
