"""org.selfprivacy.Backups1: restic backups of `var`, with the state machine's state, progress and error
message as properties that emit PropertiesChanged while work runs (`busctl monitor` follows a backup)."""

import json

from dbus_fast import Variant
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property

from ..backups import Backups
from .base import method
from .names import BACKUPS

# Domain field -> D-Bus property.
PROPERTIES = {"state": "State", "progress": "Progress", "error_message": "ErrorMessage"}


class BackupsInterface(ServiceInterface):
    def __init__(self, backups: Backups):
        super().__init__(BACKUPS)
        self.backups = backups
        backups.on_change = self._changed
        backups.start()  # looks at the repository in the background, reporting through _changed

    def busy(self) -> bool:
        return self.backups.busy()

    def _changed(self, fields: dict) -> None:
        self.emit_properties_changed({PROPERTIES[k]: v for k, v in fields.items()})

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> "s":
        """NO_KEY, NOT_INITIALIZED, INITIALIZING, INITIALIZED, BACKING_UP, RESTORING or ERROR."""
        return self.backups.state

    @dbus_property(access=PropertyAccess.READ)
    def Progress(self) -> "d":
        """0.0 to 1.0 of the running (or last) backup or restore."""
        return self.backups.progress

    @dbus_property(access=PropertyAccess.READ)
    def ErrorMessage(self) -> "s":
        """Why the last operation failed ("" when it did not)."""
        return self.backups.error_message

    @method()
    def GetStatus(self) -> "sds":
        """State, progress and error message in one call."""
        return list(self.backups.status())

    @method()
    def ListSnapshots(self) -> "aa{sv}":
        """The snapshots as last loaded, with restic's fields (short_id, id, time, paths, ...)."""
        return [{k: _variant(v) for k, v in s.items()} for s in self.backups.list()]

    @method()
    def Reload(self):
        """Reload the snapshot list in the background."""
        self.backups.reload()

    @method()
    def StartBackup(self):
        """Start a backup (initializing the repository first when needed). NotReady without a key or
        while the repository is being initialized; Busy while a backup or restore runs."""
        self.backups.start_backup()

    @method()
    def StartRestore(self, snapshot_id: "s"):
        """Start restoring a snapshot (short or full id) into var. NotFound for an unknown id."""
        self.backups.start_restore(snapshot_id)

    @method()
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
