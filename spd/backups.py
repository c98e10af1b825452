"""Backups of `var` under the root with restic: a state machine whose every change (state, progress,
error message, snapshot list) is reported through `on_change` (spd/runtime/listeners.py), so the D-Bus adapter
can emit PropertiesChanged.

States, named as the app expects: NO_KEY (no repository configured or no resticPassword),
NOT_INITIALIZED, INITIALIZING (the repository is being checked at start or created), INITIALIZED (idle,
ready), BACKING_UP, RESTORING, ERROR (the last operation failed; error_message says why; the next
start tries again). One operation runs at a time; a failure becomes state, never a crash.

Restore writes the snapshot back into `var`: restic restores into a private folder next to it, then
spd/restore.py moves every file of the snapshot over the live one and keeps files created after the
snapshot. The daemon's own state (var/lib/spd: device tokens) is neither backed up nor restored, so a
restore cannot bring back a revoked token.
"""

import asyncio
import json
import logging
import os
import re
import shutil

from . import restic, restore
from .config import Config
from .errors import Busy, InvalidArgument, NotFound, NotReady, SpdError
from .jsonfile import JsonFile
from .runtime.listeners import Listeners
from .restic import Repository, ResticError

log = logging.getLogger("spd.backups")

NO_KEY = "NO_KEY"
NOT_INITIALIZED = "NOT_INITIALIZED"
INITIALIZING = "INITIALIZING"
INITIALIZED = "INITIALIZED"
BACKING_UP = "BACKING_UP"
RESTORING = "RESTORING"
ERROR = "ERROR"

OWN_STATE = "var/lib/spd"  # excluded from backups and restores
B2_PATH = "sfbackup"  # where 1.2 servers kept their repository in the bucket
CHECK_TIMEOUT = 120.0  # seconds for a look at the repository (B2 may be unreachable)
RESTORE_WRITTEN = 0.9  # progress once restic wrote everything; moving it into place is the rest
RESTORE_POLL = 0.5  # seconds between looks at what restore wrote
# Matched whole (fullmatch): `$` would let a trailing newline through into userdata and the log.
BUCKET = re.compile(r"[A-Za-z0-9-]{1,63}")
CREDENTIAL = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII, no spaces


