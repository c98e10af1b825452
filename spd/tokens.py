"""API tokens: device tokens, the one-time new-device mnemonic and the recovery mnemonic.

At rest only SHA-256 digests are kept (tokens are 128 to 256 random bits, so a slow KDF buys
nothing) and every comparison walks all candidates with hmac.compare_digest. The 1.2 server's
plaintext tokens.json (and the older userdata `api.token`) are imported once and then removed.

Every change is a group commit (JsonFile.update_async): the disk work runs on a worker thread, so a
token write never holds up the daemon's other callers. A change may run a second time on a fresh copy
(when a later change of its batch fails), so every secret it stores is drawn before, never inside it.
"""

import asyncio
import hashlib
import hmac
import logging
import os
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from mnemonic import Mnemonic

from .config import Config
from .errors import Failed, InvalidArgument, NotFound
from .jsonfile import JsonFile, sync_folder

log = logging.getLogger("spd.tokens")

NEW_DEVICE_TTL = timedelta(minutes=10)
MAX_NAME = 255
EMPTY = {"tokens": [], "recovery_token": None, "new_device": None}
# One answer for "wrong", "expired", "used up" and "none exists": nothing to learn by probing.
NO_SUCH_MNEMONIC = "Token not found or expired"
SHREDDING = ".tokens.json.shredding"  # the imported 1.2 tokens.json, renamed away until it is gone

_words = Mnemonic("english")


