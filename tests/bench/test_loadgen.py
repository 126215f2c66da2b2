"""The open-loop generator: its Poisson schedule and path mix, the requests it writes, the
answers it reads, and where it sends each request (round-robin, failover). No timing is
asserted: the servers here answer at once or not at all."""
from __future__ import annotations

import asyncio
import http.server
import random
import socket
import statistics
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from bench.loadgen import Request, _read_answer, mixed_kinds, poisson_offsets, run_open_loop


def test_poisson_offsets_are_ascending_inside_the_run_and_as_many_as_the_rate_says() -> None:
    offsets = poisson_offsets(50, 200, random.Random(7))
    assert offsets == sorted(offsets)
    assert 0 <= offsets[0] and offsets[-1] < 200
    # 10,000 expected; a Poisson count's standard deviation is 100
    assert 9_500 < len(offsets) < 10_500


def test_poisson_gaps_are_exponential_not_evenly_spaced() -> None:
    offsets = poisson_offsets(20, 500, random.Random(3))
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(1 / 20, rel=0.05)
    # an exponential distribution's standard deviation equals its mean; even spacing has none
    assert statistics.pstdev(gaps) == pytest.approx(mean, rel=0.1)


def test_the_same_seed_gives_the_same_schedule() -> None:
    assert poisson_offsets(10, 30, random.Random(1)) == poisson_offsets(10, 30, random.Random(1))
    assert poisson_offsets(10, 30, random.Random(1)) != poisson_offsets(10, 30, random.Random(2))


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        poisson_offsets(0, 30, random.Random(1))


def test_mixed_kinds_follow_their_weights() -> None:
    kinds = Counter(mixed_kinds(30_000, {"ack": 1, "redeem": 1, "approve": 2, "never": 0}, random.Random(5)))
    assert kinds["never"] == 0
    assert kinds["approve"] / 30_000 == pytest.approx(0.5, abs=0.02)
    assert kinds["ack"] / 30_000 == pytest.approx(0.25, abs=0.02)


def test_a_request_is_written_as_one_http_1_1_message_with_its_own_host_and_length() -> None:
    request = Request("approve", "POST", "/slack/events", b"a=1", {"Content-Type": "application/x-www-form-urlencoded", "Host": "wrong", "Content-Length": "99"})
    assert request.encode("127.0.0.1:8001") == (
        b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1:8001\r\nContent-Length: 3\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\na=1"
    )


def _answer(raw: bytes) -> tuple[int, bool, bytes]:
    async def read() -> tuple[int, bool, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw + b"NEXT")
        reader.feed_eof()
        status, keep = await _read_answer(reader)
        return status, keep, await reader.read()

    return asyncio.run(read())


def test_an_answer_is_read_to_its_end_whatever_its_framing() -> None:
    assert _answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") == (200, True, b"NEXT")
    assert _answer(b"HTTP/1.1 302 Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n") == (302, True, b"NEXT")
    assert _answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok") == (200, False, b"NEXT")
    # no length: the body runs to the end of the connection, which is not kept
    assert _answer(b"HTTP/1.0 200 OK\r\n\r\nbody") == (200, False, b"")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.path, body))  # type: ignore[attr-defined]
        status = 500 if self.path == "/fail" else 200
        reply = f"{self.server.server_port}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[list[http.server.ThreadingHTTPServer]]:
    started = []
    for _ in range(2):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.seen = []  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def _url(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_port}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_every_request_is_answered_once_and_the_base_urls_take_turns(servers) -> None:
    schedule = [(n * 0.001, Request("ack" if n % 3 else "fail", "POST", "/fail" if n % 3 == 0 else "/ok", f"{n}".encode())) for n in range(12)]
    run = run_open_loop([_url(s) for s in servers], schedule)
    assert [a.url for a in run.answers] == [_url(servers[n % 2]) for n in range(12)]
    assert [a.scheduled for a in run.answers] == [at for at, _ in schedule]
    assert sorted(body for s in servers for _, body in s.seen) == sorted(f"{n}".encode() for n in range(12))
    assert [a.error for a in run.errors] == ["HTTP 500"] * 4
    assert {a.kind for a in run.errors} == {"fail"}
    assert all(a.latency >= 0 and a.sent >= a.scheduled for a in run.answers)
    assert run.connections >= 2


def test_a_refused_connection_is_an_error_without_failover_and_goes_to_the_next_url_with_it(servers) -> None:
    down = f"http://127.0.0.1:{_closed_port()}"
    schedule = [(0.0, Request("ack", "POST", "/ok", b"1")), (0.001, Request("ack", "POST", "/ok", b"2"))]
    plain = run_open_loop([down, _url(servers[0])], schedule)
    assert plain.answers[0].status is None and "connect" in (plain.answers[0].error or "")
    assert plain.answers[1].ok

    failing_over = run_open_loop([down, _url(servers[0])], schedule, failover=True)
    assert [a.ok for a in failing_over.answers] == [True, True]
    assert [(a.url, a.attempts) for a in failing_over.answers] == [(_url(servers[0]), 2), (_url(servers[0]), 1)]


def test_a_schedule_out_of_order_is_refused() -> None:
    with pytest.raises(ValueError):
        run_open_loop(["http://127.0.0.1:1"], [(1.0, Request("a", "GET", "/")), (0.5, Request("a", "GET", "/"))])


def test_sending_stops_once_the_oldest_unanswered_request_is_too_far_behind() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        schedule = [(0.0, Request("a", "POST", "/")), (0.5, Request("a", "POST", "/")), (0.6, Request("a", "POST", "/"))]
        run = run_open_loop([f"http://127.0.0.1:{silent.getsockname()[1]}"], schedule, timeout=1.0, stop_when_behind=0.2)
    assert (run.stopped_at, run.not_sent) == (0.5, 2)
    assert [a.error for a in run.answers] == ["no answer within 1 s"]
