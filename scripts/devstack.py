"""The development stack behind scripts/dev (see there)."""

import argparse
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from stack import TOKEN, Bus, Daemon, Gateway, make_root  # noqa: E402
from systemd_helpers import LogindMock, demo_systemd  # noqa: E402

# Stand-ins for systemd and logind: the units behind GET /services/status (some running) and the
# ones the rebuild / upgrade / rollback routes start.
def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=5050)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spd-dev-"))
    bus = Bus(work / "bus")
    root = make_root(work / "root")
    systemd = demo_systemd(bus, work)
    logind = LogindMock(bus, work)
    # Backups go to a local restic repository (created by the first backup), not to Backblaze.
    daemon = Daemon(bus, root, work, env={"SPD_RESTIC_REPOSITORY": work / "restic-repo"})
    gateway = Gateway(bus, work, port=a.port)
    print(f"""
spd is running on a demo server.
  state root:  {root}
  bus:         {bus.address}
  logs:        {work}/spd.log {work}/gateway.log {work}/dbusmock-*.log
  systemd and logind are python-dbusmock stand-ins (reboot and rebuilds are only recorded)
  backups:     {work}/restic-repo (restic password: resticPassword in userdata)
  token:       {TOKEN}

Try:
  curl -H "Authorization: Bearer {TOKEN}" http://127.0.0.1:{a.port}/auth/tokens
  curl -H "Authorization: Bearer {TOKEN}" http://127.0.0.1:{a.port}/services/status
  curl -N -H "Authorization: Bearer {TOKEN}" "http://127.0.0.1:{a.port}/events?topics=backup,snapshots"   # follow a backup
  curl -X PUT -H "Authorization: Bearer {TOKEN}" http://127.0.0.1:{a.port}/services/restic/backup/create
  busctl --address={bus.address} monitor org.selfprivacy.Daemon   # follow a backup live
  busctl --address={bus.address} introspect org.selfprivacy.Daemon /org/selfprivacy/Daemon

Ctrl-C stops everything.""", flush=True)
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        gateway.stop()
        daemon.stop()
        logind.stop()
        systemd.stop()
        bus.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
