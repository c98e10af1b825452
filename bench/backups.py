"""Backups through spd vs restic alone, and how the API answers while a backup runs.

    "$(scripts/venv)"/bin/python bench/backups.py [--mb 128]

Prints: restic alone (init + backup), the same through PUT /services/restic/backup/create until the
status says INITIALIZED, a restore through the API, and the latency of GET /services/restic/backup/status
and GET /auth/tokens when idle and while a backup runs (the daemon is one asyncio thread; restic is its
child). Numbers are noisy on a shared machine.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from stack import TOKEN, Bus, Daemon, Gateway, make_root  # noqa: E402

PASSWORD = "DEMO-RESTIC-PASSWORD"


def fill(folder: Path, megabytes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(megabytes):
        (folder / f"blob{i}.bin").write_bytes(os.urandom(1 << 20))


def restic_alone(repo: Path, source: Path, cache: Path) -> float:
    env = {"PATH": os.environ["PATH"], "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD,
           "XDG_CACHE_HOME": str(cache)}
    t = time.perf_counter()
    subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
    subprocess.run(["restic", "backup", "--json", str(source)], env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def until(api, state: str) -> None:
    while (s := api.get("/services/restic/backup/status").json())["status"] != state:
        if s["status"] == "ERROR":
            raise SystemExit(f"backup failed: {s}")
        time.sleep(0.02)


def latencies(api, path: str, stop: threading.Event | None, count: int = 200) -> list[float]:
    out = []
    while len(out) < count and not (stop and stop.is_set()):
        t = time.perf_counter()
        assert api.get(path).status_code == 200
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    return (f"n={len(ms):4d} p50={statistics.median(ms):6.2f} ms "
            f"p99={ms[min(len(ms) - 1, int(len(ms) * 0.99))]:6.2f} ms max={ms[-1]:6.2f} ms")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=int, default=128, help="megabytes of random files to back up")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spd-bench-backups-"))
    try:
        root = make_root(work / "root")
        fill(root / "var" / "lib" / "data", a.mb)
        alone = restic_alone(work / "alone-repo", root / "var", work / "cache")
        bus = Bus(work / "bus")
        daemon = Daemon(bus, root, work, env={"SPD_RESTIC_REPOSITORY": work / "repo",
                                              "XDG_CACHE_HOME": work / "cache"})
        gateway = Gateway(bus, work)
        api = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        try:
            until(api, "NOT_INITIALIZED")
            t = time.perf_counter()
            api.put("/services/restic/backup/create").raise_for_status()
            until(api, "INITIALIZED")
            through = time.perf_counter() - t

            idle_status = latencies(api, "/services/restic/backup/status", None)
            idle_tokens = latencies(api, "/auth/tokens", None)
            fill(root / "var" / "lib" / "more", a.mb)  # new data: the second backup has real work
            api.put("/services/restic/backup/create").raise_for_status()
            busy_status = latencies(api, "/services/restic/backup/status", None, 100)
            busy_tokens = latencies(api, "/auth/tokens", None, 100)
            still_running = api.get("/services/restic/backup/status").json()["status"] == "BACKING_UP"
            until(api, "INITIALIZED")

            shutil.rmtree(root / "var" / "lib" / "data")
            snap = api.get("/services/restic/backup/list").json()[0]["short_id"]
            t = time.perf_counter()
            api.put("/services/restic/backup/restore", json={"backupId": snap}).raise_for_status()
            while api.get("/services/restic/backup/status").json()["status"] != "INITIALIZED":
                time.sleep(0.02)
            restore = time.perf_counter() - t
        finally:
            api.close()
            gateway.stop()
            daemon.stop()
            bus.stop()
        print(f"{a.mb} MB of random files (2 shared cores: noisy)")
        print(f"  restic alone, init + backup:           {alone:6.2f} s")
        print(f"  through spd, create -> INITIALIZED:    {through:6.2f} s")
        print(f"  restore through spd:                   {restore:6.2f} s")
        print(f"  GET status idle:                       {summary(idle_status)}")
        print(f"  GET status during a backup:            {summary(busy_status)}")
        print(f"  GET /auth/tokens idle:                 {summary(idle_tokens)}")
        print(f"  GET /auth/tokens during a backup:      {summary(busy_tokens)}"
              f"{'' if still_running else '  (the backup ended before the sampling did)'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
