"""SSH public keys for the tests: built from wire-format blobs in Python (fast, any number of them)
or made by ssh-keygen (the real thing, for every type it can make without a security key)."""

import base64
import functools
import os
import struct
import subprocess
import tempfile
from pathlib import Path


def string(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def mpint(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return string(b"\0" + raw if raw[0] & 0x80 else raw)  # positive: no sign bit set


def line(key_type: str, blob: bytes, comment: str = "") -> str:
    text = f"{key_type} {base64.b64encode(blob).decode()}"
    return f"{text} {comment}" if comment else text


def ed25519(comment: str = "") -> str:
    """A fresh ed25519 public key (any 32 bytes are a well-formed one)."""
    return line("ssh-ed25519", string(b"ssh-ed25519") + string(os.urandom(32)), comment)


def rsa(bits: int, comment: str = "") -> str:
    """An RSA public key with a modulus of exactly `bits` bits (never used to verify anything)."""
    n = int.from_bytes(os.urandom(bits // 8), "big") | (1 << (bits - 1)) | 1
    return line("ssh-rsa", string(b"ssh-rsa") + mpint(65537) + mpint(n), comment)


def sk_ed25519(comment: str = "") -> str:
    t = b"sk-ssh-ed25519@openssh.com"
    return line(t.decode(), string(t) + string(os.urandom(32)) + string(b"ssh:"), comment)


def blob(key: str) -> bytes:
    return base64.b64decode(key.split()[1])


@functools.lru_cache(maxsize=None)
def keygen(key_type: str, bits: int | None = None) -> str:
    """A public key made by ssh-keygen, e.g. keygen("ecdsa", 384)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "key"
        argv = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", f"test {key_type}", "-f", str(path)]
        if bits:
            argv[4:4] = ["-b", str(bits)]
        subprocess.run(argv, check=True, capture_output=True)
        return path.with_suffix(".pub").read_text().strip()


def sk_ecdsa(comment: str = "") -> str:
    """An sk-ecdsa key around the (valid) point of an ssh-keygen nistp256 key."""
    b = blob(keygen("ecdsa", 256))
    # string "ecdsa-sha2-nistp256", string "nistp256", string point
    point = b[4 + 19 + 4 + 8 + 4:]
    t = b"sk-ecdsa-sha2-nistp256@openssh.com"
    return line(t.decode(), string(t) + string(b"nistp256") + string(point) + string(b"ssh:"), comment)
