"""The 1.2 server's plaintext tokens, taken over once at start and then left nowhere on disk.

tokens.json wins; the older userdata `api.token` is imported only where no tokens.json ever replaced
it (a token deleted from tokens.json must not come back from there). Tokens already in our store are
kept; a pending mnemonic from 1.2 is imported only where the store has none.

A kill or power loss at any point loses no token and leaves no secret for good: the tokens are
committed to our store before tokens.json is renamed away (_shred), and a start that finds the
renamed file, or a tokens.json that is empty or all NUL (an older spd shredded it in place),
finishes that shred instead of refusing it. api.token goes last.
"""

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import token_records as records
from .errors import Failed
from .jsonfile import JsonFile, sync_folder

log = logging.getLogger("spd.tokens")  # the import's log lines are the token store's, as before

SHREDDING = ".tokens.json.shredding"  # the imported 1.2 tokens.json, renamed away until it is gone


async def import_legacy(store: JsonFile, userdata: JsonFile, legacy: Path) -> None:
    """Import `legacy` (tokens.json) and userdata's api.token into `store`.

    At start, before anything listens to the files or calls: on a thread of its own from start
    to finish, so its system calls come in one order (tests/test_import_crash.py kills spd at
    each of them)."""
    with ThreadPoolExecutor(1, thread_name_prefix="spd-import") as thread:
        await asyncio.get_running_loop().run_in_executor(thread, _import, store, userdata, legacy)


def _import(store: JsonFile, userdata: JsonFile, legacy: Path) -> None:
    store.remove_stale_temps()
    try:
        ud = userdata.read() if userdata.exists() else {}
    except Failed as e:  # corrupt: its api.token is taken over at a start where it can be read
        log.error("%s; its api.token is not imported now", e.message)
        ud = {}
    api = ud.get("api") if isinstance(ud.get("api"), dict) else {}
    shredding = legacy.with_name(SHREDDING)
    if legacy.exists() or shredding.exists():
        try:
            old = _read_legacy(legacy)
        except Failed as e:
            # Start anyway (the app may hold tokens we already have); keep the file and
            # api.token for the operator to fix, and import them at the next start.
            log.error("%s: its tokens are not imported; fix or remove it and restart spd", e.message)
            return
        if old is not None:
            store.update(lambda data: _merge_legacy(data, old))
            log.info("imported %d device tokens from %s", len(_legacy_tokens(old)), legacy)
        try:
            _shred(legacy, shredding)
        except OSError as e:
            log.error("cannot remove %s (%s): remove it by hand", legacy, e.strerror)
    elif isinstance(api.get("token"), str) and api["token"] and not store.exists():
        digest = records.digest(api["token"].encode())
        entry = {"name": "primary_token", "hash": digest, "date": records.format_date(records.now())}
        store.update(lambda data: data["tokens"].append(entry))
        log.info("imported api.token from userdata.json as primary_token")
    if "token" in api:
        try:
            userdata.update(lambda data: data["api"].pop("token", None))
        except Failed as e:
            log.error("%s: api.token stays in userdata.json for now", e.message)


def _legacy_tokens(old) -> list:
    found = old.get("tokens")
    return found if isinstance(found, list) else []


def _merge_legacy(data, old) -> None:
    for t in _legacy_tokens(old):
        if isinstance(t, dict) and isinstance(t.get("token"), str):
            digest = records.digest(t["token"].encode())
            if records.find(data["tokens"], digest) is None:
                data["tokens"].append({"name": records.unique_name(str(t.get("name") or ""), data["tokens"]),
                                       "hash": digest, "date": _legacy_date(t.get("date"))})
    for key in ("recovery_token", "new_device"):
        entry = old.get(key)
        if not isinstance(entry, dict) or data.get(key) is not None:
            continue
        try:
            secret = bytes.fromhex(entry["token"])
        except (KeyError, TypeError, ValueError):
            continue
        new = {"hash": records.digest(secret), "date": _legacy_date(entry.get("date")),
               "expiration": _legacy_date(entry["expiration"]) if entry.get("expiration") else None}
        if key == "recovery_token":
            uses = entry.get("uses_left")
            # 1.2 wrote an int or null; anything else must not become unlimited uses
            new["uses_left"] = uses if uses is None or records.uses_left({"uses_left": uses}) else 0
        data[key] = new


def _legacy_date(value) -> str:
    """1.2 dates are Python str(datetime): '2022-01-14 08:31:10.789314', taken as UTC."""
    try:
        return records.format_date(records.parse_date(str(value)))
    except ValueError:
        return records.format_date(records.now())


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
