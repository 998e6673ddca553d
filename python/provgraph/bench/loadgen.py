"""Open-loop (constant-rate) HTTP/1.1 load generator; latency corrected for coordinated omission."""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import time
from array import array
from collections.abc import Callable, Container, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit

import numpy as np
from hdrh.histogram import HdrHistogram

from provgraph._tcp import nodelay_transport

__all__ = [
    "Flow",
    "FlowResult",
    "HttpPool",
    "RequestSpec",
    "has_ms_timers",
    "health_flow",
    "run",
    "run_open_loop",
    "side_by_side",
    "timer_delay",
]

#: What ``Flow.requests(i)`` returns: (method, path, body, extra headers).
RequestSpec = tuple[str, str, bytes | None, dict[str, str]]

_HIST_MIN_US = 1
_HIST_MAX_US = 60_000_000
_HIST_DIGITS = 3
_MAX_ERROR_SAMPLES = 5
_MAX_HEADER_BYTES = 64 * 1024
_NAN = float("nan")


class ResponseError(Exception):
    """A response this client cannot or will not parse (chunked, no Content-Length, garbage)."""


@dataclass
class Flow:
    """One kind of request in the mix.

    ``requests(i)`` builds the i-th request of this flow. Requests are pre-encoded before
    the clock starts: the generator builds ``prebuild`` of them (default 4096) and cycles,
    so request ``i`` of the run is ``requests(i % prebuild)``.
    """

    name: str
    weight: float
    requests: Callable[[int], RequestSpec]
    expect_status: int | Container[int] = 200


