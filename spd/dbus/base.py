"""What every D-Bus interface of the daemon is built from.

`@method(rule)` and a `prop(signature, rule, doc=...)` row declare a member together with who may call it
(spd/dbus/rules.py).
Their wrapper turns domain errors (spd.errors) into named D-Bus errors (org.selfprivacy.Error.<Kind>)
with the message a person can read, logs every call that changes something with the caller's uid and
the result, and counts calls in progress for the idle exit. Anything else is left to dbus-fast, which
logs the traceback locally and sends the caller only a generic error. `setting(...)` declares a
userdata setting in one row: its property and its Set<Name> method.

`LiveInterface` keeps every property true: its `current()` says what each property is now, and
`refresh()` compares that with what was last published and emits PropertiesChanged for what differs:
the names only, never a value (EmitsChangedSignal=invalidates), since a signal reaches anyone who
asks the bus for it while a value must pass the access check of Properties.Get.
A refresh runs after every change the daemon makes (before the call's reply, so a client reads its
own writes), before every property read, and when a watched file changes under the daemon
(spd/watch.py). Signals therefore follow the effective value, whatever changed it. A state that
cannot be read (a corrupt userdata.json) keeps the last good values; a read answers the error only
while there never was a good value. A single property that cannot be read now (var/domain holding no
domain name) is published as its error, which its reads answer.

A getter is pure: a `prop` row has no body, its getter hands out what was last published. What
brings the published values up to date before a read is the property's wrapper: `catch_up()` for
what current() reads, or for a `prop(..., fetched=True)` (its source must be asked: Services1's
systemd) an awaited `fetch()`.
"""

import asyncio
import functools
import inspect
import logging

from dbus_fast import DBusError
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from ..errors import SpdError, Unavailable, error_name
from ..idle import CALLS
from ..runtime import audit as trail
from ..userdata import get_setting, set_setting
from .access import admit
from .callers import caller
from .rules import GATEWAY, Rule, changes, declare, reads

log = logging.getLogger("spd.dbus")
settings_log = logging.getLogger("spd.settings")
audit = logging.getLogger("spd.access")

_MISSING = object()
DOC = "org.gtk.GDBus.DocString"
EMITS = "org.freedesktop.DBus.Property.EmitsChangedSignal"


def _as_dbus(e: SpdError) -> DBusError:
    return DBusError(error_name(e.kind), e.message)


def _served(fn, member: str, rule: Rule, checked: bool, fetched: bool = False):
    """fn as the bus runs it: SpdError as its D-Bus error, changes logged, counted while it runs. A
    method (`checked`) is async and first admits its caller (spd/dbus/access.py); a property (its
    reads decided before) first brings its value up to date (catch_up; fetch when `fetched`).
    Signatures still come from fn's annotations (inspect follows functools.wraps)."""
    def done(self, args, result: str) -> None:
        CALLS.end()
        if rule.change:
            who = caller.get()
            if who is None or GATEWAY not in who.kinds:  # the gateway writes its own entry
                uid = who.uid if who else None
                trail.write(trail.daemon_entry(uid, trail.action(self.name, member), args, result), audit,
                            "uid=%s call=%s.%s result=%s", "-" if uid is None else uid, self.name, member, result)

    def failed(self, args, e: BaseException) -> BaseException:
        failure = _failure(e)
        done(self, args, failure.type if isinstance(failure, DBusError) else type(e).__name__)
        return failure

    if checked or fetched:
        is_async = inspect.iscoroutinefunction(fn)

        @functools.wraps(fn)
        async def wrapped(self, *args):
            if checked and not await admit(rule):  # raises the refusal (logged there) to answer it
                return None
            if not checked:
                unserved(self)
            CALLS.begin()
            try:
                if fetched:
                    await _fetch(self)
                value = (await fn(self, *args)) if is_async else fn(self, *args)
            except BaseException as e:
                raise failed(self, args, e) from None
            done(self, args, "ok")
            return value
    else:
        @functools.wraps(fn)
        def wrapped(self, *args):
            unserved(self)
            CALLS.begin()
            try:
                self.catch_up()
                value = fn(self, *args)
            except BaseException as e:
                raise failed(self, args, e) from None
            done(self, args, "ok")
            return value
    return wrapped


