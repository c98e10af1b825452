"""Authenticated GET /auth/tokens through gateway and daemon, 16 connections (issue: the spine).

Run: /opt/spd-venv/bin/python bench/tokens.py [seconds]
"""

import sys

from common import row, stack, wrk


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with stack() as (_bus, _root, _daemon, gateway):
        wrk(gateway.url + "/auth/tokens", seconds=2)  # warm up
        print(row("GET /auth/tokens (16 connections)", wrk(gateway.url + "/auth/tokens", seconds=seconds)))


if __name__ == "__main__":
    main()
