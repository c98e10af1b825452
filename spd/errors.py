"""Errors as a catalog (systemd's bus-common-errors.h, with HTTP statuses for errnos).

Each kind of error a caller can see is a class below and one row of KINDS: its D-Bus name
(org.selfprivacy.Error.<Kind>, spd/dbus/base.py sends it) and the HTTP status the gateway answers it
with (spd/rest/errors.py). Callers branch on the name, never on the text; tests/test_errors.py holds
every kind to its row. Dependency-free: the daemon, the gateway and spdctl all import it.

Messages are sentences a person can read, whoever asked (the app, spdctl, busctl): a capital letter
first, no final period, no REST paths; a name the caller gave (a user, a key, a setting) is quoted
as {name!r}, cut to 64 characters when it is not known to be short.
"""

from dataclasses import dataclass

PREFIX = "org.selfprivacy.Error."


def error_name(kind: str) -> str:
    """The D-Bus error name of a kind."""
    return PREFIX + kind


class SpdError(Exception):
    """An error with a name; its class is its kind (SpdError itself is a Failed)."""

    kind = "Failed"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.kind = cls.__name__

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(SpdError):
    """The request itself is wrong."""


class NotReady(SpdError):
    """A valid request that the state does not allow yet (e.g. no backup key)."""


class AccessDenied(SpdError):
    """The caller may not do this (polkit said no, or could not be asked)."""


class NotFound(SpdError):
    """What the request names is not there."""


class AlreadyExists(SpdError):
    """What the request would add is there already."""


class Reserved(SpdError):
    """A name the system keeps for itself."""


class Busy(SpdError):
    """Another long operation is running."""


class Failed(SpdError):
    """The daemon could not do it: a file, a tool or the system failed."""


class Unavailable(SpdError):
    """systemd, logind or another backend cannot be reached."""


@dataclass(frozen=True)
class Kind:
    cls: type[SpdError]
    status: int  # the gateway's answer

    @property
    def name(self) -> str:
        return error_name(self.cls.kind)


# One row per kind.
KINDS = (
    Kind(InvalidArgument, 400),
    Kind(NotReady, 400),
    Kind(AccessDenied, 403),
    Kind(NotFound, 404),
    Kind(AlreadyExists, 409),
    Kind(Reserved, 409),
    Kind(Busy, 409),
    Kind(Failed, 500),
    Kind(Unavailable, 503),
)
BY_NAME = {kind.name: kind for kind in KINDS}
