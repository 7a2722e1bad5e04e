"""uvicorn's HTTP/1.1 protocol (httptools) with the ASGI zero-copy send extension: a stored file's bytes go from the
page cache to the socket (sendfile(2)) without being read into the worker.

A warm tile of the shared tile store (server/tiles/shared.py) was read into a bytes object (one copy out of the page
cache) and written to the socket (a second copy into the kernel's buffers): the two copies were 23 % of a worker's
CPU on 1M points at the default 32 MB tile LRU (perf: `_copy_from_iter` 14.7 %, `_copy_to_iter` 8.4 %), where nginx
sends the same files with sendfile. The ASGI spec's extension for it ("http.response.zerocopysend",
https://asgi.readthedocs.io/en/latest/extensions.html) is advertised in `scope["extensions"]` and an app may then
send, after `http.response.start` with a Content-Length:

    {"type": "http.response.zerocopysend", "file": <file object or descriptor>, "offset": 0, "count": N,
     "more_body": False}

It is offered only where the bytes may go to the socket as they are: a plain TCP connection (never TLS, whose bytes
must be encrypted on their way). Sent only while nothing else waits in the transport's buffer (the bytes keep their
order); whatever sendfile does not take at once (a full socket buffer, a file system without it) is read and
written the usual way, so the answer is whole either way.

On such connections a response's head (status line and headers) of a known length is also held until its body's
first bytes and both leave in one call (`MSG_MORE` before sendfile, one `writelines` otherwise): one segment and one
wake-up of the client instead of two; a streamed answer's head (chunked, no length) is written at once. Warm tiles
of the shared store, 1M points, default 32 MB LRU, 2 workers: worker CPU per tile 167-196 us before, 132-157 with
sendfile, 118-143 with the head held as well (benchmarks/README.md, "Stored tiles sent with sendfile").

uvicorn has no such extension; this subclass adds it to its httptools protocol (`python -m server` passes it as
uvicorn's `http`; pyproject pins uvicorn's minor version), everything else is uvicorn's own.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import is_ssl

ZERO_COPY_SEND = "http.response.zerocopysend"
SENDS_FILES = hasattr(os, "sendfile")  # not on Windows
MSG_MORE = getattr(socket, "MSG_MORE", 0)  # Linux's; elsewhere the head is simply sent first


def sends_files(scope: dict) -> bool:
    """Whether the server of this request takes `http.response.zerocopysend` messages."""
    return ZERO_COPY_SEND in scope.get("extensions", ())


class HeldHead:
    """The connection's transport as a cycle writes to it, holding a response's head (status line and headers)
    until its body's first bytes so that both go out in one call (one segment on the wire, one wake-up of the
    client) instead of two."""

    __slots__ = ("transport", "head", "holding")

    def __init__(self, transport: asyncio.Transport):
        self.transport = transport
        self.head: bytes | None = None
        self.holding = False

    def write(self, data: bytes) -> None:
        if self.holding:
            self.head, self.holding = data, False
        elif self.head is not None:
            head, self.head = self.head, None
            self.transport.writelines((head, data))
        else:
            self.transport.write(data)

    def flush(self) -> None:
        if self.head is not None:
            head, self.head = self.head, None
            self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + (len(self.head) if self.head is not None else 0)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)


class ZeroCopyCycle(RequestResponseCycle):
    """uvicorn's request-response cycle that also takes `http.response.zerocopysend`."""

    # the connection's socket, set by ZeroCopyHttpToolsProtocol: its descriptor and family
    socket_fd: int = -1
    socket_family: int = socket.AF_INET

    def _send_more(self, head: bytes) -> int:
        """`head` on the socket with MSG_MORE (the kernel waits for what follows to fill the segment): the bytes it
        took. A socket object over the descriptor for this one call, detached so that it never closes it."""
        sock = socket.socket(self.socket_family, socket.SOCK_STREAM, 0, fileno=self.socket_fd)
        try:
            return sock.send(head, MSG_MORE)
        except (BlockingIOError, InterruptedError):
            return 0
        finally:
            sock.detach()

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == ZERO_COPY_SEND:
            message = self._sent_from_file(message)
        elif kind == "http.response.start" and not self.response_started:
            held = self.transport
            held.holding = True  # type: ignore[attr-defined]
            try:
                await super().send(message)
            finally:
                held.holding = False  # type: ignore[attr-defined]
            if self.chunked_encoding is not False or self.scope["method"] == "HEAD":
                held.flush()  # type: ignore[attr-defined]
            return
        await super().send(message)

    def _sent_from_file(self, message: Any) -> dict:
        """Send what sendfile takes of the file now; the rest as the `http.response.body` uvicorn then writes (and
        checks against Content-Length, completes the response, keeps the connection alive) as for any body."""
        file = message["file"]
        fd = file if isinstance(file, int) else file.fileno()
        offset = message.get("offset") or 0
        count = message.get("count")
        if count is None:
            count = os.fstat(fd).st_size - offset
        more_body = message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            return {"type": "http.response.body", "body": b"", "more_body": more_body}
        sent = 0
        held = self.transport
        if (
            self.response_started
            and not self.response_complete
            and not self.disconnected
            and self.chunked_encoding is False
            and 0 < count <= self.expected_content_length
            and not self.transport.is_closing()
            and held.transport.get_write_buffer_size() == 0  # type: ignore[attr-defined]
        ):
            try:
                head = held.head  # type: ignore[attr-defined]
                if head is not None:
                    written = self._send_more(head)
                    held.head = head[written:] if written < len(head) else None  # type: ignore[attr-defined]
                if held.head is None:  # type: ignore[attr-defined]
                    sent = os.sendfile(self.socket_fd, fd, offset, count)
            except (BlockingIOError, InterruptedError):
                sent = 0  # the socket's buffer is full: the rest of the head and the file the usual way
            except OSError:
                sent = 0  # a file or socket sendfile cannot take (or a connection reset: the write below sees it)
            self.expected_content_length -= sent
        rest = os.pread(fd, count - sent, offset + sent) if sent < count else b""
        if not rest:
            held.flush()  # type: ignore[attr-defined]  # an empty file: the head alone
        return {"type": "http.response.body", "body": rest, "more_body": more_body}


class ZeroCopyHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose requests on a plain TCP connection may send files with sendfile."""

    socket_fd: int | None = None
    socket_family: int = socket.AF_INET

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if SENDS_FILES and sock is not None and not is_ssl(transport):
            self.socket_fd, self.socket_family = sock.fileno(), sock.family

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.socket_fd is not None:
            self.scope["extensions"] = {ZERO_COPY_SEND: {}}  # type: ignore[typeddict-unknown-key]

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if self.socket_fd is not None:
            cycle.transport = HeldHead(self.transport)
            # uvicorn makes its cycle inside on_headers_complete; it becomes ours here, before the app gets its
            # `send` (the same object: the subclass adds a method and a field, no state of its own)
            cycle.__class__ = ZeroCopyCycle
            cycle.socket_fd, cycle.socket_family = self.socket_fd, self.socket_family  # type: ignore[attr-defined]
        super()._start_asgi_task(cycle, app)