async def _fetch(interface) -> None:
    """Before a `fetched` property's getter: its source asked (not current()'s: its value is not
    among them)."""
    try:
        await interface.fetch()
    except asyncio.CancelledError:  # the daemon is stopping: dbus-fast expects an Exception here
        raise Unavailable("spd is stopping") from None


def unserved(interface) -> None:
    """A property's getter gives nothing before its interface is served (LiveInterface.serving)."""
    if not interface.serving:
        raise DBusError(error_name("NotReady"), f"{interface.name} is not served yet")


def _failure(e: BaseException) -> BaseException:
    return _as_dbus(e) if isinstance(e, SpdError) else e


def method(rule: Rule, name: str | None = None):
    """A D-Bus method that `rule` says who may call."""
    def decorate(fn):
        member = name or fn.__name__
        declare(fn, member, rule)
        return dbus_method(name)(_served(fn, member, rule, checked=True))
    return decorate


_SELF = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)


class prop:
    """A read-only property, declared in one row of its interface's class body:

        Domain = prop("s", doc="The server's domain, from var/domain; \"\" when there is none.")

    Its getter hands out `self.value("Domain")`, what the interface published last, and nothing
    else: the read's wrapper has brought that up to date (catch_up(); or, for a `fetched` one,
    whose value is not among current()'s, the interface's fetch()). `rule` says who may read
    (spd/dbus/rules.py). Every state is read-only on the bus; changes are Set<Property> methods
    and verbs."""

    def __init__(self, signature: str, rule: Rule = reads(), *, doc: str, fetched: bool = False):
        self.signature, self.doc, self.rule, self.fetched = signature, doc, rule, fetched

    def __set_name__(self, owner, name: str) -> None:
        def get(interface):
            return interface.value(name)

        _as_member(owner, get, name, self.doc, inspect.Signature([_SELF], return_annotation=self.signature))
        declare(get, name, self.rule)
        setattr(owner, name, dbus_property(access=PropertyAccess.READ)(
            _served(get, name, self.rule, checked=False, fetched=self.fetched)))


# A setting's stored value (None: absent or null) -> the property's value.
_READ = {"b": lambda value, default: default if value is None else bool(value),
         "s": lambda value, default: value if isinstance(value, str) and value else default}


class setting:
    """A setting of userdata.json, declared once in an interface's class body, as timedated declares
    one property row and one method row:

        PasswordAuthentication = setting(SSH_MANAGE, "ssh.passwordAuthentication", "b", default=True,
                                         doc="Whether sshd accepts passwords (...)")

    gives the read-only property `PasswordAuthentication` (anyone who may read; its value from
    current(), `default` when unset) and the method `SetPasswordAuthentication(b)`, which `action`
    covers and whose audit act is spd/runtime/audit.py's ACTS["SSH1.SetPasswordAuthentication"]. The method
    runs in timedated's order: validate (`check`, an async fn raising InvalidArgument), return early
    when nothing changes, write (userdata.set_setting: as given, also where absence means the same;
    the store's commit hook refreshes every interface, so the signal leaves before the reply), log,
    reply. The interface holds the store as `self.userdata`."""

    def __init__(self, action: str, path: str, signature: str, default, doc: str, *, arg: str = "value",
                 set_doc: str | None = None, check=None):
        self.action, self.path, self.signature, self.default = action, path, signature, default
        self.doc, self.arg, self.check = doc, arg, check
        self.set_doc = set_doc or f"Write {path} as given."
        self.name = self.setter = ""

    def read(self, data: dict):
        return _READ[self.signature](get_setting(data, self.path), self.default)

    def __set_name__(self, owner, name: str) -> None:
        """Put the property and its Set method on the class in this row's place (dbus-fast finds
        members on the class when an interface is made)."""
        self.name, self.setter = name, f"Set{name}"

        async def set_(interface, value):
            if self.check is not None:
                await self.check(value)
            if await set_setting(interface.userdata, self.path, value):
                settings_log.info("%s set to %s", self.path, value)

        prop(self.signature, doc=self.doc).__set_name__(owner, name)
        arg = inspect.Parameter(self.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=self.signature)
        _as_member(owner, set_, self.setter, self.set_doc, inspect.Signature([_SELF, arg]))
        setattr(owner, self.setter, method(changes(self.action))(set_))
        owner.SETTINGS = (*owner.SETTINGS, self)


