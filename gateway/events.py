"""GET /events: Server-Sent Events of the daemon's state (live-and-local.md section 3).

Each topic is a read route of the route table (its `topic`): the event's data is the body that route
returns, made by the same shaper from the same mirrored properties. `job` is the one topic without a
route: an event per change of an entry of System1.Jobs.

A stream keeps at most one unsent event per topic (and per job name): a newer state replaces an older
one that the client has not read yet. So a slow client costs a bounded amount of memory and never
holds up the others; one that reads nothing at all is cut off by the answer deadline (protocol.py),
which only a line sent resets: KEEPALIVE must stay below it. A client that vanished without closing
(a phone off the network) is found by the kernel: the keep-alives stay unacknowledged, and
TCP_USER_TIMEOUT closes the connection after USER_TIMEOUT instead of TCP's ~16 minutes of retries.

An HTTP/1.0 client has no chunked encoding (RFC 9112 7.1): it gets the full state as one response
with its length, and reconnects for news as after any end of the stream.
"""

import asyncio
import hashlib
import json
import logging
import os
import socket

from spd.contract import SYSTEM, TOKENS
from spd.rest.errors import HTTPError
from spd.rest.routes import ALL_TOPICS, JOB, JOBS, TOPICS, Ctx

log = logging.getLogger("spd-gateway")

# The comment line that keeps proxies and the app's HTTP stack from closing an idle stream.
KEEPALIVE = float(os.environ.get("SPD_EVENTS_KEEPALIVE", "15"))
MAX_PER_TOKEN = 8
MAX_STREAMS = int(os.environ.get("SPD_EVENTS_MAX_STREAMS", "1024"))  # all tokens: 1 descriptor each
USER_TIMEOUT = float(os.environ.get("SPD_EVENTS_USER_TIMEOUT", "60"))  # seconds unacknowledged data may wait
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"}


def parse_topics(query: str | None) -> tuple:
    if not query:
        return ALL_TOPICS
    wanted = [t.strip() for t in query.split(",") if t.strip()]
    unknown = sorted(set(wanted) - set(ALL_TOPICS))
    if unknown or not wanted:
        raise HTTPError(400, f"Unknown topic: {', '.join(unknown) or '(none)'}; "
                             f"topics are {', '.join(ALL_TOPICS)}")
    return tuple(t for t in ALL_TOPICS if t in wanted)


def event(topic: str, body) -> str:
    return f"event: {topic}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"


class Stream:
    """One client's stream: the events it has not been sent yet, newest per key."""

    def __init__(self, token: str, device: str, topics: tuple):
        self.token, self.ctx, self.topics = token, Ctx(path={}, body={}, token=token, device=device), topics
        self.pending: dict[str, str] = {}
        self.last: dict[str, str] = {}  # what was last queued per key: the same state is not sent twice
        self.wake = asyncio.Event()
        self.ended = False

    def put(self, key: str, text: str, again: bool = False) -> None:
        """Queue a state; unless `again`, only when it differs from the one queued before."""
        if self.last.get(key) == text and not again:
            return
        self.last[key] = text
        self.pending.pop(key, None)  # the newest state goes last
        self.pending[key] = text
        self.wake.set()

    def end(self) -> None:
        self.ended = True
        self.wake.set()

    def take(self) -> str:
        text = "".join(self.pending.values())
        self.pending.clear()
        self.wake.clear()
        return text


