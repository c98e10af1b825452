"""org.selfprivacy.Backups1: restic backups of `var`, with the state machine's state, progress, error
message and snapshot list as properties that emit PropertiesChanged while work runs (`busctl monitor`
follows a backup)."""

import json

from dbus_fast import Variant

from ..backups import Backups
from ..contract import BACKUPS
from .base import LiveInterface, method, prop
from .rules import BACKUPS_MANAGE, changes


class BackupsInterface(LiveInterface):
    NAME = BACKUPS

    def __init__(self, backups: Backups):
        super().__init__()
        self.backups = backups
        self._snapshots = (None, [])  # (the domain's list, its D-Bus form): converted once per list

    def start(self) -> None:
        """Signal every change of the backups, then look at the repository (in the background)."""
        self.backups.on_change.subscribe(self.refresh)
        self.backups.start()

    def stop(self) -> None:
        self.backups.stop()

    def busy(self) -> bool:
        return self.backups.busy()

    def current(self) -> dict:
        source, converted = self._snapshots
        if source is not self.backups.snapshots:
            source = self.backups.snapshots
            converted = [{k: _variant(v) for k, v in s.items()} for s in source]
            self._snapshots = (source, converted)
        return {"State": self.backups.state, "Progress": self.backups.progress,
                "ErrorMessage": self.backups.error_message, "Snapshots": converted}

    State = prop("s",
                 doc="NO_KEY, NOT_INITIALIZED, INITIALIZING, INITIALIZED, BACKING_UP, RESTORING or ERROR.")
    Progress = prop("d", doc="0.0 to 1.0 of the running (or last) backup or restore.")
    ErrorMessage = prop("s", doc='Why the last operation failed ("" when it did not).')
    Snapshots = prop("aa{sv}",
                     doc="The snapshots as last loaded (at start, after each backup, on Reload), oldest "
                         "first, each with restic's fields: short_id, id, time, parent, tree, hostname, "
                         "username, program_version as s; paths, tags, excludes as as; uid, gid as x; "
                         "anything else as s holding its JSON.")

    @method(changes(BACKUPS_MANAGE))
    def Reload(self):
        """Reload the snapshot list in the background."""
        self.backups.reload()

    @method(changes(BACKUPS_MANAGE))
    def StartBackup(self):
        """Start a backup (initializing the repository first when needed). NotReady without a key or
        while the repository is being initialized; Busy while a backup or restore runs."""
        self.backups.start_backup()

    @method(changes(BACKUPS_MANAGE))
    def StartRestore(self, snapshot_id: "s"):
        """Start restoring a snapshot (short or full id) into var. NotFound for an unknown id."""
        self.backups.start_restore(snapshot_id)

    @method(changes(BACKUPS_MANAGE))
    async def SetBackblazeConfig(self, account_id: "s", account_key: "s", bucket: "s"):
        """Store the Backblaze B2 credentials in userdata and look at the repository again."""
        await self.backups.set_backblaze(account_id, account_key, bucket)


def _variant(value) -> Variant:
    """restic's JSON values as D-Bus variants; anything unusual travels as its JSON text."""
    if isinstance(value, bool):
        return Variant("b", value)
    if isinstance(value, int) and -2**63 <= value < 2**63:
        return Variant("x", value)
    if isinstance(value, float):
        return Variant("d", value)
    if isinstance(value, str):
        return Variant("s", value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return Variant("as", value)
    return Variant("s", json.dumps(value))
