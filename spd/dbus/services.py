"""org.selfprivacy.Services1: enable or disable the server's services, their running state, DKIM."""

import asyncio
import logging

from ..contract import SERVICES
from ..errors import SpdError
from ..services import Services
from .base import LiveInterface, attempt, method, prop
from .rules import SERVICES_MANAGE, changes

log = logging.getLogger("spd.services")

SETTLE = 0.1  # seconds: a burst of unit signals from systemd costs one look at the units


class ServicesInterface(LiveInterface):
    """Enabled, Domain and DkimRecord come from files: userdata.json, var/domain and the record it
    names, whose stat keys source() compares before every read (as userdata's own cache does), so a
    read is not behind a change the watcher has not reported yet. Status comes from systemd: fetched
    SETTLE after systemd signals a unit change (whether or not anyone reads) and before every read,
    which the systemd client answers from its cache until systemd signals a change. What a read
    hands out is therefore always published: a later change signals every copy of it."""

    NAME = SERVICES

    def __init__(self, services: Services):
        super().__init__()
        self.services = services
        self._refresh_status = None

    def source(self):
        domain = self._published.get("Domain")
        return self.services.userdata.read(), self.services.files_key(domain if isinstance(domain, str) else "")

    def current(self) -> dict:
        return {"Enabled": self.services.enabled(), "Domain": attempt(self.services.domain),
                "DkimRecord": attempt(self.services.dkim_record)}

    def start(self) -> None:
        """Follow systemd's unit signals and read the running state now (systemd need not be up:
        Status answers why until it does, then signals)."""
        self.services.on_units_changed.subscribe(self._units_changed)
        self._units_changed(settle=0.0)

    def stop(self) -> None:
        if self._refresh_status is not None:
            self._refresh_status.cancel()

    async def fetch(self) -> None:
        """Status as systemd says now, or why systemd cannot say (systemd is not there yet: its
        NameOwnerChanged fetches again)."""
        try:
            status = await self.services.status()
        except SpdError as e:
            log.debug("running state not read: %s", e.message)
            status = e
        self.publish({"Status": status})

    Enabled = prop("a{sb}",
                   doc="service (bitwarden, gitea, nextcloud, ocserv, pleroma) -> <service>.enable in "
                       "userdata (applied by the next rebuild; false when unset).")
    Status = prop("a{si}", fetched=True,
                  doc="imap, smtp, http, bitwarden, gitea, nextcloud, ocserv, pleroma -> 0 running, 3 not "
                      "running, 4 no such unit (the exit codes of `systemctl status`), from systemd's "
                      "units. A read asks systemd (cached until systemd signals a change); changes systemd "
                      "signals are signalled here too, whether or not anyone reads. Unavailable while "
                      "systemd is not reachable.")
    Domain = prop("s", doc="The server's domain, from var/domain; \"\" when there is none.")
    DkimRecord = prop("s",
                      doc="The text of var/dkim/<domain>.selector.txt, the DNS record of the mail server's "
                          'DKIM key; "" when there is none (no domain in var/domain, or no file).')

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
        await self.fetch()
