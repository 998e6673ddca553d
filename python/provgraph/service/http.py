"""HTTP helpers shared by the route modules: JSON bodies, JSON responses, auth checks."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast, overload

import orjson
from aiohttp import web

from provgraph.errors import (
    BadRequestError,
    InvalidArgumentError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from provgraph.service.keys import ADMISSION, CONFIG, REGISTRY
from provgraph.service.scheduling import ACCOUNT_KEY, Account
from provgraph.tenancy import KeyRecord, Tenant

__all__ = [
    "INT64_MAX",
    "ChunkedAnswer",
    "FileAnswer",
    "Request",
    "account_of",
    "answer_after",
    "authorize",
    "byte_range",
    "bytes_answer",
    "chain_of",
    "in_background",
    "json_bytes_response",
    "json_response",
    "query_int",
    "read_body",
    "read_json",
    "tenant_of",
]


class Request(Protocol):
    """What a handler may use of a request: met by aiohttp's `web.Request` (flag
    service.http=aiohttp) and by the lean front end's `LeanRequest` (service.http=lean)."""

    @property
    def app(self) -> web.Application: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def query(self) -> Mapping[str, str]: ...
    @property
    def match_info(self) -> Mapping[str, str]: ...
    @property
    def content_type(self) -> str: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def can_read_body(self) -> bool: ...
    async def read(self) -> bytes: ...


class ChunkedAnswer(web.StreamResponse):
    """A body streamed from an async iterable of chunks with Transfer-Encoding: chunked, the one way
    a handler streams on both front ends. aiohttp's server prepares it and calls write_eof, which
    writes the chunks (each write waits while the transport's buffer is over its high-water mark);
    the lean front end reads `chunks` and writes them itself, pausing the same way."""

    def __init__(self, chunks: AsyncIterable[bytes], status: int = 200,
                 content_type: str = "application/octet-stream", headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status=status, headers=headers)
        self.content_type = content_type
        self.chunks = chunks
        self._head_only = self._streamed = False

    async def prepare(self, request: web.BaseRequest) -> Any:
        self._head_only = request.method == "HEAD"
        if request.version >= (1, 1):  # HTTP/1.0 has no chunked encoding: the close ends the body
            self.enable_chunked_encoding()
        else:
            self.force_close()
        return await super().prepare(request)

    async def write_eof(self, data: bytes = b"") -> None:
        if self.prepared and not self._head_only and not self._streamed:
            self._streamed = True
            async for chunk in self.chunks:
                if chunk:  # an empty chunk would end the body early
                    await self.write(chunk)
        await super().write_eof(data)


