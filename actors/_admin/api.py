"""`AdminApp`: the admin API as a WSGI app (routing, JSON, auth, limits).

Every answer is JSON, an error one ``{"error": CODE, "message": text}`` with a
stable CODE (docs/admin.md lists them). What a client sends never makes a 500:
sizes are checked before anything is read, ids and parameters before anything
is asked, and the source's errors are translated to their codes. An error the
app did not expect is a postroom bug: logged with its traceback on
``postroom.admin`` and answered 500 ``internal``.

Reads need no token; a mutation needs ``Authorization: Bearer <token>``. A
browser sends that header from another origin only after a CORS preflight,
which this app never approves (``OPTIONS`` is 405), so a page elsewhere cannot
forge a mutation.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
import importlib
import json
import math
import re
import secrets
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from actors._admin.source import ReadOnlySource, Source
from actors._errors import (
    InvalidArgument,
    JobNotFound,
    QueueFull,
    ScheduleNotFound,
    SchedulerClosed,
    SchedulerError,
    SchedulerUnresponsive,
    StoreError,
    UnknownHandler,
    UnknownQueue,
)
from actors._jobs.status import JobStatus
from actors._log import admin_logger as logger

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "MAX_BODY",
    "MAX_LIMIT",
    "MAX_PATH",
    "MAX_QUERY",
    "MAX_WORKERS",
    "AdminApp",
    "check_token",
    "to_json",
]

MAX_BODY = 64 * 1024
"""Bytes a request body may have (413 ``too_large`` beyond)."""
MAX_QUERY = 8 * 1024
"""Characters a query string may have (414 ``uri_too_long`` beyond)."""
MAX_PATH = 2 * 1024
"""Characters a path may have (414 ``uri_too_long`` beyond)."""
MAX_LIMIT = 1000
"""The largest page ``GET /api/v1/jobs`` gives (``limit``)."""
MAX_OFFSET = 2**31
"""The largest ``offset``: beyond any store, and within SQLite's integers."""
MAX_WORKERS = 1024
"""The largest pool ``resize`` makes through the API: a typo must not start a
million threads."""
_DRAIN = 1024 * 1024
"""Bytes of an oversized body read and dropped before answering 413: a server
that closes with unread input makes the client's socket reset, and the client
may lose the answer."""
_MAX_ID = 256
_ID = re.compile(r"[^\x00-\x1f\x7f]+")
"""An id or a queue's name: any text without control characters."""
_JOBS_PARAMS = frozenset({"status", "queue", "repo", "handler", "limit", "offset"})
_STATUSES = frozenset(status.value for status in JobStatus)

_REASONS = {
    200: "200 OK",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    409: "409 Conflict",
    413: "413 Content Too Large",
    414: "414 URI Too Long",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}


class _Reply(Exception):
    """An answer decided before the end (an error): raised, and sent by `AdminApp`."""

    def __init__(
        self, status: int, error: str, message: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = list(headers)


def check_token(token: object, *, read_only: bool) -> str | None:
    """The token the app checks mutations against: ``token`` once checked, or a
    new one (logged once at WARNING on ``postroom.admin``), or None read-only
    with none given.

    Raises:
        InvalidArgument: ``token`` is not None nor a str of 16 to 1024 visible
            ASCII characters.
    """
    if token is None:
        if read_only:
            return None
        made = secrets.token_urlsafe(32)
        logger.warning(
            "admin API token (generated; pass token= to choose one): %s -- send it as "
            "'Authorization: Bearer <token>' to cancel, retry, pause, resume, trigger, "
            "remove or resize",
            made,
        )
        return made
    if (
        not isinstance(token, str)
        or not 16 <= len(token) <= 1024
        or not all("!" <= char <= "~" for char in token)
    ):
        msg = "token must be None or a str of 16 to 1024 visible ASCII characters (no spaces)"
        raise InvalidArgument(msg)
    return token


def to_json(value: Any) -> Any:  # noqa: PLR0911 - one return per kind of value
    """``value`` as JSON data: dataclasses as objects of their fields, enums as
    their values, datetimes as seconds since the epoch, a float that is not
    finite as null."""
    if value is None or isinstance(value, str | bool | int):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, datetime):
        return value.timestamp()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    return str(value)


def _page() -> Callable[[], bytes] | None:
    """The dashboard page's maker (``actors/_admin/page.py``'s ``html``), if there is one."""
    try:
        module = importlib.import_module("actors._admin.page")
    except ImportError:
        return None
    html = getattr(module, "html", None)
    return html if callable(html) else None


