"""`spdctl status` wall time, as a person types it: a cold daemon (not running: the first call starts it
by D-Bus activation, as the shipped activation file does) and a warm one (already running). The
reference, measured in the same run, is the same interpreter starting and importing what spdctl
imports, then exiting: what is left is D-Bus and the daemon. systemd and logind are python-dbusmock
stand-ins (status shows the services' state, which asks systemd).

    "$(scripts/venv)"/bin/python bench/spdctl.py [--runs N]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from coldstart import daemon_pid  # noqa: E402
from deploy_helpers import activation_file  # noqa: E402
from stack import PYTHON, Bus, env_for_children, make_root  # noqa: E402
from systemd_helpers import LogindMock, demo_systemd  # noqa: E402



def timed(argv, env) -> float:
    started = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if r.returncode != 0:
        raise RuntimeError(f"{argv}: {r.stderr}")
    return elapsed


def stop_daemon(bus) -> None:
    pid = daemon_pid(bus)
    if pid:
        subprocess.run(["kill", "-TERM", str(pid)])
        while daemon_pid(bus):
            time.sleep(0.02)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spd-spdctl-"))
    root = make_root(work / "root")
    bus = Bus(work / "bus", servicedir=work / "services")  # open: the mocks own systemd's names
    activation_file(work / "services", root)
    mocks = [demo_systemd(bus, work), LogindMock(bus, work)]
    env = env_for_children(SPD_BUS=bus.address)
    status = [PYTHON, "-m", "spdctl", "status"]
    reference = [PYTHON, "-c", "import spdctl.main, spdctl.commands"]
    cold, warm, ref = [], [], []
    try:
        for _ in range(a.runs):
            stop_daemon(bus)
            cold.append(timed(status, env))
            warm.append(timed(status, env))
            ref.append(timed(reference, env))
    finally:
        stop_daemon(bus)
        for m in mocks:
            m.stop()
        bus.stop()
    med = statistics.median
    print(f"spdctl status, cold daemon: median {med(cold) * 1000:.0f} ms ({a.runs} runs)")
    print(f"spdctl status, warm daemon: median {med(warm) * 1000:.0f} ms")
    print(f"reference (start python, import spdctl, exit): median {med(ref) * 1000:.0f} ms")
    print(f"ratios to the reference: cold {med(cold) / med(ref):.1f}x, warm {med(warm) / med(ref):.1f}x")


if __name__ == "__main__":
    main()
