"""A small Server-Sent Events client for the tests: GET /events with httpx, events read one by one."""

import json

import httpx

from stack import TOKEN


class Events:
    """An open /events stream. next() returns (topic, data) of the next event, or None at the end of
    the stream; comments (keep-alive lines) are collected in `comments`."""

    def __init__(self, url: str, token: str = TOKEN, topics: str | None = None, timeout: float = 30,
                 local_address: str | None = None):
        """local_address: the client's own address (e.g. 127.0.0.2: a filter can then tell it apart)."""
        self.client = httpx.Client(timeout=timeout, transport=httpx.HTTPTransport(local_address=local_address))
        params = {"topics": topics} if topics is not None else None
        self._cm = self.client.stream("GET", url + "/events", params=params,
                                      headers={"Authorization": f"Bearer {token}"})
        self.response = self._cm.__enter__()
        self.comments = []
        self._lines = self.response.iter_lines() if self.response.status_code == 200 else iter(())

    @property
    def status(self) -> int:
        return self.response.status_code

    def next(self):
        topic = data = None
        for line in self._lines:
            if line.startswith(":"):
                self.comments.append(line)
            elif line.startswith("event: "):
                topic = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
            elif line == "" and topic is not None:
                return topic, data
        return None

    def comments_only(self, n: int) -> list:
        """The next n comment lines; fails if an event comes first."""
        got = []
        for line in self._lines:
            assert not line.startswith(("event:", "data:")), f"an event came: {line}"
            if line.startswith(":"):
                got.append(line)
                if len(got) == n:
                    return got
        raise AssertionError(f"the stream ended after {got}")

    def take(self, n: int) -> list:
        return [self.next() for _ in range(n)]

    def until(self, topic: str, data=None):
        """Events up to and including the first one of `topic` (with this data, when given)."""
        seen = []
        while True:
            e = self.next()
            assert e is not None, f"the stream ended before {topic} {data}; seen {seen}"
            seen.append(e)
            if e[0] == topic and (data is None or e[1] == data):
                return seen

    def ended(self) -> bool:
        """Reads to the end of the stream; True when it ends (a read timeout raises instead)."""
        while self.next() is not None:
            pass
        return True

    def close(self):
        self._cm.__exit__(None, None, None)
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
