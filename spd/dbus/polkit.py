"""Asking polkit whether a caller that is neither root nor the gateway's group may do an action.

The subject is the caller's unique bus name ("system-bus-name"), never its PID: polkit resolves the
name through the bus itself, so a process that exits and whose PID is reused cannot inherit a
decision. polkit may ask the person to authenticate only when the call said it may wait for that
(ALLOW_INTERACTIVE_AUTHORIZATION in the message header); otherwise a challenge becomes
InteractiveAuthorizationRequired, which tells the client to retry interactively.

Fail closed: polkit absent, erring or answering nonsense means denied.

No cache of our own: whether a "yes" may be reused is polkit's decision (auth_admin_keep keeps it
for a few minutes, for that subject only), and a cached answer here would outlive a changed rule or
an ended session. Each check is an ordinary awaited call, so other callers go on while polkit answers,
or while a person types a password, which may take a minute.

A check waits for polkit's reply, and the bus lets one connection wait for at most 128 replies
(dbus-daemon's max_replies_per_connection): a hung polkit and a caller sending many calls would
leave spd unable to call systemd or logind for anyone. So `Checks` caps the checks in flight per uid
and in all, refusing the excess at once; gives every check a time limit; and cancels a check
(CancelCheckAuthorization) when its limit passes or its caller leaves the bus.

An interactive check needs no hung polkit to stay: a caller whose own agent never answers its
prompt holds it as long as it likes. So those have caps of their own within the total: one per uid
(a person answers one prompt at a time), at most half of all, so that however many uids keep
prompts open the checks that ask no one keep the other half; and two minutes to answer (as
dnf5daemon gives; polkit's agents wait forever).
"""

import asyncio
import itertools
import logging
import os
from collections import Counter

from dbus_fast import Message, MessageFlag, MessageType, Variant

from ..errors import error_name

log = logging.getLogger("spd.polkit")

POLKIT = "org.freedesktop.PolicyKit1"
AUTHORITY_PATH = "/org/freedesktop/PolicyKit1/Authority"
AUTHORITY = "org.freedesktop.PolicyKit1.Authority"
ALLOW_USER_INTERACTION = 0x1  # CheckAuthorizationFlags
INTERACTIVE_REQUIRED = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
LIMITS_EXCEEDED = "org.freedesktop.DBus.Error.LimitsExceeded"
DENIED = error_name("AccessDenied")
LEFT_KEPT = 1024  # callers that left, remembered: a call resumes within moments of its caller leaving


def interactive(msg: Message) -> bool:
    """Whether the caller said it may wait while a person authenticates."""
    return bool(msg.flags & MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION)