def _digest(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def format_date(when: datetime) -> str:
    """ISO-8601 in UTC with a Z, which Dart's DateTime.parse reads."""
    return when.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_date(text: str) -> datetime:
    """An ISO-8601 date-time; a naive one is taken as UTC."""
    when = datetime.fromisoformat(text.strip())
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _mnemonic_entropy(words: str) -> bytes | None:
    """The entropy behind a BIP-39 phrase, or None for anything that is not one."""
    words = " ".join(words.split()).lower()
    if not words or len(words) > 1000:
        return None
    try:
        return bytes(_words.to_entropy(words))
    except (ValueError, LookupError, TypeError):
        return None


def _find(entries, digest: str):
    """The entry whose hash matches, comparing with every entry in constant time."""
    found = None
    for entry in entries:
        if hmac.compare_digest(entry["hash"], digest):
            found = entry
    return found


def _uses_left(rec) -> bool:
    """Whether a pending mnemonic may be used again: no count (None: a new-device mnemonic, or an
    unlimited recovery token) or a count above zero. Anything
    else (0, negative or not a number, e.g. from an imported 1.2 file) means no."""
    uses = rec.get("uses_left")
    return uses is None or (isinstance(uses, int) and not isinstance(uses, bool) and uses > 0)


def _expired(entry, now: datetime) -> bool:
    exp = entry.get("expiration")
    return bool(exp) and parse_date(exp) <= now


class Tokens:
    def __init__(self, config: Config, userdata: JsonFile):
        self.store = JsonFile(config.token_store, mode=0o600, default=EMPTY)
        self.userdata = userdata
        self.legacy = config.legacy_tokens

    # --- device tokens -------------------------------------------------------------------

    def authenticate(self, token: str) -> str:
        """The device name of a valid token."""
        entry = _find(self.store.read()["tokens"], _digest(token.encode()))
        if entry is None:
            raise NotFound("Invalid token")
        return entry["name"]

    def list(self) -> list[tuple[str, str]]:
        return [(t["name"], t["date"]) for t in self.store.read()["tokens"]]

    async def refresh(self, token: str) -> str:
        """Replace a token with a new one for the same device; the old one stops working now."""
        new = secrets.token_urlsafe(32)

        def change(data):
            entry = _find(data["tokens"], _digest(token.encode()))
            if entry is None:
                raise NotFound("Invalid token")
            entry["hash"] = _digest(new.encode())
            entry["date"] = format_date(_now())
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
        name = _unique_name(device, data["tokens"])
        data["tokens"].append({"name": name, "hash": _digest(token.encode()), "date": format_date(_now())})
        return name

    # --- new device --------------------------------------------------------------------

    async def new_device_create(self) -> str:
        entropy = secrets.token_bytes(16)
        now = _now()

        def change(data):
            data["new_device"] = {"hash": _digest(entropy), "date": format_date(now),
                                  "expiration": format_date(now + NEW_DEVICE_TTL)}

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
            if (entropy is None or entry is None or _find([entry], _digest(entropy)) is None
                    or _expired(entry, _now()) or not _uses_left(entry)):
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
        valid = not _expired(rec, _now()) and _uses_left(rec)
        left = -1 if uses is None else uses if _uses_left(rec) else 0
        return True, valid, rec["date"], rec.get("expiration") or "", left

    async def recovery_create(self, expiration: str, uses: int) -> str:
        """expiration: ISO-8601 or "" for never; uses: at least 1, or 0 for unlimited."""
        now = _now()
        exp = None
        if expiration:
            try:
                when = parse_date(expiration)
                exp = format_date(when)  # OverflowError: a date near year 1 or 9999 that UTC cannot hold
            except (ValueError, OverflowError):
                raise InvalidArgument("expiration is not an ISO-8601 date-time") from None
            if when <= now:
                raise InvalidArgument("expiration is in the past")
        if uses < 0:
            raise InvalidArgument("uses must be at least 1")
        entropy = secrets.token_bytes(24)

        def change(data):
            data["recovery_token"] = {"hash": _digest(entropy), "date": format_date(now),
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
        """Take over the 1.2 server's plaintext tokens, then leave none of them on disk.

        tokens.json wins; the older userdata `api.token` is imported only where no tokens.json
        ever replaced it (a token deleted from tokens.json must not come back from there).
        A kill or power loss at any point loses no token and leaves no secret for good: the tokens
        are committed to our store before tokens.json is renamed away (_shred), and a start that
        finds the renamed file, or a tokens.json that is empty or all NUL (an older spd shredded it
        in place), finishes that shred instead of refusing it. api.token goes last.

        At start, before anything listens to the files or calls: on a thread of its own from start
        to finish, so its system calls come in one order (tests/test_import_crash.py kills spd at
        each of them)."""
        with ThreadPoolExecutor(1, thread_name_prefix="spd-import") as thread:
            await asyncio.get_running_loop().run_in_executor(thread, self._import_legacy)

    def _import_legacy(self) -> None:
        self.store.remove_stale_temps()
        try:
            ud = self.userdata.read() if self.userdata.exists() else {}
        except Failed as e:  # corrupt: its api.token is taken over at a start where it can be read
            log.error("%s; its api.token is not imported now", e.message)
            ud = {}
        api = ud.get("api") if isinstance(ud.get("api"), dict) else {}
        shredding = self.legacy.with_name(SHREDDING)
        if self.legacy.exists() or shredding.exists():
            try:
                old = _read_legacy(self.legacy)
            except Failed as e:
                # Start anyway (the app may hold tokens we already have); keep the file and
                # api.token for the operator to fix, and import them at the next start.
                log.error("%s: its tokens are not imported; fix or remove it and restart spd", e.message)
                return
            if old is not None:
                self.store.update(lambda data: _merge_legacy(data, old))
                log.info("imported %d device tokens from %s", len(_legacy_tokens(old)), self.legacy)
            try:
                _shred(self.legacy, shredding)
            except OSError as e:
                log.error("cannot remove %s (%s): remove it by hand", self.legacy, e.strerror)
        elif isinstance(api.get("token"), str) and api["token"] and not self.store.exists():
            token = api["token"]
            entry = {"name": "primary_token", "hash": _digest(token.encode()), "date": format_date(_now())}
            self.store.update(lambda data: data["tokens"].append(entry))
            log.info("imported api.token from userdata.json as primary_token")
        if "token" in api:
            try:
                self.userdata.update(lambda data: data["api"].pop("token", None))
            except Failed as e:
                log.error("%s: api.token stays in userdata.json for now", e.message)


def _check_device(device: str) -> str:
    if len(device) > MAX_NAME:
        raise InvalidArgument(f"device name is longer than {MAX_NAME} characters")
    return device


def _unique_name(device: str, tokens) -> str:
    base = re.sub(r"[^a-zA-Z0-9]", "_", device)[:MAX_NAME] or "device"
    names = {t["name"] for t in tokens}
    name, n = base, 1
    while name in names:
        n += 1
        name = f"{base}_{n}"
    return name


def _legacy_tokens(old) -> list:
    tokens = old.get("tokens")
    return tokens if isinstance(tokens, list) else []


def _merge_legacy(data, old) -> None:
    for t in _legacy_tokens(old):
        if isinstance(t, dict) and isinstance(t.get("token"), str):
            digest = _digest(t["token"].encode())
            if _find(data["tokens"], digest) is None:
                data["tokens"].append({"name": _unique_name(str(t.get("name") or ""), data["tokens"]),
                                       "hash": digest, "date": _legacy_date(t.get("date"))})
    for key in ("recovery_token", "new_device"):
        entry = old.get(key)
        if not isinstance(entry, dict) or data.get(key) is not None:
            continue
        try:
            secret = bytes.fromhex(entry["token"])
        except (KeyError, TypeError, ValueError):
            continue
        new = {"hash": _digest(secret), "date": _legacy_date(entry.get("date")),
               "expiration": _legacy_date(entry["expiration"]) if entry.get("expiration") else None}
        if key == "recovery_token":
            uses = entry.get("uses_left")
            # 1.2 wrote an int or null; anything else must not become unlimited uses
            new["uses_left"] = uses if uses is None or _uses_left({"uses_left": uses}) else 0
        data[key] = new


def _legacy_date(value) -> str:
    """1.2 dates are Python str(datetime): '2022-01-14 08:31:10.789314', taken as UTC."""
    try:
        return format_date(parse_date(str(value)))
    except ValueError:
        return format_date(_now())


def _read_legacy(path):
    """The 1.2 server's tokens.json; None when there is nothing to import: it is gone (renamed
    away for shredding), empty or all NUL (what an interrupted shred in place left)."""
    try:
        if not path.read_bytes().strip(b"\0"):
            return None
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Failed(f"Cannot read {path.name}: {e.strerror or e}") from None
    return JsonFile(path).read()


def _shred(legacy, shredding) -> None:
    """Remove the imported plaintext in steps that a kill may interrupt anywhere: tokens.json is
    renamed to `shredding` (the folder synced: it never comes back, even after a power loss), then
    overwritten with zeros and removed. A start that finds `shredding` finishes the job."""
    if shredding.exists():  # left by a kill: zeroed first, or the rename below would drop it unzeroed
        _zero_and_unlink(shredding)
    if legacy.exists():
        os.replace(legacy, shredding)
        sync_folder(legacy.parent)
        _zero_and_unlink(shredding)


def _zero_and_unlink(path) -> None:
    with open(path, "r+b") as f:
        f.write(b"\0" * os.fstat(f.fileno()).st_size)
        f.flush()
        os.fsync(f.fileno())
    os.unlink(path)
    sync_folder(path.parent)
