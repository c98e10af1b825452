"""org.selfprivacy.SSH1: sshd settings (properties that emit PropertiesChanged) and SSH keys."""

from dbus_fast import Variant
from dbus_fast.service import ServiceInterface, dbus_property

from ..errors import InvalidArgument
from ..ssh import SSH
from .base import errors_mapped, method
from .names import SSH as SSH_INTERFACE

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

    @dbus_property()
    @errors_mapped
    def Enable(self) -> "b":
        """Whether sshd runs (ssh.enable; true when unset)."""
        return self.ssh.settings()["enable"]

    @Enable.setter
    @errors_mapped
    async def Enable(self, value: "b"):
        await self._set({"enable": value})

    @dbus_property()
    @errors_mapped
    def PasswordAuthentication(self) -> "b":
        """Whether sshd accepts passwords (ssh.passwordAuthentication; true when unset)."""
        return self.ssh.settings()["passwordAuthentication"]

    @PasswordAuthentication.setter
    @errors_mapped
    async def PasswordAuthentication(self, value: "b"):
        await self._set({"passwordAuthentication": value})

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
