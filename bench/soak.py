"""The soak: 32 clients of mixed reads and writes through the gateway for 5 minutes while spd is
SIGKILLed every 15 s and D-Bus activation starts it again. Prints the answers by status, the writes
answered 2xx and whether each is on disk at the end, and the gateway's RSS; exits 1 on a failure.

    "$(scripts/venv)"/bin/python bench/soak.py [--seconds 300] [--clients 32] [--kill-every 15]
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from soak_helpers import report, soak  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--kill-every", type=float, default=15)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spd-soak-"))
    try:
        result = soak(work, a.seconds, a.clients, a.kill_every)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report(result))
    sys.exit(0 if result.passed else 1)


if __name__ == "__main__":
    main()
