"""spd-gateway's entry point: serve on --host/--port, or on the socket systemd passes."""

import argparse
import logging
import os
import signal
import socket

from spd.runtime import journal, stall, watchdog
from spd.runtime.idle import until_idle

from .app import create_app
from .protocol import DeadlineProtocol

SD_LISTEN_FDS_START = 3


def inherited_socket() -> socket.socket | None:
    """The listening socket from systemd socket activation, if this process was given one. It serves
    one: a second socket (a ListenStream= added in a drop-in) would never be accepted on, its
    connections left waiting, so more than one is refused with a clear error instead."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    count = int(os.environ["LISTEN_FDS"])
    if count > 1:
        raise SystemExit(f"spd-gateway serves one socket, and was given {count}: "
                         "give spd-gateway.socket a single ListenStream=")
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    return socket.socket(fileno=SD_LISTEN_FDS_START)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="spd-gateway", description="SelfPrivacy REST API gateway")
    p.add_argument("--bus", default=os.environ.get("SPD_BUS", "system"),
                   help="system (default), session, or a D-Bus address [SPD_BUS]")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5050)
    p.add_argument("--idle-timeout", type=float,
                   default=float(os.environ.get("SPD_GATEWAY_IDLE_TIMEOUT", "0")),
                   help="when socket-activated, exit after this many seconds without requests; "
                        "0 never [SPD_GATEWAY_IDLE_TIMEOUT]")
    a = p.parse_args(argv)
    # Ours gets one handler and stays out of the root logger.
    handler = journal.handler()
    log = logging.getLogger("spd-gateway")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    app = create_app(a.bus)
    # Sanic set up its own loggers (in Sanic()): they write through the same handler, so their
    # warnings and errors carry their priority in the journal too.
    for name in ("sanic.root", "sanic.error", "sanic.server", "sanic.websockets"):
        logging.getLogger(name).handlers = [handler]
    if stall.use_for_new_loops(log):  # SPD_STALL_MS: asyncio's loop, which reports stalls
        app.config.USE_UVLOOP = False
    every = watchdog.interval()
    if every:
        @app.after_server_start
        async def ping_watchdog(app):
            app.add_task(watchdog.ping(every), name="watchdog")
    sock = inherited_socket()
    if a.idle_timeout > 0 and sock is None:
        log.warning("--idle-timeout applies only when socket-activated (nothing would start us again)")
    elif a.idle_timeout > 0:
        @app.after_server_start
        async def watch_idle(app):
            app.add_task(_exit_when_idle(app, a.idle_timeout), name="idle-exit")
    if sock is not None:
        app.run(sock=sock, single_process=True, motd=False, access_log=False, protocol=DeadlineProtocol)
    else:
        app.run(host=a.host, port=a.port, single_process=True, motd=False, access_log=False,
                protocol=DeadlineProtocol)


async def _exit_when_idle(app, timeout: float) -> None:
    await until_idle(timeout, app.ctx.activity.idle_for)
    logging.getLogger("spd-gateway").info(
        "idle for %gs: leaving; the socket starts the gateway again on the next request", timeout)
    os.kill(os.getpid(), signal.SIGTERM)  # Sanic's own graceful shutdown
