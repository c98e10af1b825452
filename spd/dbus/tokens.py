"""org.selfprivacy.Tokens1: API tokens for the app's devices."""

import asyncio
from datetime import datetime, timezone

from dbus_fast.service import dbus_signal

from ..contract import TOKENS
from ..errors import SpdError
from ..token_records import parse_date
from ..tokens import Tokens
from .base import LiveInterface, method, prop
from .rules import TOKENS_MANAGE, changes, reads


class TokensInterface(LiveInterface):
    NAME = TOKENS

    def __init__(self, tokens: Tokens):
        super().__init__()
        self.tokens = tokens
        self._expiry = None  # the timer that refreshes Recovery when its token expires
        self._timed = None  # the Recovery value that timer is for
        self._tokens = None  # the store's device tokens as last signalled

    def start(self) -> None:
        """Signal through the store's commit hook, as every store does (userdata's in spd/main.py)."""
        self._tokens = self._device_tokens()
        self.tokens.store.on_commit.subscribe(self._committed)

    def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()

    def source(self):  # Recovery's `valid` also depends on the time: its timer refreshes then
        return self.tokens.store.read()

    def current(self) -> dict:
        return {"Devices": [list(t) for t in self.tokens.list()],
                "Recovery": list(self.tokens.recovery_status())}

    def refresh(self) -> None:
        super().refresh()
        recovery = self._published.get("Recovery")
        if recovery != self._timed:
            self._timed = recovery
            self._watch_expiry(recovery)

    def _watch_expiry(self, recovery) -> None:
        """Recovery's `valid` turns false when its expiration passes: signal that moment too."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if not recovery or not recovery[1] or not recovery[3]:
            return
        left = (parse_date(recovery[3]) - datetime.now(timezone.utc)).total_seconds()
        self._expiry = asyncio.get_running_loop().call_later(max(left, 0) + 0.05, self.refresh)

    @dbus_signal()
    def Changed(self):
        """Device tokens were added, replaced or removed: drop any cached authentication."""

    Devices = prop("a(ss)", reads(TOKENS_MANAGE),
                   doc="(device name, creation date) of every device token, in creation order. Dates are "
                       "ISO-8601 in UTC ending in Z.")
    Recovery = prop("(bbssi)", reads(TOKENS_MANAGE),
                    doc='The recovery token: (exists, valid now, creation date, expiration date or "" for '
                        'never, uses left or -1 for unlimited). No token: (false, false, "", "", -1).')

    @method(reads(TOKENS_MANAGE))
    def Authenticate(self, token: "s") -> "s":
        """The device name behind a token; NotFound when the token is not valid."""
        return self.tokens.authenticate(token)

    @method(changes(TOKENS_MANAGE))
    async def Refresh(self, token: "s") -> "s":
        """Replace a token with a new one for the same device."""
        return await self.tokens.refresh(token)

    @method(changes(TOKENS_MANAGE))
    async def Delete(self, name: "s"):
        """Delete a device's token. NotFound for an unknown device name."""
        await self.tokens.delete(name)

    @method(changes(TOKENS_MANAGE))
    async def CreateNewDevice(self) -> "s":
        """A 12-word mnemonic that authorizes one new device within 10 minutes."""
        return await self.tokens.new_device_create()

    @method(changes(TOKENS_MANAGE))
    async def ForgetNewDevice(self):
        """Forget the pending new-device mnemonic."""
        await self.tokens.new_device_forget()

    @method(changes(TOKENS_MANAGE))
    async def AuthorizeNewDevice(self, words: "s", device: "s") -> "s":
        """A device token for the new-device mnemonic's words. NotFound for wrong, expired or used
        words."""
        return await self.tokens.new_device_redeem(words, device)

    @method(changes(TOKENS_MANAGE))
    async def CreateRecovery(self, expiration: "s", uses: "i") -> "s":
        """An 18-word recovery mnemonic. expiration: ISO-8601 or "" for never; uses: 0 unlimited."""
        return await self.tokens.recovery_create(expiration, uses)

    @method(changes(TOKENS_MANAGE))
    async def UseRecovery(self, words: "s", device: "s") -> "s":
        """A device token for the recovery mnemonic's words; uses one of its uses."""
        return await self.tokens.recovery_redeem(words, device)

    def _device_tokens(self):
        try:
            return self.tokens.store.read()["tokens"]
        except SpdError:  # unreadable: a commit that makes it readable again signals
            return None

    def _committed(self) -> None:
        """After each commit of the store, before its callers reply: Changed when device tokens were
        added, replaced or removed (for caches of authentication), then the properties."""
        tokens = self._device_tokens()
        if tokens != self._tokens:
            self._tokens = tokens
            self.Changed()
        self.refresh()
