"""Who may talk to a scheduler over ZeroMQ: CURVE keys and a ZAP authenticator.

A scheduler's ROUTER is a CURVE server; each worker node holds a keypair and
must know the scheduler's public key. The scheduler accepts exactly the node
public keys found in a directory (one ``NAME.key`` file each, zmq's certificate
format, as `generate_keys` writes them).

Why a ZAP handler of our own, and why it fails closed: libzmq asks a ZAP
handler (RFC 27, bound at ``inproc://zeromq.zap.01`` in the socket's context)
whether a client key may connect. Without a running handler, a CURVE server
accepts *any* client that knows its public key. `ServerSecurity` therefore sets
``ZAP_DOMAIN`` and ``ZAP_ENFORCE_DOMAIN`` on the socket: with both set, libzmq
rejects every handshake when no handler answers (checked against libzmq 4.3.5
by ``tests/test_transport_security.py``), so a stopped or missing
authenticator shuts everyone out instead of letting everyone in. The handler
itself answers 400 to anything it cannot parse, to another domain, to another
mechanism and to an unknown key.

A refused peer is dropped silently by libzmq: the server's socket monitor shows
``HANDSHAKE_FAILED_*``, the peer simply never gets through.

`ServerSecurity.reload` re-reads the key directory. ZAP is asked only during a
handshake, so a removed key stops *new* connections with that key; a peer
already connected stays connected until it disconnects (or the socket is
closed). Cutting off a connected node is the node protocol's job, not ZAP's.

Plain TCP without keys is for tests and single-machine setups only: it takes
``insecure=True`` and a loopback endpoint, and logs a WARNING each time.
"""

from __future__ import annotations

import binascii
import datetime
import ipaddress
import itertools
import os
import threading
from pathlib import Path

import zmq
from zmq.utils import z85

from actors._errors import InvalidArgument
from actors._log import nodes_logger as security_logger

__all__ = [
    "ZAP_DOMAIN",
    "ClientSecurity",
    "ServerSecurity",
    "generate_keys",
    "is_loopback",
    "load_named_keys",
    "load_public_keys",
    "load_secret_key",
]


ZAP_DOMAIN = "postroom"
"""The ZAP domain a scheduler's socket names; the authenticator answers no other."""

_ZAP_ENDPOINT = "inproc://zeromq.zap.01"
"""Where libzmq looks for the ZAP handler (RFC 27); fixed by libzmq."""

_Z85_KEY_LENGTH = 40
_PUBLIC_SUFFIX = ".key"
_SECRET_SUFFIX = ".key_secret"
_BANNER = """#   ****  Generated on {when} by postroom  ****
#   ZeroMQ CURVE {kind} Certificate
"""
_stop_ids = itertools.count()
"""Numbers the inproc endpoints that wake each authenticator thread to stop."""
_SECRET_WARNING = "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"


# --------------------------------------------------------------------------- keys


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or name in {".", ".."}:
        msg = f"key name must be a non-empty file name, got {name!r}"
        raise InvalidArgument(msg)
    if os.sep in name or (os.altsep and os.altsep in name) or "\0" in name:
        msg = f"key name must be a plain file name without a directory, got {name!r}"
        raise InvalidArgument(msg)


def _certificate(public: str, secret: str | None) -> bytes:
    kind = "Public" if secret is None else "**Secret**"
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    lines = [_BANNER.format(when=when, kind=kind)]
    if secret is not None:
        lines.append(_SECRET_WARNING)
    lines.append("metadata\ncurve\n")
    lines.append(f'    public-key = "{public}"\n')
    if secret is not None:
        lines.append(f'    secret-key = "{secret}"\n')
    return "".join(lines).encode("ascii")