class FileAnswer(web.FileResponse):
    """A file sent without reading it whole into memory, with single byte ranges (206, 416) as
    aiohttp's FileResponse answers them: aiohttp's server serves it as that; the lean front end
    reads `path` in chunks itself, pausing while the client is slow."""

    def __init__(self, path: str | Path, content_type: str = "application/octet-stream",
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(path, headers=headers)
        self.path = Path(path)
        self.content_type = content_type


_RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII | re.IGNORECASE)


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, count) of a `Range` header's one byte range over `size` bytes, as aiohttp's
    FileResponse reads it (`a-b`, `a-`, `-n`: the last n); None when it is unsatisfiable:
    malformed, or starting past the end (answer 416 with `Content-Range: bytes */size`)."""
    m = _RANGE.fullmatch(header)
    first = int(m.group(1)) if m is not None and m.group(1) else None
    last = int(m.group(2)) if m is not None and m.group(2) else None
    if m is None or (first is None and last is None) or (first is not None and last is not None and first > last):
        return None
    if first is None:  # the last `last` bytes
        assert last is not None
        start = max(size - last, 0)
    else:
        start = first
    count = (size if last is None or first is None else min(last + 1, size)) - start
    return None if start >= size else (start, count)


def bytes_answer(request: Request, data: bytes, content_type: str, etag: str) -> web.Response:
    """`data` with a strong `ETag`: 304 for a matching `If-None-Match`, one byte range (206, or 416)
    for a `Range` (whole when `If-Range` names another entity)."""
    headers = {"ETag": etag, "Accept-Ranges": "bytes"}
    inm = request.headers.get("If-None-Match")
    if inm is not None and (inm.strip() == "*" or etag in (t.strip() for t in inm.split(","))):
        return web.Response(status=304, headers=headers)
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if range_header is not None and (if_range is None or if_range.strip() == etag):
        got = byte_range(range_header, len(data))
        if got is None:
            return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"})
        start, count = got
        return web.Response(body=data[start:start + count], status=206, content_type=content_type,
                            headers={**headers, "Content-Range": f"bytes {start}-{start + count - 1}/{len(data)}"})
    return web.Response(body=data, content_type=content_type, headers=headers)


JSON_TYPES = frozenset({"application/json"})
T = TypeVar("T")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def json_bytes_response(body: bytes, status: int = 200) -> web.Response:
    """A response whose JSON body is already encoded (by a native fast path)."""
    return web.Response(body=body, status=status, content_type="application/json")


async def answer_after(request: Request, future: Future[T], finalize: Callable[[T], web.StreamResponse]
                       ) -> web.StreamResponse:
    """`finalize(result)` of a write job's `future`. With the lean front end and the flag
    service.write_answer=callback the handler returns at once and the front end writes the answer
    from the loop callback the job's completion schedules (one loop turn); otherwise (await, or
    the aiohttp front end) the handler awaits the job (two turns: the asyncio future, then the task)."""
    account = account_of(request)
    if account is not None:  # not this request's CPU while it waits; resumed when it goes on
        account.pause()
    defer = getattr(request, "defer", None)
    if defer is not None and request.app[CONFIG].flags["service.write_answer"] == "callback":
        return cast(web.StreamResponse, defer(future, finalize))
    try:
        result = await asyncio.wrap_future(future)
    finally:
        if account is not None:
            account.resume()
    return finalize(result)


async def read_body(request: Request, allowed: frozenset[str] = JSON_TYPES) -> bytes:
    """The raw body, after checking its content type (415) and size (413)."""
    if request.content_type not in allowed:
        raise UnsupportedMediaTypeError(
            f"content type must be one of {sorted(allowed)}", {"content_type": request.content_type}
        )
    limit = request.app[CONFIG].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(f"body over {limit} bytes", {"limit": limit})
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLargeError(f"body over {limit} bytes", {"limit": limit}) from None


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError("malformed JSON", {"reason": str(exc)}) from None


INT64_MAX = (1 << 63) - 1


@overload
def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int: ...
@overload
def query_int(request: Request, name: str, default: None, lo: int, hi: int) -> int | None: ...
def query_int(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """The integer query parameter `name` (`default` when absent): 400 when it is not an integer,
    422 outside lo..hi. The bounds matter beyond validation: the stores pack these into fixed-width
    keys, where a value past 64 bits would raise deep inside and answer 500."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestError(f"{name} must be an integer", {"parameter": name}) from None
    if not lo <= value <= hi:
        raise InvalidArgumentError(f"{name} must be in {lo}..{hi}", {"parameter": name, "value": raw})
    return value


async def read_json(request: Request) -> Any:
    return parse_json(await read_body(request))


def authorize(request: Request, scope: str, tenant_id: str | None = None) -> KeyRecord:
    """401 without a valid key, 403 without the scope or for another tenant's path."""
    key = request.app[REGISTRY].authenticate(request.headers.get("Authorization"))
    key.require(scope, tenant_id)
    return key


def tenant_of(request: Request, scope: str) -> tuple[KeyRecord, Tenant]:
    """The key and tenant of a tenant route, after admission: 401/403 as `authorize`, 404 for an unknown
    tenant, 429 over the tenant's quota (before anything of the request is read or done)."""
    tid = request.match_info["tenant"]
    key = authorize(request, scope, tid)
    tenant = request.app[REGISTRY].tenant(tid)
    request.app[ADMISSION].admit(tenant, account_of(request))  # a refused request's CPU is its tenant's too
    return key, tenant


def account_of(request: Request) -> Account | None:
    """The CPU account of a request (provgraph.service.scheduling): the lean front end's request
    carries it, aiohttp's holds it under a key; None outside either (a handler called directly)."""
    account = getattr(request, "account", None)
    if account is None and isinstance(request, web.Request):
        account = request.get(ACCOUNT_KEY)
    return cast("Account | None", account)


def chain_of(request: Request, scope: str) -> tuple[KeyRecord, Tenant]:
    """`tenant_of` for the receipt reads, which also serve the reserved `_admin` chain (admin key
    only: no tenant key belongs to it)."""
    tid = request.match_info["tenant"]
    key = authorize(request, scope, tid)
    return key, request.app[REGISTRY].chain_tenant(tid)


@contextlib.asynccontextmanager
async def in_background(coro: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run `coro` as a task for the body of the `async with`; cancel it and wait for it on the way out."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