class Hub:
    """Every open stream; fed by the mirror's changes and the token signal."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.streams: dict[bytes, set[Stream]] = {}  # token hash -> its streams
        self._recheck = None
        self._again = False
        self._tokens_held = False  # a tokens event waits for the token check running now
        self.count = 0
        daemon.mirror.listeners.subscribe(self._changed)
        daemon.token_listeners.subscribe(self._tokens_changed)

    def open(self, token: str, device: str, topics: tuple) -> Stream:
        if self.count >= MAX_STREAMS:
            raise HTTPError(503, f"Too many event streams (at most {MAX_STREAMS}); try again later")
        key = hashlib.sha256(token.encode()).digest()
        mine = self.streams.setdefault(key, set())
        if len(mine) >= MAX_PER_TOKEN:
            raise HTTPError(429, f"At most {MAX_PER_TOKEN} event streams per token")
        stream = Stream(token, device, topics)
        mine.add(stream)
        self.count += 1
        self._watch(stream, 1)
        return stream

    def close(self, stream: Stream) -> None:
        key = hashlib.sha256(stream.token.encode()).digest()
        mine = self.streams.get(key, set())
        if stream in mine:
            mine.discard(stream)
            self.count -= 1
            self._watch(stream, -1)
        if not mine:
            self.streams.pop(key, None)

    def _watch(self, stream: Stream, by: int) -> None:
        """The mirror reads again what a stream follows whenever the daemon says it changed."""
        for topic in stream.topics:
            props = TOPICS[topic].props if topic != JOB else None
            self.daemon.mirror.watch(*((props.interface, props.names) if props else JOBS), by=by)

    def end_all(self) -> None:
        for mine in self.streams.values():
            for stream in mine:
                stream.end()

    async def full_state(self, stream: Stream) -> None:
        """One event per topic with its current state (job excepted: it has none until a job runs). A
        topic that cannot be read now (services while systemd is away) is left out; its changes come
        later as usual. When none can be read, the stream answers that error."""
        failed = None
        for topic in stream.topics:
            if topic == JOB:  # no event, but the jobs as they are now: the next change is news
                try:
                    await self.daemon.mirror.get(*JOBS)
                except HTTPError:
                    pass
            else:
                props = TOPICS[topic].props
                try:
                    values = await self.daemon.mirror.get(props.interface, props.names)
                    stream.put(topic, event(topic, props.shape(values, stream.ctx)))
                except HTTPError as e:
                    failed = e
        if failed is not None and not stream.pending:
            raise failed

    def _changed(self, interface, new: dict, before: dict) -> None:
        if interface is None:  # the daemon went away or restarted: clients reconnect for full state
            self.end_all()
            return
        if interface == TOKENS and self._recheck is not None and not self._recheck.done():
            # Devices changed with the token check running: a stream whose token is gone ends
            # without this news of its own removal; the others get it once the check is done.
            self._tokens_held = True
            return
        self._put(interface, new, before)

    def _put(self, interface, new: dict, before: dict) -> None:
        values = self.daemon.mirror.cached(interface)
        bodies = {}  # (topic, device) -> event text: made once per change, not once per stream
        for mine in self.streams.values():
            for stream in mine:
                if stream.ended:
                    continue
                for topic in stream.topics:
                    if topic == JOB:
                        if interface == SYSTEM and "Jobs" in new:
                            self._jobs(stream, new["Jobs"], before.get("Jobs") or {})
                        continue
                    props = TOPICS[topic].props
                    if props.interface != interface or not any(n in new for n in props.names) \
                            or not all(n in values for n in props.names):  # (one invalidated: not known)
                        continue
                    key = (topic, stream.ctx.device)
                    if key not in bodies:
                        bodies[key] = event(topic, props.shape(values, stream.ctx))
                    stream.put(topic, bodies[key])

    @staticmethod
    def _jobs(stream: Stream, jobs: dict, before: dict) -> None:
        for name, (path, result) in jobs.items():
            if list(before.get(name) or ()) != [path, result]:
                # a job run again may end as the one before: that is news (its job path differs)
                stream.put(f"{JOB}:{name}", event(JOB, {"name": name, "result": result}), again=True)

    def _tokens_changed(self) -> None:
        """A token was deleted, replaced or added: every stream's token is checked again, by a task
        that runs after this signal: a stream whose token was authenticated just before the signal
        and that is opening now is registered by then, and checked too."""
        if self._recheck is not None and not self._recheck.done():
            self._again = True
            return
        self._recheck = asyncio.get_running_loop().create_task(self._check_tokens())

    async def _check_tokens(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            for mine in list(self.streams.values()):
                if not mine:
                    continue
                token = next(iter(mine)).token
                try:
                    await self.daemon.authenticate(token)
                except HTTPError:  # deleted or replaced (401), or the daemon is gone (503)
                    for stream in list(mine):
                        stream.end()
        if self._tokens_held:
            self._tokens_held = False
            names = self.daemon.mirror.cached(TOKENS)
            self._put(TOKENS, dict(names), {})


async def serve(request, hub: Hub, token: str, device: str, topics: tuple):
    """Send the stream until it ends (token gone, daemon gone, client gone, gateway stopping)."""
    if not hub.daemon.mirror.enabled:
        raise HTTPError(503, "Live updates are not available: the bus refuses the daemon's signals")
    stream = hub.open(token, device, topics)
    try:
        await hub.full_state(stream)
        if request.version == "1.0":
            text = stream.take().encode()
            response = await request.respond(headers={**HEADERS, "Content-Length": str(len(text))},
                                             content_type="text/event-stream")
            await response.send(text)
            return
        _user_timeout(request)
        response = await request.respond(headers=HEADERS, content_type="text/event-stream")
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE):
                    await stream.wake.wait()
            except TimeoutError:
                await response.send(": keep-alive\n\n")
                continue
            if stream.ended:
                break
            await response.send(stream.take())
        await response.eof()
    finally:
        hub.close(stream)


def _user_timeout(request) -> None:
    sock = request.transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(USER_TIMEOUT * 1000))
