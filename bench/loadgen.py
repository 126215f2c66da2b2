"""Open-loop HTTP load: requests sent at times fixed in advance (Poisson arrivals), whether or
not the earlier ones were answered, to one or several base URLs in turn.

A closed-loop client sends its next request when the previous answer came back, so a slow
server receives less load exactly while it is slow, and the requests it would have received
are never timed ("coordinated omission", Gil Tene, "How NOT to measure latency", 2015). Slack
and people do not wait for each other: here every request has a scheduled moment, is sent then
on an idle keep-alive connection or a new one, and its latency is counted from that moment to
the last byte of the answer, so a queue anywhere (the generator's own included) shows in it.

One asyncio loop in the calling thread, raw HTTP/1.1 over keep-alive connections: a
generator on the same 2-core machine as the server must spend as little CPU per request as it
can (its CPU is measured, `LoadRun.generator_cpu`).

    schedule = [(t, request_for(kind)) for t, kind in zip(poisson_offsets(50, 30, rng), kinds)]
    run = run_open_loop(["http://127.0.0.1:8001", "http://127.0.0.1:8002"], schedule)
    run.answers  # one Answer per request sent, in schedule order
"""
from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    """One HTTP request, ready to send: `kind` names it in the results (e.g. "approve")."""

    kind: str
    method: str
    target: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    #: the status that counts as answered; any other is an error
    expect: int = 200

    def encode(self, host: str) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(self.body)}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items() if name.lower() not in ("host", "content-length")]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass(frozen=True)
class Answer:
    kind: str
    #: the base URL the request went to (the last one tried, with failover)
    url: str
    #: seconds after the start of the run: when it was due, and when it left the generator's
    #: own queue (later than due only when `max_in_flight` requests were waiting, or the
    #: generator itself fell behind)
    scheduled: float
    sent: float
    #: seconds from `scheduled` to the answer's last byte (or to the failure)
    latency: float
    status: int | None
    error: str | None = None
    #: base URLs tried (more than one only with failover)
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class LoadRun:
    answers: list[Answer]
    #: time.time() at offset 0 of the schedule, to match answers with other clocks' events
    started_wall: float
    #: seconds from offset 0 to the last answer
    wall: float
    #: CPU seconds the generator's thread used during the run (time.thread_time)
    generator_cpu: float
    #: most requests waiting for an answer at once, and connections opened
    max_in_flight: int
    connections: int
    #: the offset at which sending stopped (`stop_when_behind`), and the requests not sent
    stopped_at: float | None = None
    not_sent: int = 0

    def of(self, kind: str) -> list[Answer]:
        return [a for a in self.answers if a.kind == kind]

    @property
    def errors(self) -> list[Answer]:
        return [a for a in self.answers if not a.ok]


