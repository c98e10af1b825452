"""org.selfprivacy.SSH1: sshd settings and who may log in with which key."""

from ..ssh import SSH
from .base import LiveInterface, method, prop
from .names import SSH as SSH_INTERFACE
from .rules import SSH_MANAGE, changes


class SSHInterface(LiveInterface):
    NAME = SSH_INTERFACE

    def __init__(self, ssh: SSH):
        super().__init__()
        self.ssh = ssh

    def source(self):
        return self.ssh.userdata.read()

    def current(self) -> dict:
        settings = self.ssh.settings()
        return {"Enable": settings["enable"],
                "PasswordAuthentication": settings["passwordAuthentication"],
                "Keys": self.ssh.all_keys()}

    @prop()
    def Enable(self) -> "b":
        """Whether sshd runs (ssh.enable; true when unset)."""
        return self.value("Enable")

    @prop()
    def PasswordAuthentication(self) -> "b":
        """Whether sshd accepts passwords (ssh.passwordAuthentication; true when unset)."""
        return self.value("PasswordAuthentication")

    @prop()
    def Keys(self) -> "a{sas}":
        """user -> authorized public keys, one line each: "root" (ssh.rootKeys), the master user
        (top-level sshKeys) and every user of Users1 (users[].sshKeys); [] for none."""
        return self.value("Keys")

    @method(changes(SSH_MANAGE))
    async def SetEnable(self, enable: "b"):
        """Write ssh.enable as given (also when it is absent and true is what its absence means)."""
        await self.ssh.set("enable", enable)

    @method(changes(SSH_MANAGE))
    async def SetPasswordAuthentication(self, enable: "b"):
        """Write ssh.passwordAuthentication as given."""
        await self.ssh.set("passwordAuthentication", enable)

    @method(changes(SSH_MANAGE))
    async def AddRootKey(self, key: "s"):
        """Authorize a key for root. InvalidArgument for anything but one valid public key,
        AlreadyExists when the key is there."""
        await self.ssh.add_root_key(key)

    @method(changes(SSH_MANAGE))
    async def AddKey(self, user: "s", key: "s"):
        """Authorize a key for a user (not root: use AddRootKey)."""
        await self.ssh.add_key(user, key)

    @method(changes(SSH_MANAGE))
    async def RemoveKey(self, user: "s", key: "s"):
        """Remove a key (matched by its key material, whatever the comment). NotFound for an
        unknown user or key."""
        await self.ssh.remove_key(user, key)
