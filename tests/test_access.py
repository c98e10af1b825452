"""The daemon's own caller check (spd/dbus/access.py, rules declared at each member in
spd/dbus/rules.py): every exported member declares its rule, the shipped introspection XML matches the
daemon, and each change is logged with the caller's uid. (tests/test_deploy.py runs callers as other
users against the shipped bus policy.)"""

import asyncio
import subprocess
import time

import dbus_fast
import pytest
from dbus_fast import DBusError, Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus

import introspection
from spd.dbus.access import Access
from spd.dbus.base import LiveInterface, method, prop
from spd.dbus.callers import Callers, Caller
from spd.contract import DBUS_ACCESS_DENIED as ACCESS_DENIED, PROPERTIES, TOKENS, USERS
from spd.dbus.rules import GATEWAY, ROOT, changes, reads
from dbus_fast.service import ServiceInterface
from spd.idle import busy
from spd.runtime.idle import Activity, until_idle
from stack import BUS_NAME, PATH, PYTHON, REPO, TOKEN, call, get_property



def test_every_exported_member_declares_its_access(daemon, bus):
    """The table `python -m spd.dbus.rules` prints covers every member the daemon exports, each with
    callers and a polkit action of live-and-local.md 5."""
    printed = subprocess.run([PYTHON, "-m", "spd.dbus.rules"], cwd=REPO, capture_output=True, text=True,
                             check=True, timeout=60).stdout
    print(printed)
    rows = {(r.split()[0], r.split()[1]): r.split()[2:] for r in printed.splitlines()[1:]}
    actions = {"org.selfprivacy.read", "org.selfprivacy.users.manage", "org.selfprivacy.ssh.manage",
               "org.selfprivacy.services.manage", "org.selfprivacy.system.manage",
               "org.selfprivacy.system.reboot", "org.selfprivacy.backups.manage",
               "org.selfprivacy.tokens.manage"}
    live = introspection.live_interfaces(bus)
    assert TOKENS in live
    exported = set()
    for name, interface in live.items():
        methods, props = introspection.members(interface)
        for member in [m for m, _ in methods] + [p for p, _, _ in props]:
            exported.add((name, member))
            kind, callers, action, *logged = rows[(name, member)]
            assert callers == "gateway,root" and action in actions, (name, member, rows[(name, member)])
            if name == TOKENS:
                assert action == "org.selfprivacy.tokens.manage"  # tokens are credentials
            elif kind == "property":
                assert action == "org.selfprivacy.read" and not logged
            else:
                assert logged == ["logged"], (name, member)
    assert exported == set(rows), "the printed table and the daemon disagree"
    undocumented = [f"{name}.{el.get('name')}" for name, interface in live.items()
                    for el in [*interface.findall("method"), *interface.findall("property"),
                               *interface.findall("signal")]
                    if not any(a.get("name") == "org.gtk.GDBus.DocString" for a in el.findall("annotation"))]
    assert not undocumented, f"give these a docstring (shipped as their DocString): {undocumented}"
    assert "declares no access rule" not in daemon.process.log()


def test_every_interface_ships_its_introspection_xml(daemon, bus):
    live = introspection.live_interfaces(bus)
    shipped = introspection.shipped_interfaces()
    missing = sorted(set(live) - set(shipped))
    assert not missing, f"no XML in data/dbus-1/interfaces for {missing}: run scripts/write-interfaces"
    stale = sorted(set(shipped) - set(live))
    assert not stale, f"XML for interfaces the daemon does not export: {stale}"
    for name in live:
        assert introspection.shape(shipped[name]) == introspection.shape(live[name]), \
            f"data/dbus-1/interfaces/{name}.xml differs from the daemon: run scripts/write-interfaces"


def test_xml_files_are_named_for_their_one_interface():
    for path in introspection.INTERFACES_DIR.glob("*.xml"):
        names = [i.get("name") for i in introspection.ET.parse(path).getroot().iter("interface")]
        assert names == [path.stem], path