class AdminApp:
    """The admin API as a WSGI app, over a `Source` (see the module docstring).

    Mount it in a service's own framework (`Scheduler.admin_app`) or serve it
    (`Scheduler.serve_admin`, ``postroom dashboard``).
    """

    def __init__(self, source: Source, *, token: str | None, read_only: bool) -> None:
        """Serve ``source``; ``token`` as `check_token` gave it."""
        self._source = source
        self.read_only = read_only or source.read_only
        """Whether every mutation is refused (403 ``read_only``)."""
        self.token = token
        """The bearer token mutations need (None when read-only)."""
        self._page = _page()
        p = "/api/v1"
        self._get_routes: dict[str, Callable[[str], tuple[int, Any]]] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            f"{p}/stats": self._stats,
            f"{p}/queues": self._queues,
            f"{p}/jobs": self._jobs,
            f"{p}/schedules": self._schedules,
            f"{p}/nodes": self._nodes,
        }
        # (prefix, suffix) -> {method: handler(segment, body)}
        self._id_routes: dict[tuple[str, str], dict[str, Callable[[str, Any], Any]]] = {
            (f"{p}/jobs/", ""): {"GET": self._job},
            (f"{p}/jobs/", "/cancel"): {"POST": self._cancel},
            (f"{p}/jobs/", "/retry"): {"POST": self._retry},
            (f"{p}/schedules/", ""): {"GET": self._schedule, "DELETE": self._remove},
            (f"{p}/schedules/", "/pause"): {"POST": self._pause},
            (f"{p}/schedules/", "/resume"): {"POST": self._resume},
            (f"{p}/schedules/", "/trigger"): {"POST": self._trigger},
            (f"{p}/queues/", "/resize"): {"POST": self._resize},
        }

    # --- WSGI ------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request."""
        try:
            status, body, content_type, headers = self._answer(environ)
        except _Reply as reply:
            status, content_type, headers = reply.status, "application/json", reply.headers
            body = _encode({"error": reply.error, "message": reply.message})
        except Exception:  # noqa: BLE001 - a bug: logged and answered, never raised to the server
            logger.exception(
                "admin: %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
            )
            status, content_type, headers = 500, "application/json", []
            body = _encode({"error": "internal", "message": "a postroom bug: see its log"})
        start_response(
            _REASONS[status],
            [
                ("Content-Type", f"{content_type}; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
                *headers,
            ],
        )
        return [body]

    def _answer(self, environ: WSGIEnvironment) -> tuple[int, bytes, str, list[tuple[str, str]]]:
        method = str(environ.get("REQUEST_METHOD", "GET"))
        path = _text(str(environ.get("PATH_INFO", "") or "/"))
        query = str(environ.get("QUERY_STRING", ""))
        if len(path) > MAX_PATH:
            raise _Reply(414, "uri_too_long", f"the path is over {MAX_PATH} characters")
        if len(query) > MAX_QUERY:
            raise _Reply(414, "uri_too_long", f"the query string is over {MAX_QUERY} characters")
        body = _read_body(environ)
        if path == "/" and self._page is not None:
            if method != "GET":
                raise _not_allowed(method, ["GET"])
            return 200, self._page(), "text/html", []
        if path in self._get_routes:
            if method != "GET":
                raise _not_allowed(method, ["GET"])
            status, document = self._get_routes[path](query)
            return status, _encode(document), "application/json", []
        for (prefix, suffix), methods in self._id_routes.items():
            if path.startswith(prefix) and path.endswith(suffix):
                segment = path[len(prefix) : len(path) - len(suffix)]
                if "/" in segment or not segment:
                    continue
                if method not in methods:
                    raise _not_allowed(method, sorted(methods))
                checked = _id(segment)
                parsed = None
                if method != "GET":
                    self._authorize(environ)
                    parsed = _json_body(body)
                document = self._call(methods[method], checked, parsed)
                return 200, _encode(document), "application/json", []
        raise _Reply(404, "not_found", f"no such path: {path!r}")

    def _authorize(self, environ: WSGIEnvironment) -> None:
        if self.read_only:
            raise _Reply(403, "read_only", "this admin API is read-only: it serves no changes")
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        scheme, _, given = header.partition(" ")
        expected = self.token or ""
        # compare_digest on bytes: it refuses non-ASCII str, and takes as long
        # whatever the first differing character.
        if (
            scheme.lower() != "bearer"
            or not expected
            or not hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected.encode())
        ):
            raise _Reply(
                401,
                "unauthorized",
                "a change needs 'Authorization: Bearer <token>' with the admin token",
                [("WWW-Authenticate", 'Bearer realm="postroom"')],
            )

    @staticmethod
    def _call(handler: Callable[[str, Any], Any], segment: str, body: Any) -> Any:
        try:
            return handler(segment, body)
        except _Reply:
            raise
        except ReadOnlySource as exc:
            raise _Reply(403, "read_only", str(exc)) from None
        except (JobNotFound, ScheduleNotFound, UnknownQueue) as exc:
            raise _Reply(404, "not_found", _message(exc)) from None
        except SchedulerError as exc:
            raise _translated(exc) from None

    # --- reads -----------------------------------------------------------------------

    def _healthz(self, _query: str) -> tuple[int, Any]:
        return 200, {"status": "alive"}

    def _readyz(self, _query: str) -> tuple[int, Any]:
        try:
            reason = self._source.not_ready()
        except SchedulerError as exc:
            reason = str(exc)
        if reason is not None:
            raise _Reply(503, "not_ready", reason)
        return 200, {"status": "ready"}

    def _stats(self, _query: str) -> tuple[int, Any]:
        return 200, to_json(self._read(self._source.stats))

    def _queues(self, _query: str) -> tuple[int, Any]:
        return 200, {"queues": to_json(self._read(self._source.stats).queues)}

    def _schedules(self, _query: str) -> tuple[int, Any]:
        return 200, {"schedules": to_json(self._read(self._source.schedules))}

    def _nodes(self, _query: str) -> tuple[int, Any]:
        return 200, {"nodes": to_json(self._read(self._source.nodes))}

    def _jobs(self, query: str) -> tuple[int, Any]:
        params = _params(query)
        unknown = sorted(set(params) - _JOBS_PARAMS)
        if unknown:
            msg = f"unknown parameter {unknown[0][:40]!r} (known: {sorted(_JOBS_PARAMS)})"
            raise _Reply(400, "bad_request", msg)
        status = params.get("status") or None
        if status is not None and status not in _STATUSES:
            raise _Reply(400, "bad_request", f"status must be one of {sorted(_STATUSES)}")
        limit = _int(params, "limit", 100, MAX_LIMIT)
        offset = _int(params, "offset", 0, MAX_OFFSET)
        filters = {name: params.get(name) or None for name in ("queue", "repo", "handler")}
        try:
            jobs = self._read(
                lambda: self._source.jobs(status=status, limit=limit, offset=offset, **filters)
            )
        except _Reply as reply:
            if reply.status == 404:  # an unknown queue or handler is a bad filter here
                raise _Reply(400, "bad_request", reply.message) from None
            raise
        more = limit > 0 and len(jobs) == limit
        return 200, {
            "jobs": to_json(jobs),
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if more else None,
        }

    def _job(self, job_id: str, _body: Any) -> Any:
        info = self._source.job(job_id)
        return {"job": to_json(info), "runs": to_json(self._source.runs(job_id))}

    def _schedule(self, schedule_id: str, _body: Any) -> Any:
        return {"schedule": to_json(self._source.schedule(schedule_id))}

    def _read(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (JobNotFound, ScheduleNotFound, UnknownQueue, UnknownHandler) as exc:
            raise _Reply(404, "not_found", _message(exc)) from None
        except SchedulerError as exc:
            raise _translated(exc) from None

    # --- mutations -------------------------------------------------------------------

    def _cancel(self, job_id: str, _body: Any) -> Any:
        return {"result": to_json(self._source.cancel(job_id))}

    def _retry(self, job_id: str, _body: Any) -> Any:
        try:
            return {"job": to_json(self._source.retry(job_id))}
        except InvalidArgument as exc:
            # The id is well formed (checked): what is wrong is the job's state.
            raise _Reply(409, "conflict", str(exc)) from None

    def _pause(self, schedule_id: str, _body: Any) -> Any:
        return {"schedule": to_json(self._source.pause(schedule_id))}

    def _resume(self, schedule_id: str, _body: Any) -> Any:
        return {"schedule": to_json(self._source.resume(schedule_id))}

    def _trigger(self, schedule_id: str, _body: Any) -> Any:
        return {"job": to_json(self._source.trigger(schedule_id))}

    def _remove(self, schedule_id: str, _body: Any) -> Any:
        return {"schedule": to_json(self._source.remove(schedule_id))}

    def _resize(self, queue: str, body: Any) -> Any:
        workers = body.get("workers") if isinstance(body, dict) else None
        if (
            not isinstance(workers, int)
            or isinstance(workers, bool)
            or not 0 <= workers <= MAX_WORKERS
        ):
            msg = f'the body must be {{"workers": n}} with n an int from 0 to {MAX_WORKERS}'
            raise _Reply(400, "bad_request", msg)
        return {"queue": to_json(self._source.resize(queue, workers))}


# --- pieces ----------------------------------------------------------------------------


def _encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _message(exc: BaseException) -> str:
    # KeyError's str() quotes its message; its first argument is the text.
    return str(exc.args[0]) if exc.args else type(exc).__name__


def _translated(exc: SchedulerError) -> _Reply:
    if isinstance(exc, InvalidArgument):
        return _Reply(400, "bad_request", str(exc))
    if isinstance(exc, SchedulerClosed | SchedulerUnresponsive | StoreError | QueueFull):
        return _Reply(503, "unavailable", _message(exc))
    return _Reply(503, "unavailable", f"{type(exc).__name__}: {_message(exc)}")


def _not_allowed(method: str, allowed: list[str]) -> _Reply:
    return _Reply(
        405,
        "method_not_allowed",
        f"{method[:20]!r} is not allowed here (allowed: {', '.join(allowed)})",
        [("Allow", ", ".join(allowed))],
    )


def _text(path: str) -> str:
    """The path as text: WSGI gives its bytes as latin-1 characters."""
    try:
        return path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise _Reply(400, "bad_request", "the path is not UTF-8") from None


def _id(segment: str) -> str:
    if len(segment) > _MAX_ID or not _ID.fullmatch(segment):
        msg = f"malformed id: at most {_MAX_ID} characters, none of them control characters"
        raise _Reply(400, "bad_request", msg)
    return segment


def _params(query: str) -> dict[str, str]:
    try:
        pairs = urllib.parse.parse_qsl(
            query, keep_blank_values=True, strict_parsing=False, errors="strict", max_num_fields=20
        )
    except ValueError as exc:  # UnicodeDecodeError too
        raise _Reply(400, "bad_request", f"malformed query string: {exc}") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise _Reply(400, "bad_request", f"parameter {name[:40]!r} given twice")
        if _ID.fullmatch(value) is None and value:
            raise _Reply(400, "bad_request", f"parameter {name[:40]!r} has control characters")
        params[name] = value
    return params


def _int(params: dict[str, str], name: str, default: int, most: int) -> int:
    text = params.get(name) or ""
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 12 or int(text) > most:
        raise _Reply(400, "bad_request", f"{name} must be an int from 0 to {most}")
    return int(text)


def _read_body(environ: WSGIEnvironment) -> bytes:
    """The request's body, read whatever the request (a server that closes with
    unread input makes the client's socket reset, and the client may lose the answer).

    Raises:
        _Reply: 400 for a bad length or a body that did not arrive; 413 for
            one over `MAX_BODY`.
    """
    if environ.get("HTTP_TRANSFER_ENCODING"):
        # wsgiref does not decode chunked bodies: refused, not misread.
        raise _Reply(400, "bad_request", "send the body with a Content-Length, not chunked")
    text = str(environ.get("CONTENT_LENGTH") or "0").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise _Reply(400, "bad_request", "malformed Content-Length")
    length = int(text)
    stream = environ["wsgi.input"]
    if length > MAX_BODY:
        if length <= _DRAIN:
            try:
                while length > 0:
                    chunk = stream.read(min(length, 65536))
                    if not chunk:
                        break
                    length -= len(chunk)
            except OSError:
                pass  # the client stalled or left: the answer is the same
        raise _Reply(413, "too_large", f"the body is over {MAX_BODY} bytes")
    if not length:
        return b""
    try:
        data = stream.read(length)
    except OSError:
        raise _Reply(400, "bad_request", "the body did not arrive in time") from None
    if len(data) != length:
        raise _Reply(400, "bad_request", "the body is shorter than its Content-Length")
    return bytes(data)


def _json_body(data: bytes) -> Any:
    """A mutation's body: a JSON object, or None when empty.

    Raises:
        _Reply: 400 for a body that is not a JSON object.
    """
    if not data:
        return None
    try:
        body = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _Reply(400, "bad_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise _Reply(400, "bad_request", "the body must be a JSON object")
    return body
