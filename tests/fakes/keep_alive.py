"""Connections kept open between requests, as Google's and Instantly's servers keep them.

werkzeug's development server closes the connection after every response: Python's
http.server cannot tell where an unread request body ends, so it could not find the next
request line. A benchmark run against it pays a TCP connect (and the fake a new thread)
on every call, which the product never pays in production: it keeps one session per
worker thread precisely so its connections stay open.

``keeping_connections_open(handler)`` is ``handler`` that reads what the application
left unread of a request body (its Content-Length is known) and then leaves the
connection open for the next request. A chunked request body, or a client asking to
close, still closes it; an idle connection is closed after ``IDLE_SECONDS``, as servers
do, or at once by ``close_idle()`` (a test's way to make a client's pooled connection go
stale). Benchmarks turn it on (``keep_alive=True`` on the fakes); the tests run with
werkzeug's closing behaviour, except those about kept connections.
"""

from __future__ import annotations

import io
import socket
import threading
from typing import Any, NoReturn

from werkzeug.serving import WSGIRequestHandler

IDLE_SECONDS = 30.0


def drop_connection(environ: dict[str, Any]) -> NoReturn:
    """End the request's connection without a byte of answer, as a restarting server or
    a load balancer does: the client sees RemoteDisconnected. Raise it from a WSGI app;
    werkzeug takes the error for a client that went away and closes its side quietly."""
    environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
    raise ConnectionAbortedError("fake: connection dropped")


class _CountingInput(io.RawIOBase):
    """The request body as the application reads it, never past its Content-Length."""

    def __init__(self, raw: Any, length: int) -> None:
        self._raw = raw
        self.left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)[: self.left]
        if not len(view):
            return 0
        n = self._raw.readinto(view)
        self.left -= n or 0
        return n or 0

    def drain(self) -> None:
        while self.left and self.read(min(self.left, 65536)):
            pass


class _NothingMore:
    """Stands in for the connection's input once the request is read: werkzeug reads
    whatever else arrives after each response and throws it away, which on a kept
    connection would be the next request."""

    def read(self, _size: int = -1) -> bytes:
        return b""


def keeping_connections_open(
    handler: type[WSGIRequestHandler],
) -> type[WSGIRequestHandler]:
    class KeepAlive(handler):  # type: ignore[misc, valid-type]
        timeout = IDLE_SECONDS
        _body: _CountingInput | None = None
        # Each open connection, and whether a request on it is being answered.
        _open: dict[socket.socket, bool] = {}
        _open_changed = threading.Condition()

        def setup(self) -> None:
            super().setup()
            # Headers and body go out as separate small writes; on a connection that
            # stays open, Nagle's algorithm would hold the body back for the client's
            # delayed ACK (40 ms), which closing the connection used to flush.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._mark(busy=False)

        def finish(self) -> None:
            with self._open_changed:
                self._open.pop(self.connection, None)
                self._open_changed.notify_all()
            super().finish()

        def _mark(self, *, busy: bool) -> None:
            with self._open_changed:
                self._open[self.connection] = busy
                self._open_changed.notify_all()

        @classmethod
        def close_idle(cls, timeout: float = 5.0) -> int:
            """Close every open connection once no request on it is being answered, as a
            server's idle timeout does, and wait until their handlers are gone. Returns
            how many. (A client has its answer slightly before the handler is done.)"""
            with cls._open_changed:
                cls._open_changed.wait_for(lambda: not any(cls._open.values()), timeout)
                idle = list(cls._open)
                for sock in idle:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # the client closed it first
                cls._open_changed.wait_for(
                    lambda: not any(sock in cls._open for sock in idle), timeout
                )
            return len(idle)

        def run_wsgi(self) -> None:
            self._mark(busy=True)
            try:
                self._answer_keeping_open()
            finally:
                self._mark(busy=False)

        def _answer_keeping_open(self) -> None:
            length = self.headers.get("Content-Length") or "0"
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            if chunked or not length.isdigit():
                self._body = None  # werkzeug's way: read it all, then close
                super().run_wsgi()
                return
            real, self._body = self.rfile, _CountingInput(self.rfile, int(length))
            self.rfile = _NothingMore()  # type: ignore[assignment]
            try:
                super().run_wsgi()
            finally:
                self.rfile = real
            if not self.close_connection:
                self._body.drain()

        def make_environ(self) -> dict[str, Any]:
            environ = super().make_environ()
            if self._body is not None:
                environ["wsgi.input"] = self._body
            return environ

        def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
            if format.startswith("Request timed out"):
                return  # a connection idle for IDLE_SECONDS, closed as intended
            super().log_error(format, *args)

        def send_header(self, keyword: str, value: str) -> None:
            if keyword.lower() == "connection" and value.lower() == "close" and (
                self._body is not None
            ):
                return  # werkzeug's blanket close; the connection stays open
            super().send_header(keyword, value)

    KeepAlive.__name__ = KeepAlive.__qualname__ = f"KeepAlive{handler.__name__}"
    return KeepAlive
