"""A JSON file that is never half-written and never loses what it does not understand.

Every change is a read-modify-write under an exclusive lock, written to a temp file in the same
folder, fsynced, renamed over the original, and the folder fsynced: a crash at any moment leaves
either the old file or the new one. The flock (taken on a fresh descriptor each time, so it also
orders threads of one process) guards against other writers: an operator's script, a second daemon
by mistake. The daemon writes with update_async: the disk work runs on a worker thread, and the
changes that pile up meanwhile are committed together (one fsync for many requests), each still
succeeding or failing on its own.

Keys nobody touched stay exactly as they were, byte for byte: a top-level member whose value did
not change is copied from the old text, not re-serialised, and numbers keep their original
spelling (`1e5`, `1.50`) even inside values that are re-serialised. The file's mode and owner are
kept too.
"""

import asyncio
import copy
import fcntl
import json
import logging
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from .errors import Failed
from .runtime.listeners import Listeners

log = logging.getLogger("spd.jsonfile")

INDENT = "    "  # the 1.2 server wrote json.dump(data, f, indent=4); so do we


class Number(float):
    """A JSON number with a fraction or exponent, remembering how the file spelled it."""

    def __new__(cls, text: str):
        self = super().__new__(cls, text)
        self.text = text
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return Number, (self.text,)


def _scan_constant(name: str):
    raise ValueError(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_float=Number, parse_constant=_scan_constant)
_WS = " \t\n\r"


def loads(text: str):
    return _decoder.decode(text)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def split_top(text: str) -> dict | None:
    """The raw text of each top-level member (`"key": value`, as spelled in the file) of a JSON
    object (last one wins for a repeated key), or None when the document is not an object."""
    i = _skip(text, 0)
    if i >= len(text) or text[i] != "{":
        return None
    raw = {}
    i = _skip(text, i + 1)
    if i < len(text) and text[i] == "}":
        return raw
    while True:
        if text[i] != '"':
            raise ValueError("expected a key")
        start = i
        key, i = json.decoder.scanstring(text, i + 1)
        i = _skip(text, i)
        if text[i] != ":":
            raise ValueError("expected ':'")
        i = _skip(text, i + 1)
        _, end = _decoder.raw_decode(text, i)
        raw.pop(key, None)
        raw[key] = text[start:end]
        i = _skip(text, end)
        if text[i] == "}":
            return raw
        if text[i] != ",":
            raise ValueError("expected ',' or '}'")
        i = _skip(text, i + 1)


