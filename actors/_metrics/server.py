"""`MetricsServer`: a registry's ``/metrics`` over HTTP, on a thread it owns and joins."""

from __future__ import annotations

import itertools
import selectors
import socket
import socketserver
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

from actors._errors import InvalidArgument
from actors._log import metrics_logger as logger

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["Handler", "MetricsServer", "Server"]


_numbers = itertools.count(1)

_CLIENT_TIMEOUT = 5.0
"""Seconds a client may take to send its request; the server serves one at a time."""


class Handler(WSGIRequestHandler):
    """wsgiref's handler, quiet, with a timeout on each read and write."""

    timeout = _CLIENT_TIMEOUT

    def log_message(self, format: str, *args: object) -> None:
        # wsgiref writes every request to stderr; a library stays quiet.
        logger.debug("metrics: " + format, *args)


class Server(WSGIServer):
    """wsgiref's server, bound without a DNS lookup, its errors logged."""

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        handler: type[WSGIRequestHandler] = Handler,
    ) -> None:
        self.address_family = family
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's FQDN up, which can wait on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def handle_error(self, request: object, client_address: object) -> None:
        # socketserver prints the traceback to stderr; ours go to the logger.
        logger.exception("metrics: error serving %r", client_address)

    def stopping(self) -> None:
        """`MetricsServer.stop` is about to join the serving thread: wake it if it waits."""


def _only_metrics(app: WSGIApplication) -> WSGIApplication:
    def serve(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/metrics":
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: metrics are at /metrics\n"]

    return serve


class MetricsServer:
    """Serves a registry's metrics at ``http://addr:port/metrics`` on a thread of its own.

    Requests are served one at a time: a scrape is quick, and one thread is
    all the server adds to the process. A client gets 5 seconds per read or
    write before it is dropped, which bounds how long a stalled one holds up
    the next scrape, or `stop`. `stop` shuts the server down and joins its
    thread; `start` again binds the same port.

    Raises:
        InvalidArgument: ``port`` is not an int from 0 to 65535, or ``addr`` is
            not a non-empty str.
    """

    def __init__(
        self, port: int, *, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None
    ) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            msg = f"port must be an int from 0 to 65535, not {port!r}"
            raise InvalidArgument(msg)
        if not isinstance(addr, str) or not addr:
            msg = f"addr must be a non-empty str (a host or an IP address), not {addr!r}"
            raise InvalidArgument(msg)
        self.addr = addr
        """The address to listen on, as given."""
        self.port = port
        """The port: as given until `start`, then the bound one (useful with 0, any free port)."""
        self._registry = REGISTRY if registry is None else registry
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None

    _what = "metrics"
    """What the server serves, for an error's message."""
    _thread_name = "Metrics"

    @property
    def url(self) -> str:
        """Where the metrics are served (meaningful once started)."""
        return f"{self._root()}/metrics"

    def _root(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}"

    def _make_server(self, address: tuple[str, int], family: socket.AddressFamily) -> Server:
        """The server that binds ``address`` (a subclass serves otherwise)."""
        return Server(address, family)

    def _app(self) -> WSGIApplication:
        """What the server answers with."""
        return _only_metrics(make_wsgi_app(self._registry))

    def start(self) -> None:
        """Bind and start serving; does nothing if already serving.

        Raises:
            InvalidArgument: the address cannot be bound (in use, not local,
                unknown host); the `OSError` is the ``__cause__``.
        """
        with self._lock:
            if self._thread is not None:
                return
            try:
                infos = socket.getaddrinfo(self.addr, self.port, type=socket.SOCK_STREAM)
                server = self._make_server((self.addr, self.port), infos[0][0])
            except OSError as exc:
                msg = f"cannot serve {self._what} on addr={self.addr!r} port={self.port!r}: {exc}"
                raise InvalidArgument(msg) from exc
            server.set_app(self._app())
            server.socket.setblocking(False)  # accept never waits: see _serve
            self.port = int(server.server_address[1])
            wake = socket.socketpair()
            thread = threading.Thread(
                target=self._serve,
                args=(server, wake[0]),
                name=f"postroom-{self._thread_name}-{next(_numbers)}",
                # Daemon: Python joins non-daemon threads before atexit handlers run,
                # so one would hang the exit of a program that relies on atexit to
                # shut its scheduler down. stop() joins it all the same.
                daemon=True,
            )
            thread.start()
            self._server, self._thread, self._wake = server, thread, wake

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread; does nothing if not serving."""
        with self._lock:
            server, thread, wake = self._server, self._thread, self._wake
            self._server = self._thread = self._wake = None
        if server is None or thread is None or wake is None:
            return
        wake[1].send(b"x")
        server.stopping()
        thread.join()
        server.server_close()
        for end in wake:
            end.close()

    def _close_in_child(self) -> None:
        """After `os.fork()`, in the child: close its copies of the sockets.

        The serving thread stayed in the parent; the listening socket's copy
        here would keep the port bound for as long as the child lives, after
        the parent stops serving, and take connections nobody answers. No
        lock: the parent's thread may have held it at the fork.
        """
        server, wake = self._server, self._wake
        self._server = self._thread = self._wake = None
        if server is not None:
            server.socket.close()
        for end in wake or ():
            end.close()

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    def _serve(server: Server, wake: socket.socket) -> None:
        # Not serve_forever: its shutdown() waits up to a poll interval; a wake-up
        # socket makes stop() immediate and the loop sleeps until there is work.
        with selectors.DefaultSelector() as selector:
            selector.register(server.socket, selectors.EVENT_READ, "accept")
            selector.register(wake, selectors.EVENT_READ, "stop")
            while True:
                events = selector.select()
                if any(key.data == "stop" for key, _ in events):
                    return
                # One request, read and answered; a client that connected and left
                # makes accept fail at once (non-blocking), not wait.
                server.handle_request()