def _as_member(owner, fn, name: str, doc: str, signature: inspect.Signature) -> None:
    """fn as if defined in owner's body as `name` with this signature (what dbus-fast and the rule
    table read)."""
    fn.__name__, fn.__qualname__, fn.__module__ = name, f"{owner.__qualname__}.{name}", owner.__module__
    fn.__doc__, fn.__signature__ = doc, signature


class LiveInterface(ServiceInterface):
    NAME = ""  # the D-Bus interface name (spd/contract.py)
    SETTINGS: tuple = ()  # its setting(...) rows
    userdata = None  # the userdata store (spd/userdata.py) its settings live in
    # False until spd/main.py has exported the interface: dbus-fast's export() reads every property
    # for an ObjectManager.InterfacesAdded signal that any listener on the bus receives, and a value
    # reaches only a caller that the access check admitted.
    serving = False

    def __init__(self):
        super().__init__(self.NAME)
        self._published: dict = {}  # property -> the value last published
        self._error: SpdError | None = None  # why the last refresh could not read the state
        self._source = None  # source() as of the last refresh on a read

    # The lifecycle spd/main.py runs every interface through: start() once built and before export
    # (subscribe to the domain's on_<event> listeners, begin background work; never in __init__),
    # stop() on the way out (cancel what start() began), busy() while long work must keep the
    # process alive (the idle exit waits).
    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def busy(self) -> bool:
        return False

    def introspect(self):
        """The introspection data with each member's docstring as its DocString annotation (the
        convention of gdbus-codegen), so `busctl introspect` and the shipped XML say what it means."""
        info = super().introspect()
        for member in [*info.methods, *info.properties, *info.signals]:
            doc = getattr(getattr(type(self), member.name, None), "__doc__", None)
            if doc:
                member.annotations[DOC] = " ".join(doc.split())
        for member in info.properties:  # a change is announced, its value only read (Get, checked)
            member.annotations[EMITS] = "invalidates"
        return info

    def current(self) -> dict:
        """Every property whose value comes from the domain, as it is now (may raise SpdError: all keep
        their last values; one property's attempt() may give its error instead): here the settings;
        an interface with more adds its own to these."""
        if not self.SETTINGS:
            return {}
        data = self.userdata.read()
        return {s.name: s.read(data) for s in self.SETTINGS}

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
        """Take these values; signal (as invalidated) those that differ from what was published. A
        value may be the SpdError that reads of its property answer now (attempt())."""
        changed = {k: v for k, v in values.items() if _same(self._published.get(k, _MISSING)) != _same(v)}
        # An error where nothing was published yet is taken but not signalled: nobody holds a copy.
        signalled = [k for k, v in changed.items() if k in self._published or not isinstance(v, SpdError)]
        self._published.update(changed)
        if signalled:
            self.emit_properties_changed({}, signalled)  # a no-op before export

    def source(self):
        """What current() reads, if something cheap says so (the parsed userdata.json, cached while
        the file is unchanged; a tuple of such): a read refreshes only when it is unequal to the last
        one. None: always."""
        return None if self.userdata is None else self.userdata.read()

    def catch_up(self) -> None:
        """Before every read (its wrapper calls this, never a getter): refresh when the source changed,
        so a read is never behind the files (and a GetAll of many properties reads them once)."""
        try:
            source = self.source()
        except SpdError:
            source = None
        if source is None or (source is not self._source and source != self._source):
            self.refresh()
            self._source = source if self._error is None else None

    async def fetch(self) -> None:
        """Before a read of a `prop(fetched=True)`: ask the sources that must be asked and publish
        their answers (or their errors), as new as the last change they announced."""

    def value(self, name: str):
        """A property's value as last published, for its getter; the error reads of it answer when it
        cannot be read."""
        value = self._published.get(name, _MISSING)
        if value is _MISSING:
            raise self._error or SpdError(f"{name} is not known yet")
        if isinstance(value, SpdError):
            raise type(value)(value.message)  # a new one each time: a raise adds to its traceback
        return value


def attempt(read):
    """read()'s value for current(), or the SpdError it raised: that property alone cannot be read
    now, its reads answer the error, and the others are published as usual."""
    try:
        return read()
    except SpdError as e:
        return e


def _same(value):
    """What publish() compares: an error by what it says (a new one at each read)."""
    return (type(value), value.message) if isinstance(value, SpdError) else value
