"""org.selfprivacy.Users1: the server's users (not the master user)."""

from ..contract import USERS
from ..users import Users
from .base import LiveInterface, method, prop
from .rules import USERS_MANAGE, changes


class UsersInterface(LiveInterface):
    NAME = USERS

    def __init__(self, users: Users):
        super().__init__()
        self.users = users

    def source(self):
        return self.users.userdata.read()

    def current(self) -> dict:
        return {"Users": self.users.list()}

    Users = prop("as",
                 doc="Usernames from users[] of userdata.json, in file order (the master user is not one).")

    @method(changes(USERS_MANAGE))
    async def Create(self, username: "s", password: "s"):
        """Add a user with a SHA-512 crypt hash of the password. InvalidArgument for a bad name or
        password, Reserved for a system account name, AlreadyExists for a taken name."""
        await self.users.create(username, password)

    @method(changes(USERS_MANAGE))
    async def Delete(self, username: "s"):
        """Remove a user. InvalidArgument for the master user, NotFound for an unknown one."""
        await self.users.delete(username)
