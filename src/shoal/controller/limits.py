"""Request bodies: how big per route, and how deeply nested, checked before use.

A pure ASGI middleware, so that nothing is buffered before the checks:

* a body larger than its route allows is refused with 413 from its
  ``Content-Length`` alone, before a byte of it is read; a body without one
  (chunked) is counted as it arrives and refused once it passes the limit;
* a JSON body nested deeper than ``MAX_DEPTH`` is refused with 400 on every
  route, before any parser recurses into it (Python's parser raises
  ``RecursionError`` a little below 1000 levels, which was a 500).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_DEPTH = 256  # JSON nesting levels any route accepts; real bodies use a handful
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPENERS = re.compile(rb"[\[{]+")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class BodyTooLarge(HTTPException):
    """A body passed its route's limit while being read (chunked, no Content-Length).

    An HTTPException, so that it is answered as a 413 wherever a route reads the
    body (FastAPI turns other errors while reading a body into a vague 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit))


@dataclass(frozen=True)
class BodyLimits:
    """Largest request body per route: ``rules`` are (path pattern, bytes), first
    match wins; other routes get ``default``."""

    default: int
    rules: tuple[tuple[re.Pattern[str], int], ...] = ()

    def for_path(self, path: str) -> int:
        for pattern, limit in self.rules:
            if pattern.fullmatch(path):
                return limit
        return self.default


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Is the JSON in ``body`` nested more than about ``limit`` levels deep?

    Exact up to ``limit`` (never refuses a body at most ``limit`` deep) and sure
    beyond ``2 * limit``; in C-speed passes over the bytes, so a large flat body
    (a base64 pipeline) costs next to nothing.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    # Each pass removes the innermost pairs: at least one level, at most two.
    for passes in range(limit):
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(brackets):
            # Done, or brackets left unclosed: a parser still nests into a run
            # of openers before it finds out.
            run = max((len(m) for m in _OPENERS.findall(brackets)), default=0)
            return passes + run > limit
        brackets = shorter
    return bool(brackets)


def _too_large(limit: int) -> str:
    return f"the request body is larger than this route accepts ({_size(limit)})"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if unit == "bytes" else f"{n:.4g} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _is_form(content_type: str) -> bool:
    return content_type.startswith(("application/x-www-form-urlencoded", "multipart/"))


class RequestLimits:
    """The ASGI middleware: body size per route, JSON depth everywhere."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked, content_type = None, False, ""
        for key, value in scope["headers"]:  # the server gives names in lower case
            if key == b"content-length":
                declared = value
            elif key == b"transfer-encoding":
                chunked = True
            elif key == b"content-type":
                content_type = value.decode("latin-1").lower()
        if not chunked and declared in (None, b"0"):
            await self.app(scope, receive, send)  # no body (every GET, most flag calls)
            return
        limit = self.limits.for_path(scope["path"])
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _answer(send, 400, "Content-Length is not a number")
                return
            if size > limit:
                await _answer(send, 413, _too_large(limit))
                return
        if _is_form(content_type):
            await self.app(scope, _counting(receive, limit), send)
            return
        # JSON (or what a route may parse as JSON): read it whole, within the
        # limit, and look at its depth before any parser does.
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await _answer(send, 413, _too_large(limit))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        del chunks
        if too_deep(body):
            await _answer(
                send, 400, f"the JSON body is nested too deeply (more than {MAX_DEPTH} levels)"
            )
            return
        await self.app(scope, _replay(body, receive), send)


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect

    return replay


async def _answer(send: Send, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