@dataclass
class FlowResult:
    """Measured outcome of one flow over the measured window (warm-up excluded).

    ``sent + dropped`` equals the flow's scheduled arrivals. ``errors`` counts status
    mismatches, I/O errors and requests still outstanding after the drain timeout.
    Latencies (successful responses only) are from each request's *intended* send time.
    ``achieved_rps`` is successful responses per second of the measured window.
    ``send_lag_*`` is the generator's own lateness (uvloop timers tick in whole
    milliseconds, so up to ~1 ms is normal).
    """

    name: str
    sent: int = 0
    ok: int = 0
    errors: int = 0
    dropped: int = 0
    p50_ms: float = _NAN
    p95_ms: float = _NAN
    p99_ms: float = _NAN
    max_ms: float = _NAN
    achieved_rps: float = 0.0
    error_samples: list[str] = field(default_factory=list)
    #: Run-wide client scheduling lag (actual send - intended send), same for every flow:
    #: already included in the latencies; large values mean the generator fell behind.
    send_lag_p99_ms: float = _NAN
    send_lag_max_ms: float = _NAN

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON reports)."""
        return asdict(self)


class _FlowState:
    """Per-flow mutable state used on the hot path."""

    __slots__ = (
        "cursor",
        "dropped",
        "errors",
        "expect",
        "heads",
        "hist",
        "lat",
        "max_us",
        "name",
        "nreq",
        "ok",
        "reqs",
        "samples",
        "sent",
    )

    def __init__(self, flow: Flow, host_header: str, prebuild: int) -> None:
        self.name = flow.name
        exp = flow.expect_status
        self.expect: Container[int] = (exp,) if isinstance(exp, int) else exp
        self.reqs: list[bytes] = []
        self.heads: list[bool] = []
        for i in range(max(1, prebuild)):
            method, path, body, headers = flow.requests(i)
            self.reqs.append(encode_request(method, path, body, headers, host_header))
            self.heads.append(method.upper() == "HEAD")
        self.nreq = len(self.reqs)
        self.cursor = 0
        self.sent = 0
        self.ok = 0
        self.errors = 0
        self.dropped = 0
        self.hist = HdrHistogram(_HIST_MIN_US, _HIST_MAX_US, _HIST_DIGITS)
        # Latencies (µs) are buffered and folded into the histogram in bulk (flush()):
        # an append is ~50 ns, hdrh's pure-Python record_value() is several µs.
        self.lat: array[int] = array("q")
        self.max_us = 0
        self.samples: list[str] = []

    def flush(self) -> None:
        """Fold buffered latencies into the HDR histogram."""
        if not self.lat:
            return
        self.max_us = max(self.max_us, _record_bulk(self.hist, self.lat))
        self.lat = array("q")

    def error(self, msg: str) -> None:
        self.errors += 1
        if len(self.samples) < _MAX_ERROR_SAMPLES:
            self.samples.append(msg)

    def result(self, window_s: float) -> FlowResult:
        self.flush()
        res = FlowResult(
            name=self.name, sent=self.sent, ok=self.ok, errors=self.errors,
            dropped=self.dropped, error_samples=list(self.samples),
            achieved_rps=self.ok / window_s if window_s > 0 else 0.0,
        )
        if int(self.hist.get_total_count()) > 0:
            res.p50_ms = int(self.hist.get_value_at_percentile(50.0)) / 1000.0
            res.p95_ms = int(self.hist.get_value_at_percentile(95.0)) / 1000.0
            res.p99_ms = int(self.hist.get_value_at_percentile(99.0)) / 1000.0
            res.max_ms = self.max_us / 1000.0
        return res


def _record_bulk(hist: Any, values: array[int]) -> int:
    """Record µs values (clamped to the histogram range), one call per value; return the max."""
    if not values:
        return 0
    a = np.clip(np.frombuffer(values, dtype=np.int64), _HIST_MIN_US, _HIST_MAX_US)
    uniq, counts = np.unique(a, return_counts=True)
    for v, c in zip(uniq.tolist(), counts.tolist()):
        hist.record_value(v, c)
    return int(uniq[-1])


def encode_request(
    method: str, path: str, body: bytes | None, headers: dict[str, str], host_header: str
) -> bytes:
    """Encode one HTTP/1.1 keep-alive request (Host and Content-Length added when absent)."""
    lines = [f"{method.upper()} {path} HTTP/1.1", f"Host: {host_header}"]
    lower = {k.lower() for k in headers}
    for k, v in headers.items():
        if k.lower() != "host":
            lines.append(f"{k}: {v}")
    if body is not None and "content-length" not in lower:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


def parse_response(buf: bytearray, head_request: bool) -> tuple[int, int, int, bool] | None:
    """The first complete final response in `buf`: (status, body start, end, keep-alive), or None
    while incomplete. Interim (1xx) responses are removed from `buf`. Responses need a
    Content-Length (or none by status); chunked ones are refused."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEADER_BYTES:
                raise ResponseError("response header too large")
            return None
        head = bytes(buf[:end]).lower()
        if not head.startswith(b"http/1."):
            raise ResponseError(f"bad status line {bytes(buf[:40])!r}")
        status = int(head[9:12])
        p = head.find(b"\r\ncontent-length:")
        if p >= 0:
            e = head.find(b"\r\n", p + 2)
            clen = int(head[p + 17:e] if e >= 0 else head[p + 17:])
        elif head_request or status in (204, 304) or 100 <= status < 200:
            clen = 0
        elif b"\r\ntransfer-encoding:" in head and b"chunked" in head:
            raise ResponseError("chunked transfer-encoding is not supported by this client")
        else:
            raise ResponseError(f"status {status} response without Content-Length is not supported")
        if head_request:
            clen = 0
        total = end + 4 + clen
        if len(buf) < total:
            return None
        if 100 <= status < 200:
            del buf[:total]  # interim response; wait for the final one
            continue
        keep_alive = not head.startswith(b"http/1.0")
        c = head.find(b"\r\nconnection:")
        if c >= 0:
            e = head.find(b"\r\n", c + 2)
            keep_alive = b"close" not in (head[c + 13:e] if e >= 0 else head[c + 13:])
        return status, end + 4, total, keep_alive


