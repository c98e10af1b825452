"""org.selfprivacy.Tokens1: API tokens for the app's devices."""

from dbus_fast.service import ServiceInterface, dbus_signal

from ..tokens import Tokens
from .base import method
from .names import TOKENS


class TokensInterface(ServiceInterface):
    def __init__(self, tokens: Tokens):
        super().__init__(TOKENS)
        self.tokens = tokens

    @dbus_signal()
    def Changed(self):
        """Device tokens were added, replaced or removed: drop any cached authentication."""

    @method()
    def Authenticate(self, token: "s") -> "s":
        """The device name behind a token; NotFound when the token is not valid."""
        return self.tokens.authenticate(token)

    @method()
    def List(self) -> "a(ss)":
        """(device name, creation date) of every device token."""
        return [list(t) for t in self.tokens.list()]

    @method()
    async def Refresh(self, token: "s") -> "s":
        """Replace a token with a new one for the same device."""
        new = await self.tokens.refresh(token)
        self.Changed()
        return new

    @method()
    async def Delete(self, name: "s"):
        await self.tokens.delete(name)
        self.Changed()

    @method()
    async def CreateNewDevice(self) -> "s":
        """A 12-word mnemonic that authorizes one new device within 10 minutes."""
        return await self.tokens.new_device_create()

    @method()
    async def ForgetNewDevice(self):
        await self.tokens.new_device_forget()

    @method()
    async def AuthorizeNewDevice(self, words: "s", device: "s") -> "s":
        token = await self.tokens.new_device_redeem(words, device)
        self.Changed()
        return token

    @method()
    def GetRecoveryStatus(self) -> "bbssi":
        """exists, valid, date, expiration ("" = never), uses left (-1 = unlimited or none)."""
        return list(self.tokens.recovery_status())

    @method()
    async def CreateRecovery(self, expiration: "s", uses: "i") -> "s":
        """An 18-word recovery mnemonic. expiration: ISO-8601 or "" for never; uses: 0 unlimited."""
        return await self.tokens.recovery_create(expiration, uses)

    @method()
    async def UseRecovery(self, words: "s", device: "s") -> "s":
        token = await self.tokens.recovery_redeem(words, device)
        self.Changed()
        return token
