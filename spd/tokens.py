"""API tokens: device tokens, the one-time new-device mnemonic and the recovery mnemonic.

At rest only SHA-256 digests are kept (tokens are 128 to 256 random bits, so a slow KDF buys
nothing) and every comparison walks all candidates with hmac.compare_digest. The 1.2 server's
plaintext tokens.json (and the older userdata `api.token`) are imported once and then removed
(spd/legacy_tokens.py).

Every change is a group commit (JsonFile.update_async): the disk work runs on a worker thread, so a
token write never holds up the daemon's other callers. A change may run a second time on a fresh copy
(when a later change of its batch fails), so every secret it stores is drawn before, never inside it.
"""

import logging
import secrets
from datetime import datetime, timedelta

from mnemonic import Mnemonic

from . import legacy_tokens
from . import token_records as records
from .config import Config
from .errors import InvalidArgument, NotFound
from .jsonfile import JsonFile

log = logging.getLogger("spd.tokens")

NEW_DEVICE_TTL = timedelta(minutes=10)
EMPTY = {"tokens": [], "recovery_token": None, "new_device": None}
# One answer for "wrong", "expired", "used up" and "none exists": nothing to learn by probing.
NO_SUCH_MNEMONIC = "Token not found or expired"

_words = Mnemonic("english")


def _mnemonic_entropy(words: str) -> bytes | None:
    """The entropy behind a BIP-39 phrase, or None for anything that is not one."""
    words = " ".join(words.split()).lower()
    if not words or len(words) > 1000:
        return None
    try:
        return bytes(_words.to_entropy(words))
    except (ValueError, LookupError, TypeError):
        return None


def _expired(entry, now: datetime) -> bool:
    exp = entry.get("expiration")
    return bool(exp) and records.parse_date(exp) <= now


class Tokens:
    def __init__(self, config: Config, userdata: JsonFile):
        self.store = JsonFile(config.token_store, mode=0o600, default=EMPTY)
        self.userdata = userdata
        self.legacy = config.legacy_tokens

    # --- device tokens -------------------------------------------------------------------

    def authenticate(self, token: str) -> str:
        """The device name of a valid token."""
        entry = records.find(self.store.read()["tokens"], records.digest(token.encode()))
        if entry is None:
            raise NotFound("Invalid token")
        return entry["name"]

    def list(self) -> list[tuple[str, str]]:
        return [(t["name"], t["date"]) for t in self.store.read()["tokens"]]

    async def refresh(self, token: str) -> str:
        """Replace a token with a new one for the same device; the old one stops working now."""
        new = secrets.token_urlsafe(32)

        def change(data):
            entry = records.find(data["tokens"], records.digest(token.encode()))
            if entry is None:
                raise NotFound("Invalid token")
            entry["hash"] = records.digest(new.encode())
            entry["date"] = records.format_date(records.now())
            return entry["name"]

        name = await self.store.update_async(change)
        log.info("token refreshed for device %s", name)
        return new

    async def delete(self, name: str) -> None:
        def change(data):
            kept = [t for t in data["tokens"] if t["name"] != name]
            if len(kept) == len(data["tokens"]):
                raise NotFound(f"No token named {name!r}")
            data["tokens"] = kept

        await self.store.update_async(change)
        log.info("token deleted: %s", name)  # it matched a stored name: only [a-zA-Z0-9_]

    def _issue(self, data, device: str, token: str) -> str:
        """Add a device token to `data` (inside an update); its device name."""
        name = records.unique_name(device, data["tokens"])
        data["tokens"].append({"name": name, "hash": records.digest(token.encode()),
                               "date": records.format_date(records.now())})
        return name

    # --- new device --------------------------------------------------------------------

    async def new_device_create(self) -> str:
        entropy = secrets.token_bytes(16)
        now = records.now()

        def change(data):
            data["new_device"] = {"hash": records.digest(entropy), "date": records.format_date(now),
                                  "expiration": records.format_date(now + NEW_DEVICE_TTL)}

        await self.store.update_async(change)
        return _words.to_mnemonic(entropy)

    async def new_device_forget(self) -> None:
        if self.store.read().get("new_device") is not None:
            await self.store.update_async(lambda data: data.update(new_device=None))

    async def new_device_redeem(self, words: str, device: str) -> str:
        token, name = await self._redeem("new_device", words, device,
                                         lambda data, entry: data.update(new_device=None))  # one use
        log.info("new device authorized: %s", name)  # the stored name: the raw one could forge log lines
        return token

    async def _redeem(self, key: str, words: str, device: str, spend) -> tuple[str, str]:
        """(token, device name) for the words of the pending mnemonic under `key`, after
        spend(data, entry) used it up; NotFound, the same for every reason, when they are not valid."""
        device = _check_device(device)
        entropy = _mnemonic_entropy(words)
        token = secrets.token_urlsafe(32)

        def change(data):
            entry = data.get(key)
            if (entropy is None or entry is None or records.find([entry], records.digest(entropy)) is None
                    or _expired(entry, records.now()) or not records.uses_left(entry)):
                raise NotFound(NO_SUCH_MNEMONIC)
            spend(data, entry)
            return self._issue(data, device, token)

        return token, await self.store.update_async(change)

    # --- recovery ----------------------------------------------------------------------

    def recovery_status(self) -> tuple[bool, bool, str, str, int]:
        """(exists, valid, date, expiration, uses_left); "" and -1 stand for none."""
        rec = self.store.read().get("recovery_token")
        if rec is None:
            return False, False, "", "", -1
        uses = rec.get("uses_left")
        valid = not _expired(rec, records.now()) and records.uses_left(rec)
        left = -1 if uses is None else uses if records.uses_left(rec) else 0
        return True, valid, rec["date"], rec.get("expiration") or "", left

    async def recovery_create(self, expiration: str, uses: int) -> str:
        """expiration: ISO-8601 or "" for never; uses: at least 1, or 0 for unlimited."""
        now = records.now()
        exp = None
        if expiration:
            try:
                when = records.parse_date(expiration)
                exp = records.format_date(when)  # OverflowError: a date near year 1 or 9999 that UTC cannot hold
            except (ValueError, OverflowError):
                raise InvalidArgument("expiration is not an ISO-8601 date-time") from None
            if when <= now:
                raise InvalidArgument("expiration is in the past")
        if uses < 0:
            raise InvalidArgument("uses must be at least 1")
        entropy = secrets.token_bytes(24)

        def change(data):
            data["recovery_token"] = {"hash": records.digest(entropy), "date": records.format_date(now),
                                      "expiration": exp, "uses_left": uses or None}

        await self.store.update_async(change)
        log.info("recovery token created (expiration %s, uses %s)", exp, uses or "unlimited")
        return _words.to_mnemonic(entropy)

    async def recovery_redeem(self, words: str, device: str) -> str:
        def spend(data, rec):
            if rec.get("uses_left") is not None:
                rec["uses_left"] -= 1

        token, name = await self._redeem("recovery_token", words, device, spend)
        log.info("recovery token used by device %s", name)
        return token

    # --- the 1.2 server's files --------------------------------------------------------

    async def import_legacy(self) -> None:
        """Take over the 1.2 server's plaintext tokens (spd/legacy_tokens.py), at start."""
        await legacy_tokens.import_legacy(self.store, self.userdata, self.legacy)


def _check_device(device: str) -> str:
    if len(device) > records.MAX_NAME:
        raise InvalidArgument(f"device name is longer than {records.MAX_NAME} characters")
    return device
