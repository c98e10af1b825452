"""The one decorator every D-Bus method of the daemon goes through.

It turns domain errors (spd.errors) into named D-Bus errors (org.selfprivacy.Error.<Kind>) with the
message a person can read. Anything else is left to dbus-fast, which logs the traceback locally and
sends the caller only a generic error.
"""

import functools
import inspect

from dbus_fast import DBusError
from dbus_fast.service import dbus_method

from ..errors import SpdError
from .names import error_name


def _as_dbus(e: SpdError) -> DBusError:
    return DBusError(error_name(e.kind), e.message)


def errors_mapped(fn):
    """fn (sync or async) with SpdError turned into its D-Bus error. Use it under @dbus_property on a
    getter or setter that reaches domain code (a corrupt userdata.json is then a clear error, not a
    traceback); @method applies it to every method. Signatures still come from fn's annotations
    (inspect follows functools.wraps)."""
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
