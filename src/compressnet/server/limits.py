"""Limits the server holds every request to, before and while it reads it.

- :class:`BodyLimit`: an upload's bytes. A declared ``Content-Length`` above the limit is
  answered 413 at once, before any of the body is read (a client that declares a gigabyte and
  sends a trickle would otherwise hold a connection open); a body that streams past the limit
  without declaring it is cut off with the same 413.
- :class:`TimeLimit`: a job's seconds. Model work checks it at every progress step (each stage,
  each tile of a network), so a request that runs past it stops there and answers 503.
"""

from __future__ import annotations

import json
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large(limit: int) -> str:
    return f"upload too large (limit {limit:,} bytes)"


class BodyLimit:
    """ASGI middleware: at most ``max_body`` bytes of request body (the upload plus the form's
    own few bytes); ``max_upload`` is what the message quotes."""

    def __init__(self, app: ASGIApp, max_body: int, max_upload: int) -> None:
        self.app, self.max_body, self.max_upload = app, max_body, max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._refuse(send)  # the body is never read; the server closes the connection
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:  # FastAPI passes an HTTPException from the body through
                raise HTTPException(413, too_large(self.max_upload))
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": too_large(self.max_upload)}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class JobTimeout(Exception):
    """A job ran past the server's time limit."""


class TimeLimit:
    """A deadline ``seconds`` after :meth:`start`; :meth:`check` raises :class:`JobTimeout`
    past it (0: no limit)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = float("inf")

    def start(self) -> TimeLimit:
        if self.seconds > 0:
            self.deadline = time.monotonic() + self.seconds
        return self

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise JobTimeout(f"the request took longer than this server's limit of {self.seconds:g} s "
                             "(compressnet serve --time-limit); try a smaller image or fewer refine steps")
