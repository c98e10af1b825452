"""A request line Sanic cannot parse is answered 400 with a JSON body before Sanic sees it, and a flood
of them leaves a few log lines, never a traceback per request (issue 16)."""

import json
import re
import socket
import time

from gateway.protocol import MAX_LINE, NOTE_EVERY
from stack import eventually

ODD = [
    b"GET /users/a\x1b[31mb HTTP/1.1",  # a control byte: an escape sequence for the log's terminal
    b"GET /\x7f HTTP/1.1",
    b"GET http://a@/x HTTP/1.1",  # absolute-form
    b"GET http://x/api/version HTTP/1.1",
    b"GET /a\x00b HTTP/1.1",
    b"GET /api/version?x=\x7f HTTP/1.1",
    b"GET /\xff\xfe HTTP/1.1",  # bytes above 0x7f
    b"OPTIONS * HTTP/1.1",
    b"GET x HTTP/1.1",
    b"G\x01T / HTTP/1.1",
    b"GET  / HTTP/1.1",
    b"GET / HTTP/2.0",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS spoken to plain HTTP
]


def exchange(port: int, data: bytes) -> bytes:
    """Send data, read until the gateway closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def status_and_body(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower().split(b"\r\n"), answer
    return int(head.split(b" ", 2)[1]), json.loads(body)


def refused(log: str, skip: int = 0) -> int:
    """How many refusals the log counts, in its lines after the first `skip`."""
    lines = log.splitlines()[skip:]
    return sum("refused a bad request line" in line for line in lines) + \
        sum(int(m.group(1)) for line in lines if (m := re.search(r"refused (\d+) more", line)))


def test_each_odd_request_line_gets_a_4xx_with_a_body(gateway):
    lines = ODD + [b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1"]
    got = {line: status_and_body(exchange(gateway.port, line + b"\r\nHost: x\r\n\r\n")) for line in lines}
    assert got == {line: (414, {"error": "Request line too long"}) if len(line) > MAX_LINE else
                   (400, {"error": "Bad request line"}) for line in lines}
    log = gateway.process.wait_for_log("refused a bad request line")
    assert "Traceback" not in log and "\x1b" not in log and "\x7f" not in log, log
    assert exchange(gateway.port, b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") \
        .startswith(b"HTTP/1.1 200 ")


def test_a_trickled_odd_line_and_one_after_a_good_request_are_refused_too(gateway):
    """Also one pipelined behind a good one: Sanic sees it unchecked and answers nothing, but the log
    has the refusal's line, not a traceback."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive: then an odd one
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        for byte in b"GET /\x1b HTTP/1.1\r\n":
            s.sendall(bytes([byte]))
            time.sleep(0.01)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert status_and_body(answer) == (400, {"error": "Bad request line"})
    good = b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n"
    pipelined = good + b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n"
    assert exchange(gateway.port, pipelined).startswith(b"HTTP/1.1 200 ")
    assert eventually(lambda: refused(gateway.process.log()), 2) == 2
    log = gateway.process.log()
    assert "Traceback" not in log and "\x7f" not in log, log


def test_a_flood_of_bad_requests_leaves_a_few_log_lines(gateway):
    """Each refused at once; the log says so in two lines per NOTE_EVERY at most (a period's first
    refusal, then the count of the rest when it ends; a flood of `took` seconds spans took / NOTE_EVERY
    + 1 periods at most), and the counts of the lines add up to every request. On a526509 each left
    a 43-line traceback."""
    flood = 3000
    before = len(gateway.process.log().splitlines())
    start = time.monotonic()
    for i in range(flood):
        answer = exchange(gateway.port, ODD[i % len(ODD)] + b"\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 "), answer
    took = time.monotonic() - start

    assert eventually(lambda: refused(gateway.process.log(), before), flood) == flood
    lines = gateway.process.log().splitlines()[before:]
    print(f"{flood} bad requests in {took:.1f} s: {len(lines)} log lines")
    assert len(lines) <= 2 * (took / NOTE_EVERY + 1), lines
    assert "Traceback" not in gateway.process.log()