class Checks:
    """The polkit checks in flight, capped (see above). A check counts until polkit has answered it,
    even when its caller was answered before (out of time, or gone): until then the bus keeps its
    slot, and so the caps bound what spd waits for on the bus."""

    TOTAL = 32  # checks in flight: well below the bus's 128 replies a connection may wait for
    # may the check wait for a person? -> (checks of that kind in flight, per uid; seconds each may take)
    LIMITS = {False: (TOTAL, 4, 10.0), True: (16, 1, 120.0)}

    def __init__(self, bus):
        self.bus = bus
        self._held: Counter = Counter()  # (uid or None: anyone's, interactive) -> checks in flight
        # cancellation id -> (sender, given up: set when it left, its check's task)
        self._asking: dict[str, tuple[str, asyncio.Future, asyncio.Future]] = {}
        self._ids = itertools.count(1)
        self._prefix = f"spd-{os.getpid()}-"
        # Callers that left lately, oldest first: a call resuming after its caller's NameOwnerChanged
        # (between two actions of a GetAll, or after its credentials came) must not start a check
        # that nobody would mark given up. A bus never reuses a unique name.
        self._left: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self._asking)

    async def check(self, sender: str, uid: int, actions: tuple, allow_interaction: bool):
        """None when polkit authorizes `sender` for every one of `actions`; otherwise the (error name,
        message) to answer the call with."""
        for action in actions:
            if sender in self._left:
                return DENIED, f"Access denied: the caller left before polkit answered about {action}"
            if self._full(uid, allow_interaction):
                return LIMITS_EXCEEDED, "Too many authorization checks in progress; try again later"
            refusal = await self._ask(sender, uid, action, allow_interaction)
            if refusal is not None:
                return refusal
        return None

    def _full(self, uid: int, interactive: bool) -> bool:
        of_kind, per_uid, _ = self.LIMITS[interactive]
        return (len(self._asking) >= self.TOTAL or self._held[(None, interactive)] >= of_kind
                or self._held[(uid, interactive)] >= per_uid)

    async def _ask(self, sender: str, uid: int, action: str, allow_interaction: bool):
        cancel_id = f"{self._prefix}{next(self._ids)}"
        given_up = asyncio.get_running_loop().create_future()
        asked = asyncio.ensure_future(check(self.bus, sender, action, allow_interaction, cancel_id))
        self._asking[cancel_id] = (sender, given_up, asked)
        held = [(uid, allow_interaction), (None, allow_interaction)]
        self._held.update(held)
        asked.add_done_callback(lambda _: self._answered(cancel_id, held))
        timeout = self.LIMITS[allow_interaction][2]
        await asyncio.wait([asked, given_up], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if asked.done():
            return asked.result()
        self._cancel(cancel_id)  # polkit answers the check then, which ends `asked`
        if given_up.done():
            return DENIED, f"Access denied: the caller left before polkit answered about {action}"
        log.warning("polkit did not answer about %s (%s) in %g s", action, sender, timeout)
        return DENIED, f"Access denied: polkit did not answer about {action} in time"

    def _answered(self, cancel_id: str, held: list) -> None:
        _, given_up, _ = self._asking.pop(cancel_id)
        given_up.cancel()
        self._held.subtract(held)
        self._held += Counter()  # drops the keys at zero

    def gone(self, sender: str) -> None:
        """The caller left the bus (NameOwnerChanged): its checks are of no use to anyone."""
        self._left[sender] = None
        if len(self._left) > LEFT_KEPT:
            del self._left[next(iter(self._left))]
        for name, given_up, _ in self._asking.values():
            if name == sender and not given_up.done():
                given_up.set_result(None)

    def _cancel(self, cancel_id: str) -> None:
        """Ask polkit to end a check: it answers it then, which frees the bus's slot for it."""
        sent = self.bus.send(Message(
            destination=POLKIT, path=AUTHORITY_PATH, interface=AUTHORITY, member="CancelCheckAuthorization",
            signature="s", body=[cancel_id], flags=MessageFlag.NO_REPLY_EXPECTED))
        sent.add_done_callback(lambda f: f.cancelled() or f.exception())  # a lost bus is said elsewhere


async def check(bus, sender: str, action: str, allow_interaction: bool,
                cancel_id: str = "") -> tuple[str, str] | None:
    """None when polkit authorizes `sender` for `action`; otherwise the (error name, message) to
    answer the call with."""
    call = Message(
        destination=POLKIT, path=AUTHORITY_PATH, interface=AUTHORITY, member="CheckAuthorization",
        signature="(sa{sv})sa{ss}us",
        body=[["system-bus-name", {"name": Variant("s", sender)}], action, {},
              ALLOW_USER_INTERACTION if allow_interaction else 0, cancel_id])
    try:
        reply = await bus.call(call)
    except Exception as e:  # the bus went away
        log.warning("polkit unreachable for %s (%s): %s", action, sender, e)
        return DENIED, f"Access denied: polkit could not be asked about {action}"
    if reply.message_type is MessageType.ERROR:
        text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else reply.error_name
        log.warning("polkit failed for %s (%s): %s: %s", action, sender, reply.error_name, text)
        return DENIED, f"Access denied: polkit: {text}"
    try:
        authorized, challenge, details = reply.body[0]
    except (TypeError, ValueError, IndexError):
        log.warning("polkit answered %r for %s", reply.body, action)
        return DENIED, f"Access denied: polkit gave no answer about {action}"
    if authorized is True:
        return None
    if challenge and not allow_interaction:
        return INTERACTIVE_REQUIRED, f"Authentication is required for {action}"
    reason = "the authentication was dismissed" if details.get("polkit.dismissed") else "not authorized"
    return DENIED, f"Access denied by polkit: {reason} for {action}"
