"""Bounded request bodies: refuse what is too large before it is read, and stop while reading.

A body whose ``Content-Length`` announces more than the limit is refused at once; a body sent
without one (chunked) is counted while it streams and dropped the moment it passes the limit,
so no route ever holds, parses or spools more than its limit. Used by the inspection API
(:mod:`api.app`, images up to 50 MB) and the sign-in cookie route (:mod:`loupe.web`, a few
hundred bytes of JSON).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


class BodyTooLarge(Exception):  # noqa: N818 - reads as the situation
    """The request body is, or announces to be, larger than the route accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes.")
        self.limit = limit


def announced_too_large(request: Request, limit: int) -> bool:
    """Whether the request's ``Content-Length`` announces more than ``limit`` bytes."""
    declared = request.headers.get("content-length", "").strip()
    return declared.isdigit() and int(declared) > limit


async def capped_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body's chunks, raising :class:`BodyTooLarge` once they pass ``limit``.

    Raises:
        BodyTooLarge: Announced or found to be over ``limit`` bytes (before any chunk past
            the limit is yielded).
    """
    if announced_too_large(request, limit):
        raise BodyTooLarge(limit)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        yield chunk


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole request body, at most ``limit`` bytes.

    Raises:
        BodyTooLarge: Announced or found to be over ``limit`` bytes.
    """
    return b"".join([chunk async for chunk in capped_stream(request, limit)])


class AnnouncedBodyLimit:
    """ASGI middleware: answer 413 to any HTTP request announcing a body over ``limit`` bytes.

    The body is never read; a route that reads one still counts it while it streams
    (:func:`capped_stream`), for bodies sent without ``Content-Length``.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse an announced oversized body, else pass the request on."""
        if scope["type"] == "http":
            request = Request(scope)
            if announced_too_large(request, self.limit):
                message = f"The request body is larger than {self.limit // (1024 * 1024)} MB."
                body = {"error": {"code": "too_large", "message": message}}
                response = JSONResponse(body, status_code=413, headers={"Connection": "close"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
