"""org.selfprivacy.SSH1: sshd settings (properties that emit PropertiesChanged) and SSH keys."""

from dbus_fast import DBusError, Variant
from dbus_fast.service import ServiceInterface, dbus_property

from ..errors import InvalidArgument, SpdError
from ..ssh import SSH
from .base import method
from .names import SSH as SSH_INTERFACE, error_name

# D-Bus property name <-> userdata.json field
PROPERTIES = {"Enable": "enable", "PasswordAuthentication": "passwordAuthentication"}
FIELDS = {v: k for k, v in PROPERTIES.items()}


class SSHInterface(ServiceInterface):
    def __init__(self, ssh: SSH):
        super().__init__(SSH_INTERFACE)
        self.ssh = ssh

    async def _set(self, changes: dict) -> None:
        changed = await self.ssh.configure(changes)
        if changed:
            self.emit_properties_changed({FIELDS[k]: v for k, v in changed.items()})

    # Property accessors are not wrapped by @method: map domain errors here.
    def _get_property(self, field: str) -> bool:
        try:
            return self.ssh.settings()[field]
        except SpdError as e:
            raise DBusError(error_name(e.kind), e.message) from None

    async def _set_property(self, field: str, value: bool) -> None:
        try:
            await self._set({field: value})
        except SpdError as e:
            raise DBusError(error_name(e.kind), e.message) from None

    @dbus_property()
    def Enable(self) -> "b":
        """Whether sshd runs (ssh.enable; true when unset)."""
        return self._get_property("enable")

    @Enable.setter
    async def Enable(self, value: "b"):
        await self._set_property("enable", value)

    @dbus_property()
    def PasswordAuthentication(self) -> "b":
        """Whether sshd accepts passwords (ssh.passwordAuthentication; true when unset)."""
        return self._get_property("passwordAuthentication")

    @PasswordAuthentication.setter
    async def PasswordAuthentication(self, value: "b"):
        await self._set_property("passwordAuthentication", value)

    @method()
    async def Configure(self, settings: "a{sv}"):
        """Set several properties in one call ({"Enable": <b>, "PasswordAuthentication": <b>}, any
        subset); PropertiesChanged lists those that really changed."""
        changes = {}
        for name, value in settings.items():
            if name not in PROPERTIES:
                raise InvalidArgument(f"Unknown SSH setting {name[:64]!r}")
            if not isinstance(value, Variant) or value.signature != "b":
                raise InvalidArgument(f"{name} must be a boolean")
            changes[PROPERTIES[name]] = value.value
        await self._set(changes)

    @method()
    def ListKeys(self, user: "s") -> "as":
        """root's keys, the master user's or another user's. NotFound for an unknown user."""
        return self.ssh.keys(user)

    @method()
    async def AddRootKey(self, key: "s"):
        """Authorize a key for root. InvalidArgument for anything but one valid public key,
        AlreadyExists when the key is there."""
        await self.ssh.add_root_key(key)

    @method()
    async def AddKey(self, user: "s", key: "s"):
        """Authorize a key for a user (not root: use AddRootKey)."""
        await self.ssh.add_key(user, key)

    @method()
    async def RemoveKey(self, user: "s", key: "s"):
        """Remove a key (matched by its key material, whatever the comment). NotFound for an
        unknown user or key."""
        await self.ssh.remove_key(user, key)
