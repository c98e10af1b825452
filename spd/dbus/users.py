"""org.selfprivacy.Users1: the server's users (not the master user)."""

from dbus_fast.service import ServiceInterface

from ..users import Users
from .base import method
from .names import USERS


class UsersInterface(ServiceInterface):
    def __init__(self, users: Users):
        super().__init__(USERS)
        self.users = users

    @method()
    def List(self) -> "as":
        """Usernames from users[] of userdata.json."""
        return self.users.list()

    @method()
    async def Create(self, username: "s", password: "s"):
        """Add a user with a SHA-512 crypt hash of the password. InvalidArgument for a bad name or
        password, Reserved for a system account name, AlreadyExists for a taken name."""
        await self.users.create(username, password)

    @method()
    async def Delete(self, username: "s"):
        """Remove a user. InvalidArgument for the master user, NotFound for an unknown one."""
        await self.users.delete(username)
