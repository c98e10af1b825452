"""The daemon's entry point: connect, export every interface, own the name, tell systemd."""

import asyncio
import faulthandler
import gc
import logging
import signal
import sys
from pathlib import Path

import sdnotify
from dbus_fast import RequestNameReply
from dbus_fast.constants import NameFlag

from . import config as configuration
from . import restic
from .backups import Backups
from .contract import BUS_NAME, PATH
from .dbus.access import Access
from .dbus.backups import BackupsInterface
from .dbus.services import ServicesInterface
from .dbus.ssh import SSHInterface
from .dbus.system import SystemInterface
from .dbus.systemd import Logind, Systemd
from .dbus.tokens import TokensInterface
from .dbus.users import UsersInterface
from .errors import SpdError
from .idle import CALLS, busy
from .runtime import journal, stall, watchdog
from .runtime.bus import message_bus
from .runtime.idle import until_idle
from .services import Services
from .ssh import SSH
from .system import System
from .tokens import Tokens
from .userdata import open_userdata
from .users import Users
from .watch import Target, Watcher

log = logging.getLogger("spd")
STOP_GRACE = 10.0  # seconds to finish the calls in flight when stopped (systemd waits 90)

SWITCH_INTERVAL = 0.0005  # seconds


async def build(config, bus):
    """The domain objects and their D-Bus interfaces, built and not started. `bus` also reaches
    systemd and logind."""
    userdata = await _open_userdata(config)
    await asyncio.to_thread(restic.remove_stale_password_folders)
    tokens = Tokens(config, userdata)
    await tokens.import_legacy()
    systemd = Systemd(bus)
    backups = Backups(config, userdata)
    interfaces = [
        TokensInterface(tokens),
        ServicesInterface(Services(config, userdata, systemd)),
        SystemInterface(System(config, userdata, systemd, Logind(bus))),
        UsersInterface(Users(userdata)),
        SSHInterface(SSH(userdata)),
        BackupsInterface(backups),
    ]
    return interfaces, _watch_files(config, userdata, interfaces, backups)


async def _open_userdata(config):
    userdata = await asyncio.to_thread(open_userdata, config)
    try:
        await asyncio.to_thread(userdata.read)  # parsed off the loop, and cached
    except SpdError as e:
        # Start anyway: the app can still log in (tokens live elsewhere) and every call that needs
        # userdata.json answers this message, until the file is fixed (no restart needed then).
        log.error("%s: serving anyway; whatever needs userdata.json fails until it is fixed", e.message)
    return userdata


def _watch_files(config, userdata, interfaces, backups) -> Watcher:
    """The watcher (not started) of the files the interfaces show, and userdata's commit hook."""
    def files_changed() -> None:
        refresh(interfaces)  # each signals what differs, or keeps its last values if unreadable
        backups.userdata_changed()

    def snapshots_changed() -> None:  # a backup or forget by another restic: list it
        if not backups.busy():
            backups.reload()

    # Our own changes of userdata.json refresh before the call's reply; the watcher sees the rest.
    userdata.on_commit.subscribe(files_changed)
    targets = [Target(config.userdata.parent, frozenset({config.userdata.name}), files_changed),
               Target(config.path("var"), frozenset({"domain"}), files_changed),
               Target(config.path("var/dkim"), None, files_changed)]
    local = (config.restic_repository or "").removeprefix("local:")
    if local.startswith("/"):  # a repository on this machine (B2's is asked on Reload)
        targets.append(Target(Path(local) / "snapshots", None, snapshots_changed))
    return Watcher(targets)


def refresh(interfaces) -> None:
    for interface in interfaces:
        interface.refresh()


async def serve(config) -> int:
    """Connect, build, start, export, own the name, serve until lost, stopped or idle, leave: the
    exit code."""
    stop = _stop_on_signals()
    bus = await message_bus(config.bus).connect()
    interfaces, watcher = await build(config, bus)
    gc.freeze()  # what start-up made lives as long as we do: no full collection scans it again
    access = await _check_access(bus, interfaces, config.gateway_group)
    _start(interfaces)
    _export(bus, interfaces)
    watcher.start()
    if not await _own_name(bus):
        return 1
    sdnotify.SystemdNotifier().notify("READY=1")
    log.info("serving %s on %s, root %s", BUS_NAME, config.bus, config.root)
    every = watchdog.interval()
    pinging = asyncio.ensure_future(watchdog.ping(every)) if every else None

    def calls_idle_for() -> float:
        return 0.0 if access.waiting() else CALLS.idle_for()

    def idle_for() -> float:
        return 0.0 if busy(interfaces) else calls_idle_for()

    ended = await _wait(config, bus, stop, idle_for)
    if ended == LOST:
        log.error("lost the bus connection")
        return 1
    sdnotify.SystemdNotifier().notify("STOPPING=1")
    await (_leave_idle(config, bus, idle_for) if ended == IDLE else _finish_calls(calls_idle_for))
    if pinging is not None:
        pinging.cancel()
    await _leave(bus, interfaces, watcher)
    return 0


