"""A JSON file that is never half-written: every change is a read-modify-write under an exclusive
lock, written to a temp file in the same folder, fsynced, renamed over the original, and the folder
fsynced. The daemon is one asyncio thread, so a change made without awaiting inside it is also
atomic with respect to every other request; the flock guards against other processes (an operator's
script, a second daemon by mistake)."""

import copy
import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import Failed


class JsonFile:
    def __init__(self, path: Path, mode: int = 0o600, default=None):
        """`default` is returned by read() (and used as the base of a change) when the file is
        missing; None means a missing file is an error."""
        self.path = Path(path)
        self.mode = mode
        self.default = default
        self._lock_path = self.path.with_name("." + self.path.name + ".lock")
        self._cache_key = None
        self._cache = None

    def exists(self) -> bool:
        return self.path.exists()

    def read(self):
        """The parsed file, cached while the file is unchanged. Treat it as read-only."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.default is None:
                raise Failed(f"{self.path.name} is missing") from None
            return copy.deepcopy(self.default)
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._cache_key:
            self._cache = self._load()
            self._cache_key = key
        return self._cache

    def update(self, change):
        """Run change(data) on a fresh copy under the lock and write the result atomically.
        Returns what change returns. If change raises, nothing is written."""
        with self._locked():
            try:
                data = self._load()
            except Failed:
                if self.default is None or self.path.exists():
                    raise
                data = copy.deepcopy(self.default)
            result = change(data)
            self._write(data)
            self._cache_key = None
            return result

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise Failed(f"{self.path.name} is missing") from None
        except (ValueError, UnicodeDecodeError):
            raise Failed(f"{self.path.name} is not valid JSON; refusing to change it") from None

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, data) -> None:
        text = json.dumps(data, indent=4, ensure_ascii=False) + "\n"
        try:
            mode = os.stat(self.path).st_mode & 0o7777
        except FileNotFoundError:
            mode = self.mode
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + self.path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                f.write(text.encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