class _Conn(asyncio.Protocol):
    """A keep-alive HTTP/1.1 client connection carrying one request at a time."""

    __slots__ = (
        "buf",
        "closed",
        "fs",
        "gen",
        "head",
        "intended",
        "keep_alive",
        "record",
        "transport",
    )

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.fs: _FlowState | None = None
        self.intended = 0.0
        self.record = False
        self.head = False
        self.closed = False
        self.keep_alive = True

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = nodelay_transport(transport)
        self.gen.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gen.conns.discard(self)
        if self.fs is not None:
            self._fail(f"io: connection lost ({exc!r})" if exc else "io: connection closed by peer")

    def data_received(self, data: bytes) -> None:
        if self.fs is None:
            # Unsolicited bytes (or a late response after a failure): drop the connection.
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            return
        buf = self.buf
        buf += data
        try:
            self._parse()
        except (ResponseError, ValueError) as e:
            self._fail(f"protocol: {e}")

    # -- client side ----------------------------------------------------------
    def send(self, req: bytes, fs: _FlowState, intended: float, record: bool, head: bool) -> None:
        self.fs = fs
        self.intended = intended
        self.record = record
        self.head = head
        assert self.transport is not None
        self.transport.write(req)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> None:
        parsed = parse_response(self.buf, self.head)
        if parsed is None:
            return
        status, _, total, keep_alive = parsed
        if len(self.buf) > total:
            raise ResponseError("unexpected bytes after the response (pipelining not supported)")
        self.buf.clear()
        self.keep_alive = self.keep_alive and keep_alive
        fs = self.fs
        assert fs is not None
        self.fs = None
        self.gen.on_response(self, fs, self.intended, self.record, status)

    def _fail(self, msg: str) -> None:
        fs = self.fs
        self.fs = None
        self.close()
        if fs is not None:
            self.gen.on_failure(fs, self.record, msg)


class _CallConn(asyncio.Protocol):
    """One keep-alive connection of an HttpPool: one request at a time, answered through a future."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = nodelay_transport(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError(f"connection lost ({exc!r})" if exc else "connection closed by peer"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            parsed = parse_response(self.buf, False)
        except (ResponseError, ValueError) as exc:
            self._fail(exc)
            self.close()
            return
        if parsed is None:
            return
        status, start, total, keep_alive = parsed
        body = bytes(self.buf[start:total])
        if len(self.buf) > total:
            self._fail(ResponseError("unexpected bytes after the response (pipelining not supported)"))
            self.close()
            return
        self.buf.clear()
        self.keep_alive = self.keep_alive and keep_alive
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class HttpPool:
    """A lean keep-alive HTTP/1.1 client for request/response coroutines (chained flows: the next
    request needs the last answer): a free connection is reused, a new one opened when none is.
    ~10x cheaper per request than a general client, so a load generator on one core can drive a
    server at thousands of requests/s; same response rules as the open-loop generator."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"expected http://host:port, got {base_url!r}")
        self.base, self.host, self.port = base_url.rstrip("/"), parts.hostname, parts.port
        self.host_header = f"{self.host}:{self.port}"
        self.idle: list[_CallConn] = []
        self.sent = 0  # requests sent through this pool

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        await asyncio.sleep(0)

    async def request(self, method: str, url: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body) of one request; `url` is a path or starts with this pool's base URL."""
        path = url.removeprefix(self.base)
        self.sent += 1
        conn = None
        while self.idle:
            candidate = self.idle.pop()
            if not candidate.closed:
                conn = candidate
                break
        loop = asyncio.get_running_loop()
        if conn is None:
            _, conn = await loop.create_connection(_CallConn, self.host, self.port)
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        conn.waiter = waiter
        assert conn.transport is not None
        conn.transport.write(encode_request(method, path, body, headers or {}, self.host_header))
        try:
            answer = await waiter
        except BaseException:
            conn.close()
            raise
        if conn.keep_alive and not conn.closed:
            self.idle.append(conn)
        else:
            conn.close()
        return answer


