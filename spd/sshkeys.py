"""OpenSSH public keys, parsed rather than pattern-matched.

A key is accepted only as one line `TYPE BASE64 [comment]` whose TYPE is in the allowed list and
whose base64 blob decodes (strictly) to a wire-format key of that same TYPE with well-formed fields.
Anything else — an options prefix such as `command="..."`, a second line, a truncated blob — is
refused. Accepted keys are stored re-serialised as `TYPE BASE64 [comment]`.
"""

import base64
import binascii
import struct
from dataclasses import dataclass

from .errors import InvalidArgument

MAX_LINE = 8192
RSA_MIN_BITS, RSA_MAX_BITS = 2048, 16384

# Short Weierstrass curves y^2 = x^3 - 3x + b (mod p): name -> (p, b, coordinate bytes).
CURVES = {
    "nistp256": (
        2**256 - 2**224 + 2**192 + 2**96 - 1,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
        32,
    ),
    "nistp384": (
        2**384 - 2**128 - 2**96 + 2**32 - 1,
        0xB3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875AC656398D8A2ED19D2A85C8EDD3EC2AEF,
        48,
    ),
    "nistp521": (
        2**521 - 1,
        0x0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF109E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00,
        66,
    ),
}

KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: str  # canonical base64
    comment: str = ""

    def __str__(self) -> str:
        return f"{self.type} {self.blob} {self.comment}" if self.comment else f"{self.type} {self.blob}"

    @property
    def identity(self) -> tuple:
        """What makes two keys the same key (the comment does not)."""
        return self.type, self.blob


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def string(self) -> bytes:
        if self.pos + 4 > len(self.data):
            raise ValueError("truncated")
        (n,) = struct.unpack_from(">I", self.data, self.pos)
        start, self.pos = self.pos + 4, self.pos + 4 + n
        if self.pos > len(self.data):
            raise ValueError("truncated")
        return self.data[start:self.pos]

    def mpint(self) -> int:
        raw = self.string()
        if not raw or raw[0] & 0x80:
            raise ValueError("not a positive integer")
        if len(raw) > 1 and raw[0] == 0 and not raw[1] & 0x80:
            raise ValueError("integer with a needless leading zero")
        return int.from_bytes(raw, "big")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ValueError("trailing bytes")


def _check_point(curve: str, point: bytes) -> None:
    p, b, size = CURVES[curve]
    if len(point) != 1 + 2 * size or point[0] != 4:
        raise ValueError("not an uncompressed point")
    x = int.from_bytes(point[1:1 + size], "big")
    y = int.from_bytes(point[1 + size:], "big")
    if not (x < p and y < p) or (y * y - (x * x * x - 3 * x + b)) % p:
        raise ValueError("point not on the curve")


def _check_blob(key_type: str, blob: bytes) -> None:
    r = _Reader(blob)
    if r.string() != key_type.encode():
        raise ValueError("the blob holds a different key type")
    if key_type in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        if len(r.string()) != 32:
            raise ValueError("wrong ed25519 key length")
    elif key_type == "ssh-rsa":
        e, n = r.mpint(), r.mpint()
        if e < 3 or not e & 1:
            raise ValueError("bad RSA exponent")
        if not RSA_MIN_BITS <= n.bit_length() <= RSA_MAX_BITS:
            raise ValueError("RSA key size")
    else:  # ecdsa-sha2-<curve> and sk-ecdsa-sha2-nistp256@openssh.com
        curve = key_type.split("@")[0].rsplit("-", 1)[1]
        if r.string() != curve.encode():
            raise ValueError("curve name does not match the key type")
        _check_point(curve, r.string())
    if key_type.startswith("sk-"):
        application = r.string()
        if not application:
            raise ValueError("no application")
        application.decode("utf-8")
    r.end()


def parse(text: str) -> PublicKey:
    """The key in `text`, or InvalidArgument saying what is wrong (never echoing the input)."""
    if not isinstance(text, str) or len(text) > MAX_LINE:
        raise InvalidArgument("The public key is too long")
    if any(c in text for c in "\r\n\0\x85\u2028\u2029"):  # the last three: Unicode line breaks
        raise InvalidArgument("The public key must be a single line")
    if any(ord(c) < 0x20 and c != "\t" or 0x7F <= ord(c) <= 0x9F for c in text):  # C0, DEL, C1
        raise InvalidArgument("The public key contains control characters")
    parts = text.strip(" \t").split(None, 2)
    if len(parts) < 2:
        raise InvalidArgument("The public key must be 'TYPE BASE64 [comment]'")
    key_type, b64 = parts[0], parts[1]
    comment = parts[2].strip(" \t") if len(parts) == 3 else ""
    if key_type not in KEY_TYPES:
        raise InvalidArgument("The public key must start with its type (no options before it), one of "
                              + ", ".join(KEY_TYPES))
    try:
        blob = base64.b64decode(b64, validate=True)
        if base64.b64encode(blob).decode() != b64:
            raise ValueError("non-canonical base64")
        _check_blob(key_type, blob)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(f"The public key is not a valid {key_type} key") from None
    return PublicKey(key_type, b64, comment)


def identity(stored: str):
    """What a stored entry is compared by: the key material when it parses, else its exact text
    (so an old, malformed entry can still be found and removed)."""
    try:
        return parse(stored).identity
    except InvalidArgument:
        return stored
