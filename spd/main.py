"""The daemon's entry point: connect, export every interface, own the name, tell systemd."""

import asyncio
import logging
import signal
import sys

import sdnotify
from dbus_fast import RequestNameReply
from dbus_fast.constants import NameFlag

from . import config as configuration
from .bus import message_bus
from .backups import Backups
from .dbus.backups import BackupsInterface
from .dbus.names import BUS_NAME, PATH
from .dbus.tokens import TokensInterface
from .errors import SpdError
from .tokens import Tokens
from .userdata import open_userdata

log = logging.getLogger("spd")


def build(config, bus):
    """The domain objects and their D-Bus interfaces. `bus` also reaches systemd and logind."""
    userdata = open_userdata(config)
    tokens = Tokens(config, userdata)
    tokens.import_legacy()
    return [
        TokensInterface(tokens),
        BackupsInterface(Backups(config, userdata)),
    ]


async def serve(config) -> int:
    bus = await message_bus(config.bus).connect()
    for interface in build(config, bus):
        bus.export(PATH, interface)
    reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
    if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
        log.error("%s is already owned on this bus; is another spd running?", BUS_NAME)
        bus.disconnect()
        return 1
    sdnotify.SystemdNotifier().notify("READY=1")
    log.info("serving %s on %s, root %s", BUS_NAME, config.bus, config.root)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    disconnected = asyncio.ensure_future(bus.wait_for_disconnect())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({disconnected, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if disconnected.done():
        log.error("lost the bus connection")
        return 1
    sdnotify.SystemdNotifier().notify("STOPPING=1")
    bus.disconnect()
    log.info("stopped")
    return 0


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(name)s: %(levelname)s: %(message)s")
    config = configuration.parse(argv)
    try:
        sys.exit(asyncio.run(serve(config)))
    except SpdError as e:  # a state we refuse to start on, e.g. a corrupt userdata.json
        log.error("%s", e.message)
        sys.exit(1)