class _Generator:
    """Connection pool + bookkeeping for one run."""

    def __init__(self, host: str, port: int, max_inflight: int) -> None:
        self.host = host
        self.port = port
        self.max_inflight = max_inflight
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.inflight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.scheduling_done = False
        self.finished = False
        self.drained = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def dispatch(self, fs: _FlowState, intended: float, record: bool) -> None:
        if self.inflight >= self.max_inflight:
            if record:
                fs.dropped += 1
            return
        self.inflight += 1
        if record:
            fs.sent += 1
        k = fs.cursor % fs.nreq
        fs.cursor += 1
        req = fs.reqs[k]
        head = fs.heads[k]
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.send(req, fs, intended, record, head)
                return
        task = self.loop.create_task(self._connect_and_send(req, fs, intended, record, head))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect_and_send(
        self, req: bytes, fs: _FlowState, intended: float, record: bool, head: bool
    ) -> None:
        try:
            _, conn = await self.loop.create_connection(
                lambda: _Conn(self), self.host, self.port
            )
        except OSError as e:
            self.on_failure(fs, record, f"connect: {e!r}")
            return
        if self.finished:
            conn.close()
            return
        conn.send(req, fs, intended, record, head)

    def on_response(
        self, conn: _Conn, fs: _FlowState, intended: float, record: bool, status: int
    ) -> None:
        now = time.perf_counter()
        if self.finished:
            conn.close()
            return
        self.inflight -= 1
        if conn.keep_alive and not conn.closed:
            self.idle.append(conn)
        else:
            conn.close()
        if record:
            if status in fs.expect:
                fs.ok += 1
                lat = fs.lat
                lat.append(int((now - intended) * 1e6))
                if len(lat) >= 65536:
                    fs.flush()
            else:
                fs.error(f"status {status} (expected {_describe(fs.expect)})")
        if self.scheduling_done and self.inflight == 0:
            self.drained.set()

    def on_failure(self, fs: _FlowState, record: bool, msg: str) -> None:
        if self.finished:
            return
        self.inflight -= 1
        if record:
            fs.error(msg)
        if self.scheduling_done and self.inflight == 0:
            self.drained.set()

    async def shutdown(self) -> None:
        self.finished = True
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for c in list(self.conns) + self.idle:
            c.close()
        self.idle.clear()
        # Let connection_lost callbacks run so no transport outlives the loop.
        for _ in range(3):
            await asyncio.sleep(0)


def _describe(expect: Container[int]) -> str:
    if isinstance(expect, (tuple, list, set, frozenset)) and len(expect) == 1:
        return str(next(iter(expect)))
    if isinstance(expect, range):
        return f"{expect.start}..{expect.stop - 1}"
    return repr(expect)


def _assignments(
    n: int, weights: np.ndarray[Any, Any], seed: int, chunk: int = 65536
) -> Iterator[int]:
    """Yield flow indices for n arrivals: seeded weighted choice, generated in chunks."""
    rng = np.random.default_rng(seed)
    p = weights / weights.sum()
    done = 0
    while done < n:
        m = min(chunk, n - done)
        yield from rng.choice(len(p), size=m, p=p).tolist()
        done += m