def _stop_on_signals() -> asyncio.Event:
    """Set by SIGTERM or SIGINT, from the start: a stop asked for while starting is a clean stop
    once ready. SIGUSR1 logs where everything waits."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, _log_stacks)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _check_access(bus, interfaces, gateway_group: str) -> Access:
    access = Access(bus, interfaces, gateway_group)
    for member in access.undeclared:
        log.warning("%s declares no access rule: refused to every caller", member)
    await access.start()  # before export: no call is ever dispatched unchecked
    return access


def _start(interfaces) -> None:
    """Start every interface, then take the values at start, so the first signal is a real change
    (what start() did synchronously, such as the backups' first state, is in them). The work
    start() began runs from the first await, once the interfaces are exported."""
    for interface in interfaces:
        interface.start()
    refresh(interfaces)


def _export(bus, interfaces) -> None:
    # export() reads every property for an InterfacesAdded signal, which any listener may receive:
    # each getter refuses until its interface is served, and would log a traceback for it.
    logging.getLogger("dbus_fast.message_bus").addFilter(_DropInterfacesAddedErrors())
    for interface in interfaces:
        bus.export(PATH, interface)
    # Served once the reads export() made for its InterfacesAdded signals are refused (an async getter
    # runs in a task export scheduled: call_soon is FIFO), so those signals carry no value.
    asyncio.get_running_loop().call_soon(lambda: [setattr(i, "serving", True) for i in interfaces])


async def _own_name(bus) -> bool:
    reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
    if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
        log.error("%s is already owned on this bus; is another spd running?", BUS_NAME)
        bus.disconnect()
        return False
    return True


LOST, STOPPED, IDLE = "lost", "stopped", "idle"  # why _wait returned


async def _wait(config, bus, stop: asyncio.Event, idle_for) -> str:
    """Serve until the bus connection is lost, a stop is asked for or (with an idle timeout) nothing
    ran for that long: which of them (the first in that order, if more came at once)."""
    disconnected = asyncio.ensure_future(bus.wait_for_disconnect())
    waiting = {disconnected, asyncio.ensure_future(stop.wait())}
    idle = None
    if config.idle_timeout > 0:
        idle = asyncio.ensure_future(until_idle(config.idle_timeout, idle_for))
        waiting.add(idle)
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    ended = LOST if disconnected.done() else IDLE if idle is not None and idle.done() else STOPPED
    for task in waiting:
        task.cancel()
    return ended


async def _leave_idle(config, bus, idle_for) -> None:
    log.info("idle for %gs: leaving; the next call starts spd again (D-Bus activation)", config.idle_timeout)
    # From here the bus activates a new spd for new calls. Whatever was sent to the name before
    # arrived ahead of ReleaseName's reply and is running or held: finish it, then go at once
    # (the shorter the gap, the less a new activation waits for us to leave).
    await bus.release_name(BUS_NAME)
    await until_idle(0.01, idle_for)


async def _finish_calls(calls_idle_for) -> None:
    """systemd stops us, e.g. for the reboot a call in flight asked logind for: answer the calls
    already running (not a backup: only calls), for a while, before leaving."""
    try:
        await asyncio.wait_for(until_idle(0.01, calls_idle_for), STOP_GRACE)
    except asyncio.TimeoutError:
        log.warning("calls still running after %gs: leaving without their answers", STOP_GRACE)


async def _leave(bus, interfaces, watcher) -> None:
    await watcher.stop()
    for interface in interfaces:
        interface.stop()
    bus.disconnect()
    await _cancel_the_rest()
    log.info("stopped")


async def _cancel_the_rest() -> None:
    """Cancel and collect what still runs in the background (a systemd query started at export, a
    refresh): nobody waits for its outcome any more, and asyncio.run() would log any error it ends
    with as an unhandled exception, with its traceback."""
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


def _log_stacks() -> None:
    """SIGUSR1: where every task waits and every thread runs, to the log (`journalctl -u spd`), for a
    daemon that seems stuck somewhere. File, line and function only: no values."""
    for task in asyncio.all_tasks():
        lines, coro = [], task.get_coro()
        while coro is not None:  # the chain of awaits, outermost first
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        log.warning("task %s waits at:\n%s", task.get_name(), "\n".join(lines) or "  (done)")
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


class _DropInterfacesAddedErrors(logging.Filter):
    def filter(self, record) -> bool:
        return "ObjectManager.InterfacesAdded" not in str(record.msg)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, handlers=[journal.handler()])
    config = configuration.parse(argv)
    # Work done on threads (commits of JSON files, hashing) holds the GIL while it computes: a thread
    # that wants it back waits for this interval (5 ms by default) each time, and the event loop asks
    # for it after every system call. A short one keeps the loop's answers quick meanwhile.
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        with asyncio.Runner(loop_factory=stall.loop_factory(logging.getLogger("spd.stall"))) as runner:
            code = runner.run(serve(config))
        sys.exit(code)
    except SpdError as e:  # a state we refuse to start on, e.g. a corrupt token store
        log.error("%s", e.message)
        sys.exit(1)