def poisson_offsets(rate: float, seconds: float, rng: random.Random) -> list[float]:
    """Arrival times in [0, seconds) of a Poisson process of `rate` per second: independent
    exponential gaps of mean 1/rate, so bursts and lulls come as they do from many
    independent senders."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    out: list[float] = []
    at = rng.expovariate(rate)
    while at < seconds:
        out.append(at)
        at += rng.expovariate(rate)
    return out


def mixed_kinds(count: int, weights: Mapping[str, float], rng: random.Random) -> list[str]:
    """`count` kinds drawn independently with these weights: a mix of paths whose each path's
    arrivals are themselves Poisson (a thinned Poisson process stays Poisson)."""
    kinds = list(weights)
    return rng.choices(kinds, weights=[weights[k] for k in kinds], k=count)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class _Refused(Exception):
    """No answer, and the request cannot have reached the application: the connection was
    refused, or a kept-alive connection turned out closed before any byte came back."""


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status of one HTTP/1.1 answer, read to its end, and whether the server keeps the
    connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    else:
        await reader.read()
        return status, False
    return status, headers.get("connection", "").lower() != "close"


class _Host:
    """Idle keep-alive connections to one base URL, most recently used first (the others
    are left to expire at the server's keep-alive timeout)."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url.rstrip("/")
        address = self.url.removeprefix("http://")
        host, _, port = address.partition(":")
        self.host, self.port, self.header = host, int(port or 80), address
        self.idle: list[_Connection] = []
        self.opened = 0

    async def connection(self) -> tuple[_Connection, bool]:
        while self.idle:
            conn = self.idle.pop()
            if conn.usable():
                return conn, True
            conn.close()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as error:
            raise _Refused(f"connect: {error!r}") from error
        self.opened += 1
        return _Connection(reader, writer), False

    async def send(self, data: bytes) -> int:
        """Send on a kept-alive connection, or on a new one if the kept one was closed by the
        server before answering (its idle timeout raced our request)."""
        for _ in range(2):
            conn, reused = await self.connection()
            try:
                conn.writer.write(data)
                status, keep = await _read_answer(conn.reader)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                conn.close()
                if reused and (not isinstance(error, asyncio.IncompleteReadError) or not error.partial):
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if keep:
                self.idle.append(conn)
            else:
                conn.close()
            return status
        raise _Refused("kept-alive connections closed twice in a row")

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


async def _run(
    hosts: list[_Host], schedule: Sequence[tuple[float, Request]], *, timeout: float, failover: bool, max_in_flight: int, stop_when_behind: float | None
) -> tuple[list[Answer], float, float, int, float | None]:
    loop = asyncio.get_running_loop()
    answers: list[Answer | None] = [None] * len(schedule)
    unanswered: list[tuple[float, int]] = []  # a heap of (offset, index); answered ones are dropped lazily
    in_flight = most = 0
    stopped: float | None = None
    slots = asyncio.Semaphore(max_in_flight)
    start = loop.time() + 0.05
    started_wall = time.time() + (start - loop.time())
    last = start

    async def one(index: int, at: float, request: Request) -> None:
        nonlocal in_flight, most, last
        in_flight += 1
        most = max(most, in_flight)
        first = index % len(hosts)
        host, tried, status, error = hosts[first], 0, None, None
        async with slots:
            sent = loop.time()
            for tried in range(1, (len(hosts) if failover else 1) + 1):
                host = hosts[(first + tried - 1) % len(hosts)]
                try:
                    async with asyncio.timeout(timeout):
                        status = await host.send(request.encode(host.header))
                    error = None if status == request.expect else f"HTTP {status}"
                    break
                except _Refused as refused:
                    error = str(refused)
                except TimeoutError:
                    error = f"no answer within {timeout:g} s"
                    break
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as failure:
                    error = repr(failure)
                    break
        done = loop.time()
        last = max(last, done)
        in_flight -= 1
        answers[index] = Answer(request.kind, host.url, at, sent - start, done - start - at, status, error, tried)

    tasks = []
    for index, (at, request) in enumerate(schedule):
        delay = start + at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if stop_when_behind is not None:
            while unanswered and answers[unanswered[0][1]] is not None:
                heapq.heappop(unanswered)
            if unanswered and loop.time() - start - unanswered[0][0] > stop_when_behind:
                stopped = at
                break
            heapq.heappush(unanswered, (at, index))
        tasks.append(asyncio.create_task(one(index, at, request)))
    await asyncio.gather(*tasks)
    for host in hosts:
        host.close()
    return [a for a in answers if a is not None], started_wall, last - start, most, stopped


def run_open_loop(
    base_urls: Sequence[str],
    schedule: Sequence[tuple[float, Request]],
    *,
    timeout: float = 30.0,
    failover: bool = False,
    max_in_flight: int = 2000,
    stop_when_behind: float | None = None,
) -> LoadRun:
    """Send each request at its offset (seconds after the start, ascending) to the base URLs
    in turn (request i to base_urls[i % n]) and wait for every answer.

    `timeout` bounds one request (it then counts as an error with its latency so far).
    `failover`: a request that could not reach its base URL (connection refused, or its
    kept-alive connection closed before an answer twice) goes to the next one, as a load
    balancer's passive health check does; never once a request may have been received.
    `max_in_flight` caps the connections in use at once (then requests queue in the
    generator, and that wait is in their latency). `stop_when_behind`: stop sending once the
    oldest unanswered request is this many seconds past its moment — the server is past
    saturation, and more load would only lengthen its queue (and the run); the rest of the
    schedule is not sent (`LoadRun.stopped_at`, `not_sent`)."""
    if not base_urls:
        raise ValueError("no base URL")
    if any(later < earlier for (earlier, _), (later, _) in zip(schedule, schedule[1:])):
        raise ValueError("the schedule's offsets must be ascending")
    hosts = [_Host(url) for url in base_urls]
    cpu = time.thread_time()
    answers, started_wall, elapsed, most, stopped = asyncio.run(
        _run(hosts, schedule, timeout=timeout, failover=failover, max_in_flight=max_in_flight, stop_when_behind=stop_when_behind)
    )
    return LoadRun(answers, started_wall, elapsed, time.thread_time() - cpu, most, sum(h.opened for h in hosts), stopped, len(schedule) - len(answers))
