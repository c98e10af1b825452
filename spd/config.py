"""Daemon configuration: which bus, and the root every file path resolves under."""

import argparse
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Config:
    bus: str
    root: Path
    restic_repository: str | None = None
    idle_timeout: float = 0.0  # seconds without calls before the daemon exits; 0 = never
    gateway_group: str = "selfprivacy-api"  # the group whose members may call what the gateway needs

    def path(self, relative: str) -> Path:
        """A path under the root. `relative` is always one of our own constants, never input."""
        return self.root / relative

    @property
    def userdata(self) -> Path:
        return self.path("etc/nixos/userdata/userdata.json")

    @property
    def legacy_tokens(self) -> Path:
        return self.path("etc/nixos/userdata/tokens.json")

    @property
    def token_store(self) -> Path:
        return self.path("var/lib/spd/tokens.json")


def parse(argv=None) -> Config:
    p = argparse.ArgumentParser(prog="spd", description="SelfPrivacy server daemon")
    p.add_argument("--bus", default=os.environ.get("SPD_BUS", "system"),
                   help="system (default), session, or a D-Bus address [SPD_BUS]")
    p.add_argument("--root", default=os.environ.get("SPD_ROOT", "/"),
                   help="directory every file path resolves under [SPD_ROOT]")
    p.add_argument("--idle-timeout", type=float, default=float(os.environ.get("SPD_IDLE_TIMEOUT", "0")),
                   help="exit after this many idle seconds; 0 never [SPD_IDLE_TIMEOUT]")
    p.add_argument("--gateway-group", default=os.environ.get("SPD_GATEWAY_GROUP", "selfprivacy-api"),
                   help="group of the gateway's user, allowed the calls the gateway needs "
                        "(default selfprivacy-api) [SPD_GATEWAY_GROUP]")
    a = p.parse_args(argv)
    return Config(
        bus=a.bus,
        root=Path(a.root).resolve(),
        restic_repository=os.environ.get("SPD_RESTIC_REPOSITORY") or None,
        idle_timeout=a.idle_timeout,
        gateway_group=a.gateway_group,
    )
