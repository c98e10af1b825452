"""The reference for bench/run: one Sanic handler that answers a small JSON body and does nothing else,
served the way the gateway is (one process, no access log). A route's req/s divided by this one's,
measured in the same run, is the ratio bench/run prints: it stays comparable across machines and load."""

import argparse

from sanic import Sanic
from sanic.response import json


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    app = Sanic("bare")
    app.config.ACCESS_LOG = False
    app.config.MOTD = False

    @app.get("/")
    async def bare(request):
        return json(["tester"], headers={"Cache-Control": "no-store"})

    app.run(host="127.0.0.1", port=a.port, single_process=True, motd=False, access_log=False)


if __name__ == "__main__":
    main()