def test_changes_are_logged_with_the_callers_uid(daemon, bus):
    get_property(bus, TOKENS, "Devices")
    call(bus, TOKENS, "Delete", "s", "second_token")
    with pytest.raises(Exception):
        call(bus, TOKENS, "Delete", "s", "no_such_device")
    log = daemon.process.wait_for_log("result=org.selfprivacy.Error.NotFound")
    lines = [line for line in log.splitlines() if "spd.access" in line]
    assert f"spd.access: INFO: uid=0 call={TOKENS}.Delete result=ok" in lines
    assert (f"spd.access: INFO: uid=0 call={TOKENS}.Delete "
            "result=org.selfprivacy.Error.NotFound") in lines
    assert not [line for line in lines if "Devices" in line], "reads are not logged"
    assert TOKEN not in daemon.process.log()


def test_changes_that_ask_for_no_reply_are_logged_too(daemon, bus):
    async def run():  # a call nobody waits for: sent, not called (stack.call waits for its reply)
        client = await MessageBus(bus_address=bus.address).connect()
        try:
            await client.send(Message(destination=BUS_NAME, path=PATH, interface=TOKENS, member="Delete",
                                      signature="s", body=["second_token"],
                                      flags=MessageFlag.NO_REPLY_EXPECTED))
            deadline = time.monotonic() + 5
            while any(name == "second_token" for name, _ in get_property(bus, TOKENS, "Devices")):
                assert time.monotonic() < deadline, "the call was not dispatched"
                await asyncio.sleep(0.05)
        finally:
            client.disconnect()

    asyncio.run(run())
    daemon.process.wait_for_log(f"spd.access: INFO: uid=0 call={TOKENS}.Delete result=ok\n")


# --- the decision itself, in-process, with rules of its own ---------------------------------

class Sample(ServiceInterface):
    def __init__(self):
        super().__init__("org.selfprivacy.Sample1")

    @method(reads())
    def Everyone(self) -> "s":
        return ""

    @method(changes("org.selfprivacy.system.manage", callers=(ROOT,)))
    def RootOnly(self):
        pass

    @dbus_fast.service.dbus_method()
    def Undeclared(self):
        pass

    Open = prop("s", doc="Anyone who may read.")
    Secret = prop("s", reads(callers=(ROOT,)), doc="Root only.")


ROOT_CALLER = Caller(0, frozenset({ROOT}))
GATEWAY_CALLER = Caller(990, frozenset({GATEWAY}))
NOBODY = Caller(65534, frozenset())


def _decide(member, who, interface="org.selfprivacy.Sample1", signature="", body=(), exported=Sample):
    checker = Access(None, [exported()], "no-such-group-for-spd-tests")
    msg = Message(destination=BUS_NAME, path=PATH, sender=":1.9",
                  serial=7, interface=interface, member=member, signature=signature, body=list(body))
    try:
        actions = checker.decide(msg, who, checker.rule(msg))
    except DBusError as e:
        assert e.type == ACCESS_DENIED
        return "denied"
    return "allowed" if actions is None else f"polkit {' '.join(actions)}"  # tests/test_polkit.py asks it


def _prop(member, name, who, value=None):
    body = ["org.selfprivacy.Sample1"] + ([name] if name else []) + ([Variant("s", value)] if value else [])
    signature = {"Get": "ss", "Set": "ssv", "GetAll": "s"}[member]
    return _decide(member, who, PROPERTIES, signature, body)


def test_rules_decide_each_caller_kind():
    assert _decide("Everyone", ROOT_CALLER) == "allowed"
    assert _decide("Everyone", GATEWAY_CALLER) == "allowed"
    assert _decide("Everyone", NOBODY) == "polkit org.selfprivacy.read"  # anyone else: polkit decides
    assert _decide("RootOnly", NOBODY) == "polkit org.selfprivacy.system.manage"
    assert _decide("RootOnly", ROOT_CALLER) == "allowed"
    assert _decide("RootOnly", GATEWAY_CALLER) == "denied"
    for who in (ROOT_CALLER, GATEWAY_CALLER, NOBODY):
        assert _decide("Undeclared", who) == "denied"
        assert _decide("Everyone", who, interface=None) == "denied"  # no interface: no guessing
        assert _decide("GetManagedObjects", who, "org.freedesktop.DBus.ObjectManager") == "denied"
    assert _decide("Introspect", NOBODY, "org.freedesktop.DBus.Introspectable") == "allowed"


