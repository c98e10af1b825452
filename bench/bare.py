"""The reference for bench/run: Sanic handlers that answer a JSON body and do nothing else, served the
way the gateway is (one process, no access log). A route's req/s divided by a reference's, measured
in the same run, is a ratio that stays comparable across machines and load:

- `/`: a small body (`["tester"]`) with one header: the `ratio` column;
- with --answers FILE (a JSON list of {"body", "headers"}), `/same<i>`: the i-th body with its
  headers, encoded by Sanic each time as the gateway encodes its answers: the `same` column, where
  what is left of the distance to 1.0 is the gateway's own work for that route (token check, reading
  its copy of the daemon's state, shaping the body), not the size of the answer.
"""

import argparse
import json as jsonlib

from sanic import Sanic
from sanic.response import json


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--answers", help="a JSON list of {body, headers}, served at /same0, /same1, ...")
    a = p.parse_args()
    app = Sanic("bare")
    app.config.ACCESS_LOG = False
    app.config.MOTD = False

    @app.get("/")
    async def bare(request):
        return json(["tester"], headers={"Cache-Control": "no-store"})

    def same(body, headers):
        async def handler(request):
            return json(body, headers=headers)
        return handler

    if a.answers:
        with open(a.answers) as f:
            for i, answer in enumerate(jsonlib.load(f)):
                app.add_route(same(answer["body"], answer["headers"]), f"/same{i}", name=f"same{i}")

    app.run(host="127.0.0.1", port=a.port, single_process=True, motd=False, access_log=False)


if __name__ == "__main__":
    main()