def dumps(value, level: int = 0) -> str:
    """JSON formatted like json.dumps(value, indent=4), but numbers keep their spelling."""
    if isinstance(value, str):
        return json.dumps(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, Number):
        return value.text
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("NaN and infinity are not JSON")
        return float.__repr__(value)
    inner = "\n" + INDENT * (level + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = (inner + json.dumps(_key(k)) + ": " + dumps(v, level + 1) for k, v in value.items())
        return "{" + ",".join(items) + "\n" + INDENT * level + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[" + ",".join(inner + dumps(v, level + 1) for v in value) + "\n" + INDENT * level + "]"
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def stat_key(st: os.stat_result) -> tuple:
    """What says a file may read otherwise now: a rename over it changes its inode, a write in
    place its mtime or size (two writes of one size in one clock tick look alike; the watcher,
    spd/watch.py, still reports the second)."""
    return st.st_ino, st.st_mtime_ns, st.st_size


def file_key(path) -> tuple | None:
    """stat_key of the file at path; None when there is none (or it cannot be looked at)."""
    try:
        return stat_key(os.stat(path))
    except OSError:
        return None


def _key(k) -> str:
    if not isinstance(k, str):
        raise TypeError("JSON keys are strings")
    return k


class JsonFile:
    def __init__(self, path: Path, mode: int = 0o600, default=None):
        """`default` is returned by read() (and used as the base of a change) when the file is
        missing; None means a missing file is an error."""
        self.path = Path(path)
        self.mode = mode
        self.default = default
        self._lock_path = self.path.with_name("." + self.path.name + ".lock")
        self._cached = (None, None)  # (stat key, parsed data), replaced as one
        self._generation = 0  # bumped by every write of ours, on whichever thread
        self._cache_lock = threading.Lock()  # a read stores its result only if no write came between
        self._pending = []  # (change, future) waiting for the next group commit
        self._writer = None
        # fn() after each commit, before its callers hear of it (on their thread): the hook through
        # which the store signals
        self.on_commit = Listeners(log, self.path.name)

    def exists(self) -> bool:
        return self.path.exists()

    def read(self):
        """The parsed file, cached while the file is unchanged. Treat it as read-only."""
        generation = self._generation
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.default is None:
                raise Failed(f"{self.path.name} is missing") from None
            return copy.deepcopy(self.default)
        except OSError as e:
            raise Failed(f"Cannot read {self.path.name}: {e.strerror or e}") from None
        key = stat_key(st)
        cached_key, data = self._cached
        if key != cached_key:
            data = self._parse(self._read_text())
            # A write of ours (on the worker thread) between the stat and the read: the text may be
            # newer than the key, and the next file may get this key back (a reused inode, the same
            # size, the same clock tick), so such a read is not cached.
            with self._cache_lock:
                if generation == self._generation:
                    self._cached = (key, data)
        return data

    def update(self, change):
        """Run change(data) on a fresh copy under the lock and write the result atomically.
        Returns what change returns. If change raises, nothing is written; if it changed nothing,
        the file is left alone. Blocks while the disk works: the daemon's request handlers use
        update_async instead."""
        ((result, error),) = self._commit([change])
        self.on_commit.notify()
        if error is not None:
            raise error
        return result

    async def update_async(self, change):
        """update() without blocking the event loop, with group commit: the disk work runs on a
        worker thread, and changes that arrive while a write is under way are applied in arrival
        order and written together by the next one (one fsync for many requests). Each change still
        succeeds or fails alone. `change` runs on the worker thread and must only touch `data`; it
        may run again on a fresh copy when a later change of its batch fails, so it must not have
        other effects."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((change, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self):
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                outcomes = await asyncio.to_thread(self._commit, [change for change, _ in batch])
            except Exception as e:  # the file is missing or corrupt, or the write failed
                outcomes = [(None, e)] * len(batch)
            self.on_commit.notify()  # before any caller resumes: whatever it answers next sees the change
            for (_, future), (result, error) in zip(batch, outcomes):
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

    def _commit(self, changes) -> list:
        """Apply changes in order under the lock and write once: [(result, exception)] per change.
        A file that cannot be written (disk full, read-only folder) is a Failed naming the cause;
        the file is then left as it was."""
        try:
            return self._commit_locked(changes)
        except OSError as e:
            raise Failed(f"Cannot write {self.path.name}: {e.strerror or e}; it was left unchanged") from None

    def _commit_locked(self, changes) -> list:
        with self._locked():
            try:
                text = self._read_text()
            except Failed:
                if self.default is None or self.path.exists():
                    raise
                text = None

            def fresh():
                return copy.deepcopy(self.default) if text is None else self._parse(text)

            data = fresh()
            before = _fingerprint(data)
            outcomes, applied = [], []
            for change in changes:
                try:
                    outcomes.append((change(data), None))
                    applied.append(change)
                except Exception as e:
                    outcomes.append((None, e))
                    data = fresh()  # undo what the failed change half-did
                    for done in applied:
                        done(data)
            after = _fingerprint(data)
            if text is not None and after is not None and after == before and list(after) == list(before):
                return outcomes  # nothing changed: leave the file (and its mtime) alone
            raw = split_top(text) if text is not None and isinstance(data, dict) else {}
            written = (None, None)
            try:
                # What we wrote becomes the cached reading: no reader parses the file again after
                # our own write (on the event loop, for a big file, that would stall every caller).
                # `data` is what parsing the text gives: the changes put only JSON values in it.
                written = (self._write(self._render(data, raw, before, after)), data)
            finally:
                with self._cache_lock:
                    self._generation += 1
                    self._cached = written
            return outcomes

    def remove_stale_temps(self) -> None:
        """Delete temp files that a killed writer left behind (under the lock, so never a live one),
        at start: they may hold secrets (the token store's digests). Blocking. A folder that cannot
        be written is only logged: reads still work, and each change will say why it cannot."""
        if not self.path.parent.is_dir():
            return
        try:
            with self._locked():
                for p in self.path.parent.glob("." + self.path.name + ".*.tmp"):
                    try:
                        p.unlink()
                    except FileNotFoundError:
                        pass
        except OSError as e:  # e.g. a read-only folder
            log.error("Cannot remove temp files next to %s: %s", self.path.name, e.strerror or e)

    def _read_text(self) -> str:
        try:
            with open(self.path, "rb") as f:
                return f.read().decode("utf-8")
        except FileNotFoundError:
            raise Failed(f"{self.path.name} is missing") from None
        except UnicodeDecodeError:
            raise Failed(f"{self.path.name} is not valid UTF-8; refusing to change it") from None
        except OSError as e:
            raise Failed(f"Cannot read {self.path.name}: {e.strerror or e}") from None

    def _parse(self, text: str):
        try:
            data = loads(text)
        except ValueError:
            raise Failed(f"{self.path.name} is not valid JSON; refusing to change it") from None
        if not isinstance(data, dict):  # every reader does data.get(...)
            raise Failed(f"{self.path.name} does not hold a JSON object; refusing to change it")
        return data

    def _render(self, data, raw, before, after) -> str:
        """The new text: untouched top-level members copied from the old text."""
        if not isinstance(data, dict) or raw is None or not isinstance(before, dict):
            return dumps(data) + "\n"
        if not data:
            return "{}\n"
        items = []
        for key, value in data.items():
            if key in raw and before.get(key) == after[key]:
                items.append("\n" + INDENT + raw[key])
            else:
                items.append("\n" + INDENT + json.dumps(key) + ": " + dumps(value, 1))
        return "{" + ",".join(items) + "\n}\n"

    @contextmanager
    def _locked(self):
        make_folder(self.path.parent)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, text: str) -> tuple:
        """Replace the file with `text`; returns the new file's cache key (as read() computes it)."""
        try:
            st = os.stat(self.path)
            mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
        except FileNotFoundError:
            mode, owner = self.mode, None
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + self.path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                if owner is not None and owner != (os.geteuid(), os.getegid()):
                    os.fchown(f.fileno(), *owner)
                os.fchmod(f.fileno(), mode)
                f.write(text.encode())
                f.flush()
                os.fsync(f.fileno())
                st = os.fstat(f.fileno())  # the rename keeps inode, mtime and size
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        # The new file is in place now: a failing folder sync must not report the change as not
        # made (callers would be told "left unchanged" about a file that changed).
        try:
            sync_folder(folder)
        except OSError as e:
            log.warning("%s was replaced, but syncing its folder failed: %s", self.path.name, e.strerror or e)
        return stat_key(st)


def sync_folder(folder: Path) -> None:
    """fsync a folder: the names created, renamed or removed in it survive a power loss."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folder(folder: Path) -> None:
    """mkdir -p that syncs the parent of each folder it creates: otherwise a power loss may forget
    the new folder, and with it every file synced inside (var/lib/spd in var/lib)."""
    if folder.is_dir():
        return
    make_folder(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:  # made meanwhile by another writer, who syncs its parent
        return
    sync_folder(folder.parent)


_compact = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode  # C-accelerated


def _fingerprint(data):
    """Each top-level value in compact JSON, to see which ones a change touched (true, 1 and 1.0
    differ here, as they do in the file)."""
    if not isinstance(data, dict):
        return None
    return {k: _compact(v) for k, v in data.items()}