def test_rules_decide_property_reads_and_refuse_every_write():
    assert _prop("Get", "Open", GATEWAY_CALLER) == "allowed"
    assert _prop("Get", "Open", NOBODY) == "polkit org.selfprivacy.read"
    assert _prop("Set", "Open", NOBODY, "y") == "denied"
    assert _prop("Set", "Open", ROOT_CALLER, "y") == "denied"  # read-only: changes are methods
    assert _prop("Get", "Secret", GATEWAY_CALLER) == "denied"
    assert _prop("Get", "Secret", ROOT_CALLER) == "allowed"
    assert _prop("Get", "Nope", ROOT_CALLER) == "denied"
    # GetAll returns Secret too: only for who may read every property.
    assert _prop("GetAll", None, ROOT_CALLER) == "allowed"
    assert _prop("GetAll", None, GATEWAY_CALLER) == "denied"


class Credentials(ServiceInterface):
    def __init__(self):
        super().__init__("org.selfprivacy.Sample1")

    Plain = prop("s", doc="Read.")
    Tokens = prop("s", reads("org.selfprivacy.tokens.manage"), doc="Needs tokens.manage.")
    Keys = prop("s", reads("org.selfprivacy.backups.manage"), doc="Needs backups.manage.")


def test_get_all_needs_every_action_of_its_properties():
    """GetAll returns every property: a caller polkit decides for needs each action they name besides
    read (read alone when they name no other)."""
    get_all = lambda exported: _decide("GetAll", NOBODY, PROPERTIES, "s",
                                       ["org.selfprivacy.Sample1"], exported)
    assert get_all(Credentials) == "polkit org.selfprivacy.backups.manage org.selfprivacy.tokens.manage"
    assert get_all(Sample) == "polkit org.selfprivacy.read"


def test_the_caller_cache_forgets_its_oldest_entry_only(monkeypatch):
    """A full cache makes room for one caller, not by forgetting every known one (each would be
    looked up again, and its calls held meanwhile)."""
    from spd.dbus import callers as module

    class Driver:
        async def call(self, msg):
            return Message(message_type=MessageType.METHOD_RETURN, reply_serial=1, signature="a{sv}",
                           body=[{"UnixUserID": Variant("u", 1000)}])

    monkeypatch.setattr(module, "CACHE_MAX", 3)
    callers = Callers(Driver(), "no-such-group-for-spd-tests")

    async def run():
        for n in range(5):
            await callers.look_up(f":1.{n}")

    asyncio.run(run())
    assert [callers.get(f":1.{n}") is not None for n in range(5)] == [False, False, True, True, True]


def test_refusals_cannot_forge_log_lines(caplog):
    forged = f"Open\nspd.access: INFO: uid=0 call={USERS}.Create result=ok"
    with caplog.at_level("INFO", logger="spd.access"):
        assert _prop("Get", forged, NOBODY) == "denied"
    assert caplog.messages and all("\n" not in m for m in caplog.messages), caplog.messages


def test_caller_kinds_come_from_uid_and_groups():
    callers = Callers(None, "root")  # gid 0 stands in for the gateway's group here
    creds = lambda uid, gids: {"UnixUserID": Variant("u", uid), "UnixGroupIDs": Variant("au", gids)}
    assert callers.from_credentials(creds(0, [0])).kinds == {ROOT, GATEWAY}
    assert callers.from_credentials(creds(1000, [100, 0])).kinds == {GATEWAY}
    assert callers.from_credentials(creds(1000, [100])).kinds == frozenset()
    assert callers.from_credentials({"ProcessID": Variant("u", 1)}) is None  # no uid: unknown, refused


def test_members_without_a_rule_are_listed():
    checker = Access(None, [Sample()], "root")
    assert checker.undeclared == ["org.selfprivacy.Sample1.Undeclared"]


def test_a_rule_must_be_a_rule():
    with pytest.raises(TypeError):
        class Wrong(ServiceInterface):
            @method(("root",))
            def Nope(self):
                pass


