"""Shared by the benchmarks: the test stack's processes, and wrk with its numbers parsed."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))


def wrk(url: str, seconds: float, connections: int = 16, threads: int = 2, script: Path | None = None,
        token: str | None = None) -> dict:
    """Run wrk; returns req/s, request count, p50 and p99 in ms, non-2xx/3xx answers, socket errors."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    if script:
        argv += ["-s", str(script)]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: (.*)$", out, re.M)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50": _ms(latency["50"]), "p99": _ms(latency["99"]),
            "errors": int(errors.group(1)) if errors else 0,
            "socket": sockets.group(1) if sockets else ""}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def bare_sanic(work: Path):
    """The reference server of bench/bare.py as a process; returns (process, its URL)."""
    from stack import PYTHON, Process, _wait, free_port
    import httpx

    port = free_port()
    process = Process("bare", [PYTHON, str(REPO / "bench" / "bare.py"), "--port", str(port)], work / "bare.log")
    url = f"http://127.0.0.1:{port}/"

    def answers():
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    _wait(answers, "the bare Sanic handler to answer", process)
    return process, url
