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
"""

import logging

from dbus_fast import Message, MessageFlag, MessageType, Variant

from .names import error_name

log = logging.getLogger("spd.polkit")

POLKIT = "org.freedesktop.PolicyKit1"
AUTHORITY_PATH = "/org/freedesktop/PolicyKit1/Authority"
AUTHORITY = "org.freedesktop.PolicyKit1.Authority"
ALLOW_USER_INTERACTION = 0x1  # CheckAuthorizationFlags
INTERACTIVE_REQUIRED = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
DENIED = error_name("AccessDenied")


def interactive(msg: Message) -> bool:
    """Whether the caller said it may wait while a person authenticates."""
    return bool(msg.flags & MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION)


async def check(bus, sender: str, action: str, allow_interaction: bool) -> tuple[str, str] | None:
    """None when polkit authorizes `sender` for `action`; otherwise the (error name, message) to
    answer the call with."""
    call = Message(
        destination=POLKIT, path=AUTHORITY_PATH, interface=AUTHORITY, member="CheckAuthorization",
        signature="(sa{sv})sa{ss}us",
        body=[["system-bus-name", {"name": Variant("s", sender)}], action, {},
              ALLOW_USER_INTERACTION if allow_interaction else 0, ""])
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
