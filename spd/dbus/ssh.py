"""org.selfprivacy.SSH1: sshd settings and who may log in with which key."""

from ..contract import SSH as SSH_INTERFACE
from ..ssh import SSH
from .base import LiveInterface, method, prop, setting
from .rules import SSH_MANAGE, changes


class SSHInterface(LiveInterface):
    NAME = SSH_INTERFACE

    Enable = setting(SSH_MANAGE, "ssh.enable", "b", default=True, arg="enable",
                     doc="Whether sshd runs (ssh.enable; true when unset).",
                     set_doc="Write ssh.enable as given (also when it is absent and true is what its "
                             "absence means).")
    PasswordAuthentication = setting(SSH_MANAGE, "ssh.passwordAuthentication", "b", default=True, arg="enable",
                                     doc="Whether sshd accepts passwords (ssh.passwordAuthentication; "
                                         "true when unset).")

    def __init__(self, ssh: SSH):
        super().__init__()
        self.ssh = ssh
        self.userdata = ssh.userdata

    def current(self) -> dict:
        return {**super().current(), "Keys": self.ssh.all_keys()}

    Keys = prop("a{sas}",
                doc='user -> authorized public keys, one line each: "root" (ssh.rootKeys), the master user '
                    "(top-level sshKeys) and every user of Users1 (users[].sshKeys); [] for none.")

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