def _write_new(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
    """Write ``data`` to a file that never exists with wider permissions than ``mode``.

    The file is created by ``os.open`` with ``mode`` (so there is no moment when a
    secret is world-readable, as with write-then-chmod). Overwriting goes through a
    fresh temporary file and an atomic rename, so an existing file's looser mode is
    never reused either.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    target = path.with_name(f".{path.name}.tmp") if overwrite else path
    if overwrite:
        target.unlink(missing_ok=True)
    fd = os.open(target, flags, mode)
    try:
        # The process umask may only have narrowed ``mode``; make it exact anyway
        # (fchmod on our own descriptor, before a byte of the key is written).
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if overwrite:
        os.replace(target, path)


def generate_keys(
    directory: str | os.PathLike[str], name: str, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Create a CURVE keypair as zmq certificate files ``NAME.key`` and ``NAME.key_secret``.

    The secret file is created with mode 0600 (never readable by others, not
    even for a moment); ``directory`` is created with mode 0700 if it is missing.
    The public file (0644) is the one to copy to the other side.

    Args:
        directory: where to write both files.
        name: the file name stem, e.g. ``"scheduler"`` or a node's name.
        overwrite: replace an existing keypair of that name.

    Returns:
        ``(public_path, secret_path)``.

    Raises:
        InvalidArgument: ``name`` is not a plain file name, a key of that name
            exists and ``overwrite`` is false, or the files cannot be written
            (the message names the file and the reason).
    """
    _check_name(name)
    folder = Path(directory)
    public_path = folder / f"{name}{_PUBLIC_SUFFIX}"
    secret_path = folder / f"{name}{_SECRET_SUFFIX}"
    try:
        # mkdir applies the umask to 0o700, which can only narrow it.
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not overwrite:
            for path in (public_path, secret_path):
                if path.exists():
                    msg = f"key file {path} exists; pass overwrite=True to replace it"
                    raise InvalidArgument(msg)
        public, secret = (key.decode("ascii") for key in zmq.curve_keypair())
        _write_new(secret_path, _certificate(public, secret), 0o600, overwrite=overwrite)
        _write_new(public_path, _certificate(public, None), 0o644, overwrite=overwrite)
    except FileExistsError as exc:
        msg = f"key file {exc.filename} exists; pass overwrite=True to replace it"
        raise InvalidArgument(msg) from None
    except OSError as exc:
        msg = f"cannot write key files {secret_path} and {public_path}: {exc.strerror or exc}"
        raise InvalidArgument(msg) from None
    return public_path, secret_path


def _z85_key(value: bytes, path: Path, field: str) -> bytes:
    key = value.strip().strip(b"\"'")
    try:
        if len(key) != _Z85_KEY_LENGTH or len(z85.decode(key)) != 32:
            raise ValueError(field)
    except (ValueError, KeyError, binascii.Error, IndexError, TypeError):
        msg = f"key file {path}: {field} is not a 40-character Z85 CURVE key"
        raise InvalidArgument(msg) from None
    return key


def _read_certificate(path: Path) -> tuple[bytes, bytes | None]:
    """The (public, secret or None) keys of a zmq certificate file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"cannot read key file {path}: {exc.strerror or exc}"
        raise InvalidArgument(msg) from None
    public: bytes | None = None
    secret: bytes | None = None
    for raw in data.splitlines():
        line = raw.strip()
        if line.startswith(b"#") or b"=" not in line:
            continue
        field, _, value = line.partition(b"=")
        if field.strip() == b"public-key":
            public = _z85_key(value, path, "public-key")
        elif field.strip() == b"secret-key":
            secret = _z85_key(value, path, "secret-key")
    if public is None:
        msg = f"key file {path} holds no public-key: not a zmq certificate"
        raise InvalidArgument(msg)
    return public, secret


def load_public_keys(directory: str | os.PathLike[str]) -> frozenset[bytes]:
    """The Z85 public keys of every ``*.key`` certificate in ``directory``.

    As `load_named_keys`, without the names.
    """
    return frozenset(load_named_keys(directory))


def load_named_keys(directory: str | os.PathLike[str]) -> dict[bytes, str]:
    """The Z85 public key of every ``*.key`` certificate in ``directory``, with its
    name (the file's, without ``.key``): how a scheduler names the node holding it.

    Secret files (``*.key_secret``) and other files are ignored; a ``*.key``
    file that is not a valid certificate is an error, not skipped, so a typo
    cannot silently lock a node out.

    Raises:
        InvalidArgument: the directory cannot be listed, or a ``*.key`` file
            cannot be read or holds no valid public key (the message names it).
    """
    folder = Path(directory)
    try:
        paths = sorted(p for p in folder.iterdir() if p.name.endswith(_PUBLIC_SUFFIX))
    except OSError as exc:
        msg = f"cannot read key directory {folder}: {exc.strerror or exc}"
        raise InvalidArgument(msg) from None
    return {
        _read_certificate(path)[0]: path.name[: -len(_PUBLIC_SUFFIX)]
        for path in paths
        if path.is_file()
    }


def load_secret_key(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """The ``(public, secret)`` Z85 keys of a secret certificate file (``NAME.key_secret``).

    Raises:
        InvalidArgument: the file cannot be read, or it holds no valid public
            and secret key (e.g. it is the public ``.key`` file); the message
            names the file.
    """
    file = Path(path)
    public, secret = _read_certificate(file)
    if secret is None:
        msg = f"key file {file} holds no secret-key (is it the public .key file?)"
        raise InvalidArgument(msg)
    return public, secret


def is_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint can only be reached from this machine.

    ``ipc://`` and ``inproc://`` are; ``tcp://`` is when its host is a loopback
    address or ``localhost``. Anything else (a wildcard ``*``, ``0.0.0.0``, an
    interface name, a remote host) is not.
    """
    transport, sep, rest = endpoint.partition("://")
    if not sep:
        return False
    if transport in {"ipc", "inproc"}:
        return True
    if transport != "tcp":
        return False
    host = rest.rpartition(":")[0] if ":" in rest else rest
    host = host.rpartition(";")[2]  # tcp://source;destination: the destination counts
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- server


class ServerSecurity:
    """CURVE for a scheduler's socket, and the ZAP authenticator that admits node keys.

    Build it, `apply` it to the socket before ``bind``, `close` it after the
    socket. With keys, it starts one thread (``postroom-zap``) that answers
    libzmq's ZAP requests in ``context``: only one `ServerSecurity` may run per
    context.

    Args:
        context: the ZeroMQ context of the socket to protect.
        secret_key: the scheduler's secret certificate file (`generate_keys`).
        authorized: the directory of the node public keys to accept.
        insecure: no keys at all: plain TCP, and only on a loopback endpoint.

    Raises:
        InvalidArgument: keys are missing without ``insecure=True``, keys are
            given with it, a key file or directory is unusable, or another
            authenticator already runs in ``context``.
    """

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        *,
        secret_key: str | os.PathLike[str] | None = None,
        authorized: str | os.PathLike[str] | None = None,
        insecure: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop: zmq.Socket[bytes] | None = None
        self._insecure = insecure
        if insecure:
            if secret_key is not None or authorized is not None:
                msg = "insecure=True takes no keys: drop secret_key and authorized, or insecure"
                raise InvalidArgument(msg)
            self._keys: dict[bytes, str] = {}
            self._authorized: Path | None = None
            self._public = self._secret = b""
            return
        if secret_key is None or authorized is None:
            msg = (
                "a scheduler's socket needs secret_key= and authorized= (a directory of "
                "node public keys); plain TCP only with insecure=True on loopback"
            )
            raise InvalidArgument(msg)
        self._public, self._secret = load_secret_key(secret_key)
        self._authorized = Path(authorized)
        self._keys = load_named_keys(self._authorized)
        self._start(context)

    @property
    def public_key(self) -> bytes:
        """The scheduler's Z85 public key (``b""`` when insecure)."""
        return self._public

    @property
    def authorized_keys(self) -> frozenset[bytes]:
        """The node public keys admitted now."""
        return frozenset(self._keys)

    def apply(self, socket: zmq.Socket[bytes], endpoint: str) -> None:
        """Make ``socket`` a CURVE server admitting only authorized keys; call before ``bind``.

        Raises:
            InvalidArgument: insecure and ``endpoint`` is not loopback, or this
                `ServerSecurity` is closed.
        """
        if self._insecure:
            if not is_loopback(endpoint):
                msg = (
                    f"refusing plain (insecure) TCP on {endpoint}: it is not a loopback "
                    "address; give keys (CURVE) to listen on other addresses"
                )
                raise InvalidArgument(msg)
            security_logger.warning(
                "listening on %s WITHOUT authentication or encryption (insecure=True): "
                "any local process can connect",
                endpoint,
            )
            return
        with self._lock:
            if self._thread is None:
                msg = "this ServerSecurity is closed"
                raise InvalidArgument(msg)
        socket.curve_secretkey = self._secret
        socket.curve_publickey = self._public
        socket.curve_server = True
        # Both options, or libzmq admits everyone when no ZAP handler answers.
        socket.zap_domain = ZAP_DOMAIN.encode()
        socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)

    def reload(self) -> frozenset[bytes]:
        """Re-read the key directory; returns the keys now admitted.

        New handshakes use the new set at once. A peer already connected with a
        removed key stays connected (ZAP is asked only during a handshake)
        until it disconnects; its reconnection is refused. On an error the old
        set stays in force.

        Raises:
            InvalidArgument: the directory or a key file is unusable (nothing changes).
        """
        if self._authorized is None:
            return frozenset()
        keys = load_named_keys(self._authorized)
        # One reference assignment: the ZAP thread sees the old set or the new one.
        self._keys = keys
        security_logger.info("reloaded %d node keys from %s", len(keys), self._authorized)
        return frozenset(keys)

    def close(self) -> None:
        """Stop the authenticator and join its thread. Idempotent.

        A socket still carrying these options then refuses every new peer.
        """
        with self._lock:
            thread, stop = self._thread, self._stop
            self._thread = self._stop = None
        if thread is None or stop is None:
            return
        stop.send(b"")
        thread.join()
        stop.close(linger=0)

    def __enter__(self) -> ServerSecurity:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        handler: zmq.Socket[bytes] = context.socket(zmq.REP)
        handler.linger = 0
        try:
            handler.bind(_ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            handler.close()
            msg = (
                f"cannot start the ZAP authenticator: {exc.strerror} "
                "(another one already runs in this ZeroMQ context?)"
            )
            raise InvalidArgument(msg) from None
        wake = f"inproc://postroom-zap-stop-{os.getpid()}-{next(_stop_ids)}"
        inbox: zmq.Socket[bytes] = context.socket(zmq.PAIR)
        inbox.bind(wake)
        stop: zmq.Socket[bytes] = context.socket(zmq.PAIR)
        stop.connect(wake)
        # Sockets move to the new thread here: Thread.start is a full barrier,
        # and this thread never touches ``handler`` or ``inbox`` again.
        self._stop = stop
        self._thread = threading.Thread(
            target=self._serve, args=(handler, inbox), name="postroom-zap", daemon=True
        )
        self._thread.start()

    def _serve(self, handler: zmq.Socket[bytes], inbox: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(handler, zmq.POLLIN)
        poller.register(inbox, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if inbox in ready:
                    return
                if handler in ready:
                    handler.send_multipart(self._answer(handler.recv_multipart()))
        finally:
            # Unbinding the handler is what makes libzmq refuse every later peer.
            handler.close(linger=0)
            inbox.close(linger=0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        """One ZAP reply (RFC 27): 200 for an authorized CURVE key, 400 for anything else."""
        if len(request) < 6 or request[0] != b"1.0":
            # Not a request we can parse: refuse it, still in the ZAP reply shape.
            request_id = request[1] if len(request) > 1 else b""
            return [b"1.0", request_id, b"400", b"malformed ZAP request", b"", b""]
        _, request_id, domain, address, _identity, mechanism, *credentials = request
        curve = mechanism == b"CURVE" and len(credentials) == 1 and len(credentials[0]) == 32
        key = z85.encode(credentials[0]) if curve else b""
        if domain != ZAP_DOMAIN.encode():
            reason = b"unknown domain"
        elif not curve:
            reason = b"CURVE required"
        elif (name := self._keys.get(key)) is None:
            reason = b"unknown key"
        else:
            # The user id a message carries (``User-Id``) is the key's name:
            # how the scheduler names the node in its figures.
            return [b"1.0", request_id, b"200", b"OK", name.encode(), b""]
        security_logger.debug(
            "refused a peer from %s: %s (key %s)",
            address.decode(errors="replace"),
            reason.decode(),
            key.decode(errors="replace") or "-",
        )
        return [b"1.0", request_id, b"400", reason, b"", b""]


# --------------------------------------------------------------------------- client


class ClientSecurity:
    """CURVE for a node's socket: its own keypair and the scheduler's public key.

    Args:
        secret_key: the node's secret certificate file (``NAME.key_secret``).
        server_key: the scheduler's public certificate file (``NAME.key``).

    Raises:
        InvalidArgument: a key file is unusable (the message names it).
    """

    def __init__(
        self, *, secret_key: str | os.PathLike[str], server_key: str | os.PathLike[str]
    ) -> None:
        self._public, self._secret = load_secret_key(secret_key)
        self._server = _read_certificate(Path(server_key))[0]

    @property
    def public_key(self) -> bytes:
        """The node's Z85 public key: the scheduler must have it in its directory."""
        return self._public

    def apply(self, socket: zmq.Socket[bytes]) -> None:
        """Make ``socket`` a CURVE client of the scheduler; call before ``connect``."""
        socket.curve_secretkey = self._secret
        socket.curve_publickey = self._public
        socket.curve_serverkey = self._server