class Backups:
    def __init__(self, config: Config, userdata: JsonFile):
        self.config = config
        self.userdata = userdata
        self.source = config.path("var")
        self.own_state = config.path(OWN_STATE)
        self.staging = self.own_state / "restore"  # restic restores here, then files move into var
        self.state = INITIALIZING
        self.progress = 0.0
        self.error_message = ""
        self.snapshots: list[dict] = []
        self._lists_started = 0  # snapshot lists asked of restic (or cleared), in order
        self._list_shown = 0  # which of them self.snapshots is: an older one never replaces a newer
        # fn() after state, progress, error_message or snapshots changed
        self.on_change = Listeners(log, "the backups")
        self._operation: asyncio.Task | None = None  # the one running check, backup or restore
        self._running = ""  # which of them: "check", "backup" or "restore"
        self._reloading: asyncio.Task | None = None
        self._recheck = False  # the credentials changed while an operation ran
        self._checked = None  # the repository the state was last found for (None: none checked)

    # --- what callers ask -------------------------------------------------------------------

    def start(self) -> None:
        """Find out the repository's state (at daemon start). An unreadable userdata.json is the
        ERROR state (the daemon still starts); Reload looks again once it is fixed."""
        try:
            self._check()
        except SpdError as e:
            self._set(ERROR, 0.0, e.message)

    def stop(self) -> None:
        """Cancel the operation and the reload running (the daemon leaves; a restore's staging
        folder is removed by the next start)."""
        for task in (self._operation, self._reloading):
            if task is not None:
                task.cancel()

    async def set_backblaze(self, account_id: str, account_key: str, bucket: str) -> None:
        for name, value, rule in (("accountId", account_id, CREDENTIAL), ("accountKey", account_key, CREDENTIAL),
                                  ("bucket", bucket, BUCKET)):
            if not value:
                raise InvalidArgument(f"{name} is required")
            if not rule.fullmatch(value):
                raise InvalidArgument(f"{name} is not a valid Backblaze {name}")
        await self.userdata.update_async(lambda data: data.update(
            backblaze={"accountId": account_id, "accountKey": account_key, "bucket": bucket}))
        log.info("Backblaze credentials set (bucket %s)", bucket)
        self.userdata_changed()  # already done when the commit's listener ran it: then a no-op

    def userdata_changed(self) -> None:
        """userdata.json changed (a call, a hand edit, a rebuild): look at the repository again when
        where or how backups go changed, or when it could not be read at the last look."""
        try:
            repository = self._repository()
        except SpdError:  # unreadable: the state found last stays until the file is fixed
            return
        if self._checked is not None and repository == self._checked[0]:
            return
        if self.busy():
            self._recheck = True
        else:
            self._check()

    def reload(self) -> None:
        """Reload the snapshot list in the background. Its outcome also corrects the state when
        nothing else runs (an ERROR that went away, a repository that vanished)."""
        if self.state == NO_KEY:
            if not self.busy():
                self._check()  # the key may have been set since
            return
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self._reload_list())

    def start_backup(self) -> None:
        self._ready_for("a backup")
        # Before the reply: a status asked right after must not say idle. A first backup creates
        # the repository before it backs up: its states go INITIALIZING, BACKING_UP, INITIALIZED.
        self._set(INITIALIZING if self.state == NOT_INITIALIZED else BACKING_UP, 0.0, "")
        self._begin(self._backup(), "backup")
        log.info("backup started")

    def start_restore(self, snapshot_id: str) -> None:
        self._ready_for("a restore", restore=True)
        snapshot = self._find(snapshot_id)
        self._set(RESTORING, 0.0, "")
        self._begin(self._restore(snapshot), "restore")
        log.info("restore of snapshot %s started", snapshot["short_id"])

    # --- the state machine ------------------------------------------------------------------

    def _set(self, state: str | None = None, progress: float | None = None, error: str | None = None):
        changed = {}
        if state is not None and state != self.state:
            self.state = changed["state"] = state
        if progress is not None and progress != self.progress:
            self.progress = changed["progress"] = progress
        if error is not None and error != self.error_message:
            self.error_message = changed["error_message"] = error
        if changed:
            self.on_change.notify()
        if "state" in changed:
            log.info("backup state: %s%s", state, f" ({self.error_message})" if state == ERROR else "")

    def busy(self) -> bool:
        """A check, backup or restore is running (the daemon must not idle-exit meanwhile)."""
        return self._operation is not None and not self._operation.done()

    def _ready_for(self, what: str, restore: bool = False) -> None:
        if self.state == NO_KEY:
            if not self.busy() and self._repository() is not None:
                self._check()  # userdata got a key behind our back: look at it first
                raise NotReady("The backup repository is being checked; try again shortly")
            raise NotReady(f"No backup key: set the Backblaze credentials before {what}")
        if self.busy() and self._running != "check":  # a first backup is INITIALIZING for a while
            raise Busy("A restore is in progress" if self._running == "restore" else "A backup is in progress")
        if self.state == INITIALIZING:
            raise NotReady("The backup repository is being initialized; try again shortly")
        if restore and self.state == NOT_INITIALIZED:
            raise NotReady("The backup repository is not initialized: there is nothing to restore")

    def _find(self, snapshot_id: str) -> dict:
        if snapshot_id:
            for snapshot in self.snapshots:
                if snapshot_id in (snapshot.get("short_id"), snapshot.get("id")):
                    return snapshot
        raise NotFound(f"No backup with id {snapshot_id[:64]!r}")

    def _begin(self, work, running: str) -> None:
        self._running = running
        self._operation = asyncio.get_running_loop().create_task(self._guarded(work))

    async def _guarded(self, work) -> None:
        """Run one operation; whatever goes wrong becomes the ERROR state."""
        try:
            await work
        except (ResticError, SpdError) as e:  # SpdError: e.g. userdata.json unreadable
            log.warning("backup operation failed: %s", e.message)
            self._set(ERROR, error=e.message)
        except OSError as e:
            log.warning("backup operation failed: %s", e)
            self._set(ERROR, error=f"{e.strerror or 'I/O error'}: {e.filename or ''}".rstrip(": "))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("backup operation failed")
            self._set(ERROR, error="Internal error; see the daemon's log")
        if self._recheck:
            self._recheck = False
            self._check()

    def _repository(self) -> Repository | None:
        """Where backups go, from SPD_RESTIC_REPOSITORY or userdata's backblaze block; None = NO_KEY."""
        data = self.userdata.read()
        password = data.get("resticPassword")
        if not isinstance(password, str) or not password.strip():
            return None
        if self.config.restic_repository:
            return Repository(self.config.restic_repository, password, secrets=(password,))
        b2 = data.get("backblaze")
        if not isinstance(b2, dict):
            return None
        account_id, key, bucket = (b2.get(k) for k in ("accountId", "accountKey", "bucket"))
        if not all(isinstance(v, str) and v for v in (account_id, key, bucket)):
            return None
        return Repository(f"b2:{bucket}:{B2_PATH}", password,
                          env={"B2_ACCOUNT_ID": account_id, "B2_ACCOUNT_KEY": key}, secrets=(password, key))

    def _check(self) -> None:
        repository = self._repository()
        self._checked = (repository,)
        if repository is None:
            self._show([])
            self._set(NO_KEY, 0.0, "")
            return
        self._set(INITIALIZING, 0.0, "")
        self._begin(self._check_repository(), "check")

    async def _check_repository(self) -> None:
        if self.staging.exists():  # a restore was killed with the daemon
            await asyncio.to_thread(shutil.rmtree, self.staging, True)
        repo = self._repository()
        if repo is None:
            self._set(NO_KEY)
            return
        try:
            await self._load_snapshots(repo)
        except ResticError as e:
            if e.kind != restic.MISSING:
                raise
            self._show([])
            self._set(NOT_INITIALIZED, error="")
            return
        self._set(INITIALIZED, error="")

    async def _load_snapshots(self, repo: Repository) -> None:
        """Load the list. A Reload may run alongside a backup's own reload: whichever was asked
        last wins, not whichever restic answered last (a slow older list would hide the new
        snapshot)."""
        self._lists_started += 1
        ticket = self._lists_started
        out = await restic.run(repo, ["snapshots", "--json"], timeout=CHECK_TIMEOUT)
        try:
            snapshots = json.loads(out or "[]")
        except ValueError:
            raise ResticError(restic.FAILED, "restic snapshots printed something that is not JSON") from None
        if not isinstance(snapshots, (list, type(None))):
            raise ResticError(restic.FAILED, "restic snapshots printed something that is not a list")
        self._show([s for s in snapshots or [] if isinstance(s, dict) and s.get("short_id")], ticket)

    def _show(self, snapshots: list, ticket: int | None = None) -> None:
        if ticket is None:  # cleared: newer than any list under way
            self._lists_started += 1
            ticket = self._lists_started
        if ticket > self._list_shown:
            self._list_shown = ticket
            if snapshots != self.snapshots:
                self.snapshots = snapshots
                self.on_change.notify()

    async def _reload_list(self) -> None:
        try:
            repo = self._repository()
            if repo is None:
                if not self.busy():
                    self._check()
                return
        except SpdError as e:  # userdata.json unreadable: that is the state until it is fixed
            if not self.busy():
                self._set(ERROR, error=e.message)
            return
        try:
            await self._load_snapshots(repo)
        except ResticError as e:
            log.warning("reloading the snapshot list failed: %s", e.message)
            if not self.busy():
                if e.kind == restic.MISSING:
                    self._show([])
                    self._set(NOT_INITIALIZED, error="")
                else:
                    self._set(ERROR, error=e.message)
            return
        if not self.busy() and self.state in (ERROR, NOT_INITIALIZED):
            self._set(INITIALIZED, error="")

    async def _backup(self) -> None:
        repo = self._repository()
        if repo is None:
            self._set(NO_KEY)
            return
        try:  # start_backup showed INITIALIZING or BACKING_UP already, from what it knew
            await restic.run(repo, ["cat", "config"], timeout=CHECK_TIMEOUT)
        except ResticError as e:
            if e.kind != restic.MISSING:
                raise
            self._set(INITIALIZING)
            await restic.run(repo, ["init"], timeout=CHECK_TIMEOUT)
            log.info("restic repository initialized at %s", repo.location)
        self._set(BACKING_UP)
        summary = {}

        def on_line(line: str) -> None:
            try:
                message = json.loads(line)
            except ValueError:
                return
            if not isinstance(message, dict):
                return
            if message.get("message_type") == "status":
                done = message.get("percent_done")
                if isinstance(done, (int, float)):
                    self._set(progress=round(min(max(float(done), 0.0), 1.0), 4))
            elif message.get("message_type") == "summary":
                summary.update(message)

        args = ["backup", "--json", "--exclude", str(self.own_state), str(self.source)]
        # Exit code 3: the snapshot was made, but some files could not be read (logged as a warning).
        await restic.run(repo, args, on_line=on_line, ok=(0, 3))
        log.info("backup finished: snapshot %s, %s files, %s bytes added", summary.get("snapshot_id"),
                 summary.get("total_files_processed"), summary.get("data_added"))
        self._set(progress=1.0)
        try:
            await self._load_snapshots(repo)
        except ResticError as e:
            log.warning("loading the snapshot list after the backup failed: %s", e.message)
        self._set(INITIALIZED)

    async def _restore(self, snapshot: dict) -> None:
        repo = self._repository()
        if repo is None:
            self._set(NO_KEY)
            return
        self._set(RESTORING, 0.0, "")
        paths = snapshot.get("paths") or []
        # Our snapshots hold one path, `var` under the root they were made on (maybe another root).
        origin = next((p for p in paths if os.path.basename(p.rstrip("/")) == "var"), None)
        if origin is None or not os.path.isabs(origin):
            raise ResticError(restic.FAILED, "This snapshot does not hold a var folder to restore")
        staging = str(self.staging)
        await asyncio.to_thread(restore.fresh_folder, staging)  # emptied of what a killed restore left
        try:
            # restic 0.14 restore reports no progress: what it writes is measured against the snapshot's
            # size, asked first (one restic at a time: no second one to stop when the restore ends).
            total = await self._snapshot_size(repo, snapshot)
            watch = asyncio.get_running_loop().create_task(self._watch_restore(staging, total))
            try:
                await restic.run(repo, ["restore", snapshot["id"], "--target", staging])
            finally:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
            self._set(progress=RESTORE_WRITTEN)
            restored = os.path.join(staging, origin.lstrip("/"))
            if os.path.isdir(restored):
                await asyncio.to_thread(restore.merge, restored, str(self.source), {str(self.own_state)})
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        log.info("restore of snapshot %s finished", snapshot["short_id"])
        self._set(INITIALIZED, 1.0)


    async def _snapshot_size(self, repo: Repository, snapshot: dict) -> int:
        """The bytes a restore of the snapshot writes; 0 when restic cannot say (no progress then)."""
        try:
            stats = json.loads(await restic.run(repo, ["stats", "--json", snapshot["id"]], timeout=CHECK_TIMEOUT))
            return int(stats["total_size"])
        except (ResticError, ValueError, KeyError, TypeError):
            return 0

    async def _watch_restore(self, staging: str, total: int) -> None:
        while total > 0:
            written = await asyncio.to_thread(restore.bytes_under, staging)
            self._set(progress=round(min(RESTORE_WRITTEN * written / total, RESTORE_WRITTEN), 3))
            await asyncio.sleep(RESTORE_POLL)