# --- a new caller's calls wait for its credentials, in order ----------------------------------

class Recorder(LiveInterface):
    NAME = "org.selfprivacy.Sample1"
    serving = True  # its properties answer from the start (spd's own wait for export: LiveInterface)

    def __init__(self):
        super().__init__()
        self.calls = []

    def source(self):
        return None

    def current(self) -> dict:
        return {"Count": len(self.calls)}

    @method(changes("org.selfprivacy.system.manage"))
    def Everyone(self, n: "i") -> "i":
        self.calls.append(n)
        return n

    Count = prop("i", doc="How many calls ran.")


async def _checked(bus):
    daemon = await MessageBus(bus_address=bus.address).connect()
    recorder = Recorder()
    checker = Access(daemon, [recorder], "selfprivacy-api")
    await checker.start()
    daemon.export(PATH, recorder)
    return daemon, recorder, checker


def _call(daemon, member="Everyone", signature="i", body=(), sender=None, interface="org.selfprivacy.Sample1"):
    return Message(destination=daemon.unique_name, path=PATH, sender=sender,
                   interface=interface, member=member, signature=signature, body=list(body))


def test_new_callers_calls_wait_for_its_credentials_then_run_in_order(bus):
    async def run():
        daemon, recorder, checker = await _checked(bus)
        client = await MessageBus(bus_address=bus.address).connect()
        # Sent in one go, before any lookup answered: methods and a property read the handler takes over.
        count = _call(daemon, "Get", "ss", ["org.selfprivacy.Sample1", "Count"],
                      interface=PROPERTIES)
        replies = await asyncio.gather(*(client.call(_call(daemon, body=[n])) for n in (1, 2, 3)),
                                       client.call(count))
        assert [r.body for r in replies] == [[1], [2], [3], [Variant("i", 3)]], [r.body for r in replies]
        assert recorder.calls == [1, 2, 3] and checker.waiting() == 0
        assert checker.callers.get(client.unique_name).uid == 0
        client.disconnect()
        daemon.disconnect()

    asyncio.run(run())


def test_unknown_or_vanished_callers_are_refused(bus):
    async def run():
        daemon, recorder, checker = await _checked(bus)
        rule = changes("org.selfprivacy.system.manage")
        # A name the bus does not know: the lookup fails.
        with pytest.raises(DBusError, match="credentials could not be checked"):
            await checker.admit(_call(daemon, sender=":1.9999"), rule)
        # A caller that disconnects while its lookup is under way (NameOwnerChanged comes first).
        client = await MessageBus(bus_address=bus.address).connect()
        admitted = asyncio.ensure_future(checker.admit(_call(daemon, sender=client.unique_name), rule))
        await asyncio.sleep(0)
        checker.callers.forget(client.unique_name)
        with pytest.raises(DBusError, match="credentials could not be checked"):
            await admitted
        assert checker.callers.get(client.unique_name) is None and checker.callers.get(":1.9999") is None
        assert checker.waiting() == 0
        client.disconnect()
        daemon.disconnect()

    asyncio.run(run())


def test_a_method_not_called_through_the_check_is_refused():
    """The wrapper fails closed: a member run without a checked message refuses to run."""
    with pytest.raises(DBusError, match="credentials could not be checked"):
        asyncio.run(Recorder.Everyone.__wrapped__(Recorder(), 1))  # ours, under dbus-fast's decorator


def test_busy_objects_hold_off_the_idle_exit():
    class Work:
        running = True

        def busy(self):
            return self.running

    work, idle = Work(), Work()
    idle.running = False
    activity = Activity()
    activity.last -= 10  # long idle by the clock

    async def run():
        waiter = asyncio.ensure_future(until_idle(0.2, lambda: 0.0 if busy([idle, work])
                                                  else activity.idle_for()))
        await asyncio.sleep(0.5)
        assert not waiter.done()  # the work keeps it
        work.running = False
        await asyncio.wait_for(waiter, 2)
        activity.begin()
        assert activity.idle_for() == 0.0
        activity.end()
        assert activity.idle_for() < 0.1

    asyncio.run(run())
