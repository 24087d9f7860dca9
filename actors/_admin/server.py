"""`AdminServer`: the admin API and ``/metrics`` on one port, a bounded thread each request.

A `MetricsServer` serves one request at a time, which suits a scrape; an
operator's API cannot let one slow client stall everyone, so this one hands
each connection to a thread of its own, at most `MAX_THREADS` at once (the
next waits to be accepted until one ends: a client holds a thread for at most
`REQUEST_DEADLINE` while it sends). `stop` cuts the open connections and joins
every thread.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import socket
import sys
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, make_wsgi_app

from actors._admin.api import AdminApp
from actors._log import admin_logger as logger
from actors._metrics.server import Handler, MetricsServer, Server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["MAX_THREADS", "REQUEST_DEADLINE", "AdminServer"]

MAX_THREADS = 16
"""Requests served at once by one `AdminServer`."""

_numbers = itertools.count(1)


_CODES = {400: "bad_request", 408: "bad_request", 413: "too_large", 414: "uri_too_long",
          431: "too_large"}  # fmt: skip
"""The API's error codes for what the HTTP layer refuses before the app sees it."""


REQUEST_DEADLINE = 10.0
"""Seconds a client has to send a whole request (line, headers and body), however
it trickles it: each read also waits at most the client timeout (5 s)."""


class _DeadlineReader(io.RawIOBase):
    """A socket's input that refuses to wait past a deadline.

    A per-read timeout alone lets a client that sends a byte every few seconds
    hold a thread for ever; this bounds the whole request.
    """

    def __init__(self, sock: socket.socket, deadline: float, per_read: float | None) -> None:
        self._sock = sock
        self._deadline = deadline
        self._per_read = per_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            msg = "the request did not arrive within the deadline"
            raise TimeoutError(msg)
        self._sock.settimeout(left if self._per_read is None else min(left, self._per_read))
        return self._sock.recv_into(buffer)


class _AdminHandler(Handler):
    deadline = REQUEST_DEADLINE

    def setup(self) -> None:
        super().setup()
        # The file setup() made holds a reference on the socket: closed, or the
        # socket's descriptor would stay open after the request.
        self.rfile.close()
        raw = _DeadlineReader(self.connection, time.monotonic() + self.deadline, self.timeout)
        self.rfile = io.BufferedReader(raw, self.rbufsize if self.rbufsize > 0 else 8192)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("admin: " + format, *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server answers a request line or headers it cannot take with an
        # HTML page; the API's clients read JSON with an error code.
        error = _CODES.get(code, "bad_request")
        text = message or self.responses.get(code, ("error",))[0]
        body = json.dumps({"error": error, "message": text}).encode()
        self.close_connection = True
        try:
            self.send_response(code, text)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200:
                self.wfile.write(body)
        except OSError:
            pass  # the client left: nothing to tell it


class _ThreadingServer(Server):
    """A `Server` that serves each connection on a thread, at most `MAX_THREADS` at once."""

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        super().__init__(address, family, _AdminHandler)
        self._slots = threading.Semaphore(MAX_THREADS)
        self._threads: set[threading.Thread] = set()
        self._requests: set[Any] = set()
        self._lock = threading.Lock()
        self._closing = False

    def process_request(self, request: Any, client_address: Any) -> None:
        # Waits for a free slot on the serving thread: the connections behind
        # wait in the listen backlog, as they would for a busy server.
        self._slots.acquire()
        if self._closing:
            self._slots.release()
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._work,
            args=(request, client_address),
            name=f"postroom-Admin-request-{next(_numbers)}",
            daemon=True,  # as the serving thread: stop() joins it all the same
        )
        with self._lock:
            self._threads.add(thread)
            self._requests.add(request)
        thread.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - as socketserver's own: logged, the thread goes on
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._threads.discard(threading.current_thread())
                self._requests.discard(request)
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            # A client that stalled past the timeout, or left: theirs, not ours.
            logger.debug("admin: %r: %s", client_address, exc)
            return
        logger.exception("admin: error serving %r", client_address)

    def stopping(self) -> None:
        self._closing = True
        self._slots.release()  # the serving thread may wait for a slot

    def server_close(self) -> None:
        super().server_close()
        with self._lock:
            threads = list(self._threads)
            requests = list(self._requests)
        # A client that stalls would hold stop() for its timeout: cut them all,
        # their threads then end at once (an answer being written is lost: the
        # server is going away).
        for request in requests:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join()


class AdminServer(MetricsServer):
    """Serves the admin API (`Scheduler.serve_admin`) at ``http://addr:port/``, with
    ``/metrics`` on the same port, on threads of its own.

    Each request is served on a thread (at most 16 at once); a client gets 5
    seconds per read or write, and 10 to send its whole request, before it is
    dropped. `stop` shuts the server down, cuts the connections still open and
    joins every thread; `start` again binds the same port.

    Raises:
        InvalidArgument: ``port`` is not an int from 0 to 65535, or ``addr`` is
            not a non-empty str.
    """

    _what = "the admin API"
    _thread_name = "Admin"

    def __init__(
        self,
        port: int,
        *,
        app: AdminApp,
        addr: str = "127.0.0.1",
        registry: CollectorRegistry | None = None,
        metrics: bool = True,
    ) -> None:
        super().__init__(port, addr=addr, registry=registry)
        self.app = app
        """The WSGI app served."""
        self._with_metrics = metrics

    @property
    def token(self) -> str | None:
        """The bearer token mutations need (generated if none was given; None read-only)."""
        return self.app.token

    @property
    def read_only(self) -> bool:
        """Whether every mutation is refused."""
        return self.app.read_only

    @property
    def url(self) -> str:
        """Where the server answers, ending in ``/`` (meaningful once started)."""
        return f"{self._root()}/"

    def _make_server(self, address: tuple[str, int], family: socket.AddressFamily) -> Server:
        return _ThreadingServer(address, family)

    def _app(self) -> WSGIApplication:
        admin = self.app
        metrics = make_wsgi_app(self._registry) if self._with_metrics else None

        def serve(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            if metrics is not None and environ.get("PATH_INFO") == "/metrics":
                answer: Iterable[bytes] = metrics(environ, start_response)
                return answer
            return admin(environ, start_response)

        return serve
