"""One token record of the token store: its digest, its dates, its uses, its name. Shared by the
store (spd/tokens.py) and the one-time import of the 1.2 server's tokens (spd/legacy_tokens.py)."""

import hashlib
import hmac
import re
from datetime import datetime, timezone

MAX_NAME = 255


def digest(secret: bytes) -> str:
    """What the store keeps of a secret."""
    return hashlib.sha256(secret).hexdigest()


def now() -> datetime:
    return datetime.now(timezone.utc)


def format_date(when: datetime) -> str:
    """ISO-8601 in UTC with a Z, which Dart's DateTime.parse reads."""
    return when.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_date(text: str) -> datetime:
    """An ISO-8601 date-time; a naive one is taken as UTC."""
    when = datetime.fromisoformat(text.strip())
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def find(entries, digest: str):
    """The entry whose hash matches, comparing with every entry in constant time."""
    found = None
    for entry in entries:
        if hmac.compare_digest(entry["hash"], digest):
            found = entry
    return found


def uses_left(rec) -> bool:
    """Whether a pending mnemonic may be used again: no count (None: a new-device mnemonic, or an
    unlimited recovery token) or a count above zero. Anything
    else (0, negative or not a number, e.g. from an imported 1.2 file) means no."""
    uses = rec.get("uses_left")
    return uses is None or (isinstance(uses, int) and not isinstance(uses, bool) and uses > 0)


def unique_name(device: str, tokens) -> str:
    """`device` made a name of letters, digits and _, unique among `tokens`."""
    base = re.sub(r"[^a-zA-Z0-9]", "_", device)[:MAX_NAME] or "device"
    names = {t["name"] for t in tokens}
    name, n = base, 1
    while name in names:
        n += 1
        name = f"{base}_{n}"
    return name