@contextmanager
def frozen_heap() -> Iterator[None]:
    """For the length of a run, keep the load generator's own full collections short: its heap so far
    (modules, prepared requests, the workload) goes to the collector's permanent generation
    (gc.freeze), so a generation-2 collection, which stalls every request in flight and would be
    counted as server latency, walks only what the run makes (runtime.gc=frozen does the same for the
    server)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def has_ms_timers(loop: asyncio.AbstractEventLoop) -> bool:
    """uvloop (libuv) timers have whole-millisecond resolution and round the delay: a
    sub-millisecond sleep becomes a busy spin through the loop."""
    return type(loop).__module__.startswith("uvloop")


def timer_delay(delay: float, ms_timers: bool) -> float:
    """The sleep for an open-loop wait of `delay` seconds: whole milliseconds, rounded up, on a
    loop with millisecond timers (at most ~1 ms late, which the latency from the intended send
    time includes)."""
    return math.ceil(delay * 1000.0) / 1000.0 if ms_timers else delay

async def run_open_loop(
    host: str,
    port: int,
    flows: list[Flow],
    rate: float,
    duration_s: float,
    max_inflight: int = 256,
    warmup_s: float = 0.0,
    seed: int = 0,
    drain_timeout_s: float = 5.0,
    prebuild: int = 4096,
) -> dict[str, FlowResult]:
    """Drive ``flows`` at a constant total ``rate`` (req/s) for ``duration_s`` seconds.

    Arrival i is scheduled at ``start + i / rate`` (no drift; a late scheduler sends
    immediately and the latency still counts from the intended time) and assigned to a
    flow by a seeded weighted choice. ``warmup_s`` of arrivals at the same rate run
    *before* the measured window and are sent but not recorded (total run time is
    ``warmup_s + duration_s``). The measured window has ``round(rate * duration_s)``
    arrivals. An arrival finding ``max_inflight`` requests outstanding is dropped
    (not sent). After the last arrival the generator waits up to ``drain_timeout_s`` for
    outstanding requests; those still outstanding count as errors.
    """
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration_s must be > 0")
    if not flows:
        raise ValueError("at least one flow is required")
    names = [f.name for f in flows]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate flow names: {names}")
    weights = np.array([float(f.weight) for f in flows])
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("flow weights must be >= 0 with a positive sum")
    if max_inflight < 1:
        raise ValueError("max_inflight must be >= 1")

    n_warm = math.ceil(warmup_s * rate - 1e-9) if warmup_s > 0 else 0
    n_meas = max(1, round(rate * duration_s))
    n_total = n_warm + n_meas
    host_header = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    states = [_FlowState(f, host_header, min(prebuild, n_total)) for f in flows]
    gen = _Generator(host, port, max_inflight)

    perf = time.perf_counter
    sleep = asyncio.sleep
    dispatch = gen.dispatch
    ms_timers = has_ms_timers(gen.loop)
    lag_hist = HdrHistogram(_HIST_MIN_US, _HIST_MAX_US, _HIST_DIGITS)
    lags: array[int] = array("q")
    interval = 1.0 / rate
    start = perf() + 0.005
    meas_start = start + n_warm * interval
    flow_of = _assignments(n_total, weights, seed)
    i = 0
    with frozen_heap():
        try:
            while i < n_total:
                now = perf()
                t = start + i * interval
                if t > now:
                    d = t - now
                    await sleep(timer_delay(d, ms_timers))
                    continue
                if i >= n_warm:
                    lags.append(int((now - t) * 1e6))
                while i < n_total:
                    t = start + i * interval
                    if t > now:
                        break
                    dispatch(states[next(flow_of)], t, i >= n_warm)
                    i += 1
            sched_end = perf()
            gen.scheduling_done = True
            if gen.inflight > 0:
                try:
                    await asyncio.wait_for(gen.drained.wait(), timeout=drain_timeout_s)
                except TimeoutError:
                    pass
        finally:
            await gen.shutdown()

    lag_max_us = _record_bulk(lag_hist, lags)
    window = max(duration_s, sched_end - meas_start)
    results: dict[str, FlowResult] = {}
    for fs in states:
        outstanding = fs.sent - fs.ok - fs.errors
        for _ in range(outstanding):
            fs.error(f"timeout: no response within the {drain_timeout_s:g} s drain")
        res = fs.result(window)
        if int(lag_hist.get_total_count()) > 0:
            res.send_lag_p99_ms = int(lag_hist.get_value_at_percentile(99.0)) / 1000.0
            res.send_lag_max_ms = lag_max_us / 1000.0
        results[fs.name] = res
    return results


def run(
    host: str,
    port: int,
    flows: list[Flow],
    rate: float,
    duration_s: float,
    *,
    use_uvloop: bool = True,
    **kw: Any,
) -> dict[str, FlowResult]:
    """Synchronous wrapper: runs :func:`run_open_loop` on a fresh (uvloop when available) loop."""
    coro: Coroutine[Any, Any, dict[str, FlowResult]] = run_open_loop(
        host, port, flows, rate, duration_s, **kw
    )
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if use_uvloop:
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:  # pragma: no cover - uvloop is a dependency
            factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def health_flow(weight: float) -> Flow:
    """``GET /healthz``: the framework + machine floor every report sits next to."""
    return Flow("healthz", weight, lambda i: ("GET", "/healthz", None, {}), 200)


def side_by_side(results: dict[str, FlowResult], floor: str = "healthz") -> list[dict[str, Any]]:
    """Rows per flow with ``p99_vs_floor`` (p99 / floor p99) and ``p50_minus_floor_ms``."""
    if floor not in results:
        raise ValueError(f"floor flow {floor!r} missing; run it at the same rate (health_flow)")
    f = results[floor]
    rows: list[dict[str, Any]] = []
    for r in results.values():
        row = r.as_dict()
        del row["error_samples"]
        ratio: float | None = None
        if f.p99_ms > 0 and not math.isnan(f.p99_ms) and not math.isnan(r.p99_ms):
            ratio = r.p99_ms / f.p99_ms
        diff: float | None = None
        if not math.isnan(f.p50_ms) and not math.isnan(r.p50_ms):
            diff = r.p50_ms - f.p50_ms
        row["p99_vs_floor"] = ratio
        row["p50_minus_floor_ms"] = diff
        rows.append(row)
    return rows


def _parse_flow_arg(spec: str) -> Flow:
    """``name=METHOD /path:weight`` or ``name=/path:weight`` (GET)."""
    name, _, rest = spec.partition("=")
    target, _, w = rest.rpartition(":")
    method, _, path = target.strip().rpartition(" ")
    m = method or "GET"
    p = path
    return Flow(name, float(w), lambda i: (m, p, None, {}))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m provgraph.bench.loadgen --port 8080 --rate 1000 --flow a=/x:1``."""
    from provgraph.bench.report import format_table

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True, help="total arrivals per second")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=0.0)
    ap.add_argument("--max-inflight", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flow", action="append", default=[], help="name=[METHOD ]/path:weight")
    ap.add_argument("--no-floor", action="store_true", help="don't add the /healthz floor flow")
    args = ap.parse_args(argv)
    flows = [_parse_flow_arg(s) for s in args.flow]
    if not args.no_floor and not any(f.name == "healthz" for f in flows):
        flows.append(health_flow(max([f.weight for f in flows], default=1.0)))
    cpu0 = time.process_time()
    res = run(
        args.host, args.port, flows, args.rate, args.duration,
        max_inflight=args.max_inflight, warmup_s=args.warmup, seed=args.seed,
    )
    cpu = time.process_time() - cpu0
    rows = side_by_side(res) if "healthz" in res else [r.as_dict() for r in res.values()]
    cols = ["name", "sent", "ok", "errors", "dropped", "p50_ms", "p95_ms", "p99_ms", "max_ms",
            "achieved_rps"]
    if "healthz" in res:
        cols += ["p99_vs_floor", "p50_minus_floor_ms"]
    print(format_table(rows, cols))
    total = sum(r.sent for r in res.values())
    if total:
        print(f"client CPU: {cpu:.3f} s, {cpu / total * 1e6:.1f} us/request")
    for r in res.values():
        for s in r.error_samples:
            print(f"  {r.name}: {s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
