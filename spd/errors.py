"""Domain errors. Each has a kind; spd/dbus/names.py turns the kind into a D-Bus error name
(org.selfprivacy.Error.<Kind>) and the gateway turns that into one HTTP status."""


class SpdError(Exception):
    kind = "Failed"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(SpdError):
    kind = "InvalidArgument"


class NotFound(SpdError):
    kind = "NotFound"


class AlreadyExists(SpdError):
    kind = "AlreadyExists"


class Reserved(SpdError):
    kind = "Reserved"


class Busy(SpdError):
    kind = "Busy"


class NotReady(SpdError):
    kind = "NotReady"


class Unavailable(SpdError):
    kind = "Unavailable"


class Failed(SpdError):
    kind = "Failed"
