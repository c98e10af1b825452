"""Shared by the benchmarks: start a stack on a private bus, run wrk, read its numbers."""

import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from stack import TOKEN, Bus, Daemon, Gateway, make_root  # noqa: E402,F401


@contextmanager
def stack(daemon_env=None):
    """(bus, root, daemon, gateway) on a fresh demo root; stopped on exit."""
    work = Path(tempfile.mkdtemp(prefix="spd-bench-"))
    bus = Bus(work / "bus")
    root = make_root(work / "root")
    daemon = Daemon(bus, root, work, env=daemon_env)
    gateway = Gateway(bus, work)
    try:
        yield bus, root, daemon, gateway
    finally:
        gateway.stop()
        daemon.stop()
        bus.stop()


def wrk(url: str, connections: int = 16, seconds: int = 10, script: str | None = None,
        token: str | None = TOKEN) -> dict:
    """Run wrk and return req/s, p50 and p99 (ms), and the count of non-2xx/3xx answers."""
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    if script:
        argv += ["-s", script]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _ms(re.search(r"50%\s+(\S+)", out).group(1)),
            "p99": _ms(re.search(r"99%\s+(\S+)", out).group(1)),
            "errors": int(errors.group(1)) if errors else 0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def row(name: str, r: dict) -> str:
    return f"{name:<40} {r['rps']:>10.0f} req/s   p50 {r['p50']:6.2f} ms   p99 {r['p99']:6.2f} ms" + (
        f"   ({r['errors']} errors)" if r["errors"] else "")
