"""org.selfprivacy.Services1: enable or disable the server's services, their running state, DKIM."""

import asyncio
import logging

from ..contract import SERVICES
from ..errors import SpdError, Unavailable
from ..services import Services
from .base import LiveInterface, method, prop
from .rules import SERVICES_MANAGE, changes

log = logging.getLogger("spd.services")

SETTLE = 0.1  # seconds: a burst of unit signals from systemd costs one look at the units


class ServicesInterface(LiveInterface):
    """Domain, DkimRecord and Status are read where they live at every read (a file the watcher has
    not reported yet, what systemd said since its last signal), and what a read hands out is
    published (read_file, read_status): a later change then signals every copy of it, and systemd
    leaving invalidates the copies of its last answer."""

    NAME = SERVICES
    FILES = {"Domain": Services.domain, "DkimRecord": Services.dkim_record}  # property -> its read

    def __init__(self, services: Services):
        super().__init__()
        self.services = services
        self._refresh_status = None

    def source(self):
        return self.services.userdata.read()

    def current(self) -> dict:
        return {"Enabled": self.services.enabled()}

    def refresh(self) -> None:
        super().refresh()
        try:
            self.publish({name: read(self.services) for name, read in self.FILES.items()})
        except SpdError:  # a read answers the error; the last values stay published
            pass

    def start(self) -> None:
        """Follow systemd's unit signals and read the running state now (systemd need not be up:
        Status stays {} until it answers, then signals)."""
        self.services.on_units_changed.subscribe(self._units_changed)
        self._units_changed(settle=0.0)

    def stop(self) -> None:
        if self._refresh_status is not None:
            self._refresh_status.cancel()

    def read_file(self, name: str):
        """A property of FILES as its file says now (may raise SpdError), published."""
        value = self.FILES[name](self.services)
        self.publish({name: value})
        return value

    async def read_status(self) -> dict:
        """The running state as systemd says now (its client caches it until systemd signals a
        change), published."""
        status = await self.services.status()
        self.publish({"Status": status})
        return status

    @prop()
    def Enabled(self) -> "a{sb}":
        """service (bitwarden, gitea, nextcloud, ocserv, pleroma) -> <service>.enable in userdata
        (applied by the next rebuild; false when unset)."""
        return self.value("Enabled")

    @prop()
    async def Status(self) -> "a{si}":
        """imap, smtp, http, bitwarden, gitea, nextcloud, ocserv, pleroma -> 0 running, 3 not
        running, 4 no such unit (the exit codes of `systemctl status`), from systemd's units. A read
        asks systemd (cached until systemd signals a change); changes systemd signals are
        signalled here too, whether or not anyone reads. Unavailable while systemd is not
        reachable."""
        try:
            return await self.read_status()
        except asyncio.CancelledError:  # the daemon is stopping: dbus-fast expects an Exception here
            raise Unavailable("spd is stopping") from None

    @prop()
    def Domain(self) -> "s":
        """The server's domain, from var/domain; "" when there is none."""
        return self.read_file("Domain")

    @prop()
    def DkimRecord(self) -> "s":
        """The text of var/dkim/<domain>.selector.txt, the DNS record of the mail server's DKIM
        key; "" when there is none (no domain in var/domain, or no file)."""
        return self.read_file("DkimRecord")

    @method(changes(SERVICES_MANAGE))
    async def Enable(self, service: "s"):
        """Write <service>.enable = true. NotFound for a service not in Enabled."""
        await self.services.set_enabled(service, True)

    @method(changes(SERVICES_MANAGE))
    async def Disable(self, service: "s"):
        """Write <service>.enable = false."""
        await self.services.set_enabled(service, False)

    def _units_changed(self, settle: float = SETTLE) -> None:
        if self._refresh_status is None or self._refresh_status.done():
            self._refresh_status = asyncio.ensure_future(self._signal_status(settle))

    async def _signal_status(self, settle: float) -> None:
        await asyncio.sleep(settle)
        try:
            await self.read_status()
        except SpdError as e:  # systemd is not there (yet): a read says so; NameOwnerChanged retries
            log.debug("running state not read: %s", e.message)
            if self._published.pop("Status", None) is not None:
                # no value to announce: copies of it (the gateway's mirror) must ask again
                self.emit_properties_changed({}, ["Status"])
