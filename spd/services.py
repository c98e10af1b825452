"""The server's services: which are enabled (userdata `<service>.enable`, applied by the next
nixos-rebuild), whether their units run (asked of systemd), and the mail server's DKIM record."""

import errno
import logging
import os
import re
import stat

from .config import Config
from .contract import SERVICE_NAMES, STATUS_KEYS
from .errors import Failed, NotFound
from .jsonfile import JsonFile, file_key
from .userdata import section, set_setting

log = logging.getLogger("spd.services")

# GET /services/status key -> its units; running when any of them is active
STATUS_UNITS = {
    "imap": ("dovecot2.service",),
    "smtp": ("postfix.service",),
    "http": ("nginx.service",),
    "bitwarden": ("vaultwarden.service", "bitwarden_rs.service"),  # renamed in NixOS 21.11
    "gitea": ("gitea.service",),
    "nextcloud": ("phpfpm-nextcloud.service",),
    "ocserv": ("ocserv.service",),
    "pleroma": ("pleroma.service",),
}
assert tuple(STATUS_UNITS) == STATUS_KEYS  # the contract's keys, each with its units here
ALL_UNITS = tuple(u for units in STATUS_UNITS.values() for u in units)

# The exit codes of `systemctl status`, which the app expects.
RUNNING, NOT_RUNNING, NO_SUCH_UNIT = 0, 3, 4

# A DNS name (what var/domain must hold): labels of letters, digits and inner hyphens.
# re.ASCII: without it re.I lets [a-z] match the Kelvin sign, a long s and a dotless i
DOMAIN = re.compile(r"(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*", re.I | re.ASCII)
LIMIT = 64 * 1024  # bytes of var/domain or a DKIM record read at most: a record is a few hundred


def unit_status(load_state: str, active_state: str) -> int:
    if load_state == "not-found":
        return NO_SUCH_UNIT
    return RUNNING if active_state in ("active", "reloading") else NOT_RUNNING


class Services:
    def __init__(self, config: Config, userdata: JsonFile, systemd):
        """systemd: has `async unit_states(names) -> {unit: (LoadState, ActiveState)}` and
        `on_units_changed` (spd/runtime/listeners.py), told when status() may differ now."""
        self.config = config
        self.userdata = userdata
        self.systemd = systemd
        self.on_units_changed = systemd.on_units_changed
        # As text: files_key() stats them before every read of Services1, and a Path costs more than the stat
        self._domain_file = str(config.path("var/domain"))
        self._dkim_folder = str(config.path("var/dkim"))

    def enabled(self) -> dict[str, bool]:
        data = self.userdata.read()
        return {s: bool(section(data, s).get("enable", False)) for s in SERVICE_NAMES}

    async def set_enabled(self, service: str, enable: bool) -> bool:
        """Whether anything changed."""
        if service not in SERVICE_NAMES:
            raise NotFound(f"There is no service {service[:64]!r}; known: {', '.join(SERVICE_NAMES)}")
        if not await set_setting(self.userdata, f"{service}.enable", enable):
            return False
        log.info("%s %s", service, "enabled" if enable else "disabled")
        return True

    async def status(self) -> dict[str, int]:
        states = await self.systemd.unit_states(ALL_UNITS)
        result = {}
        for key, units in STATUS_UNITS.items():
            codes = [unit_status(*states.get(u, ("not-found", "inactive"))) for u in units]
            result[key] = min(codes)  # running beats stopped beats missing
        return result

    def domain(self) -> str:
        """The server's domain (var/domain); "" when there is none. Failed when the file holds
        something that is not a domain name."""
        text = read_file(self._domain_file, "var/domain")
        if text is None:
            return ""
        try:
            domain = text.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise Failed("var/domain is not valid UTF-8") from None
        # The domain names a file: anything but a plain DNS name could lead elsewhere.
        if not DOMAIN.fullmatch(domain):
            raise Failed("var/domain does not hold a valid domain name")
        return domain

    def files_key(self, domain: str) -> tuple:
        """What says whether domain() and dkim_record() may read otherwise now, when var/domain held
        `domain` at the last read: its file's and that record's stat keys."""
        return file_key(self._domain_file), file_key(self._record(domain)) if domain else None

    def _record(self, domain: str) -> str:
        """The DKIM record file of a domain that domain() returned (a plain DNS name)."""
        return f"{self._dkim_folder}/{domain}.selector.txt"

    def dkim_record(self) -> str:
        """The text of the DKIM record file of the server's domain; "" when there is no domain or
        no file. Failed when var/domain holds something that is not a domain name."""
        domain = self.domain()
        if not domain:
            return ""
        record = read_file(self._record(domain), "the DKIM record")
        if record is None:
            return ""
        # A record is ASCII (RFC 6376); anything else is shown, never refused.
        return record.decode("utf-8", errors="replace")


def read_file(path: str, what: str) -> bytes | None:
    """The bytes of a regular file that someone else may write (var/dkim belongs to the mail
    server's DKIM user, not to root): never through a symbolic link (the root daemon would publish
    whatever it points to), never blocking on a FIFO, at most LIMIT bytes; None when there is none.
    Errors name `what`, never the path under the root."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Failed(f"Cannot read {what}: it is a symbolic link, which spd does not follow") from None
        raise Failed(f"Cannot read {what}: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Failed(f"Cannot read {what}: it is not a regular file")
        data = b""
        while len(data) <= LIMIT and (chunk := os.read(fd, LIMIT + 1 - len(data))):
            data += chunk
    except OSError as e:
        raise Failed(f"Cannot read {what}: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > LIMIT:
        raise Failed(f"Cannot read {what}: it is larger than {LIMIT // 1024} KiB")
    return data
