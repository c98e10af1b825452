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
    def Refresh(self, token: "s") -> "s":
        """Replace a token with a new one for the same device."""
        new = self.tokens.refresh(token)
        self.Changed()
        return new

    @method()
    def Delete(self, name: "s"):
        self.tokens.delete(name)
        self.Changed()

    @method()
    def CreateNewDevice(self) -> "s":
        """A 12-word mnemonic that authorizes one new device within 10 minutes."""
        return self.tokens.new_device_create()

    @method()
    def ForgetNewDevice(self):
        self.tokens.new_device_forget()

    @method()
    def AuthorizeNewDevice(self, words: "s", device: "s") -> "s":
        token = self.tokens.new_device_redeem(words, device)
        self.Changed()
        return token

    @method()
    def GetRecoveryStatus(self) -> "bbssi":
        """exists, valid, date, expiration ("" = never), uses left (-1 = unlimited or none)."""
        return list(self.tokens.recovery_status())

    @method()
    def CreateRecovery(self, expiration: "s", uses: "i") -> "s":
        """An 18-word recovery mnemonic. expiration: ISO-8601 or "" for never; uses: 0 unlimited."""
        return self.tokens.recovery_create(expiration, uses)

    @method()
    def UseRecovery(self, words: "s", device: "s") -> "s":
        token = self.tokens.recovery_redeem(words, device)
        self.Changed()
        return token
