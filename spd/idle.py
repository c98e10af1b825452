"""The daemon's idle exit: calls in progress and long work (the helpers are spd.runtime.idle's,
shared with the gateway)."""

from .runtime.idle import Activity

CALLS = Activity()  # the daemon's D-Bus calls in progress (counted by spd/dbus/base.py)


def busy(interfaces) -> bool:
    """True while any interface says it has long work running: one that runs work beyond the call
    that started it (a backup, a restore) overrides LiveInterface.busy() to keep its process alive."""
    return any(i.busy() for i in interfaces)
