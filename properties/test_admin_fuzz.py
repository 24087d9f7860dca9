"""The admin app (WSGI, no socket) under random requests: random methods, paths
(route shapes with random segments, and plain junk), query strings, bodies and
``Content-Length`` headers, with and without the token, against a running
scheduler that has jobs and a schedule.

Whatever arrives: never a 500, a ``Content-Length`` that is the body's, and on
every 4xx and 5xx a JSON object with a str ``error`` code and a ``message``; a
405 names what is allowed. The scheduler keeps serving.
"""

from __future__ import annotations

import io
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import Scheduler
from actors._admin.api import AdminApp
from properties.profiles import examples

TOKEN = "fuzz-token-fuzz-token-fuzz"
CODES = {"bad_request", "unauthorized", "read_only", "not_found", "method_not_allowed",
         "conflict", "too_large", "uri_too_long", "unavailable", "not_ready"}  # fmt: skip


@pytest.fixture
def world() -> Iterator[tuple[Scheduler, AdminApp, AdminApp, dict[str, str]]]:
    sched = Scheduler(workers=1)

    @sched.handler("work")
    def work(ctx: Any, payload: Any) -> Any:
        return payload

    @sched.handler("boom")
    def boom(ctx: Any, payload: Any) -> None:
        raise ValueError("fuzz")

    sched.start()
    try:
        done = sched.submit("work", 1)
        done.result(5)
        failed = sched.submit("boom")
        failed.wait(5)
        schedule = sched.every("work", 3600, start=time.time() + 3600, id="hourly")
        ids = {"job": done.id, "failed": failed.id, "schedule": schedule.id}
        yield (
            sched,
            sched.admin_app(token=TOKEN),
            sched.admin_app(token=TOKEN, read_only=True),
            ids,
        )
    finally:
        sched.shutdown(timeout=5)


_junk = st.text(st.characters(codec="utf-8"), max_size=40)
_segment = st.one_of(
    st.sampled_from(["hourly", "nope", "default", "", "..", "%00", "%ff", "a%2Fb", "x" * 300]),
    _junk.map(lambda text: urllib.parse.quote(text, safe="")),
    st.just("{job}"),
    st.just("{failed}"),
)
_path = st.one_of(
    st.tuples(
        st.sampled_from([
            "/api/v1/jobs/{}", "/api/v1/jobs/{}/cancel", "/api/v1/jobs/{}/retry",
            "/api/v1/schedules/{}", "/api/v1/schedules/{}/pause", "/api/v1/schedules/{}/resume",
            "/api/v1/schedules/{}/trigger", "/api/v1/queues/{}/resize", "/api/v1/{}",
            "/{}", "/api/v1/jobs/{}/{}",
        ]),
        _segment,
    ).map(lambda pair: pair[0].replace("{}", pair[1])),
    st.just("/api/v1/jobs"),  # the one that reads a query string: often
    st.sampled_from(["/", "/healthz", "/readyz", "/api/v1/stats", "/api/v1/queues",
                     "/api/v1/jobs", "/api/v1/schedules", "/api/v1/nodes", "", "//"]),
    _junk.map(lambda text: "/" + urllib.parse.quote(text)),
)  # fmt: skip
_param = st.tuples(
    st.sampled_from(["status", "queue", "repo", "handler", "limit", "offset", "x"]),
    st.one_of(
        st.sampled_from(["", "failed", "completed", "-1", "0", "1", "abc", "1e3", "9" * 30]),
        _junk,
    ),
)
_query = st.one_of(
    st.lists(_param, max_size=6).map(urllib.parse.urlencode),
    st.lists(_param, max_size=6).map(urllib.parse.urlencode),
    _junk,
    st.integers(8000, 9000).map(lambda n: "a" * n),
)
_body = st.one_of(
    st.just(b""),
    st.just(b""),
    st.binary(max_size=64),
    st.fixed_dictionaries(
        {"workers": st.one_of(st.integers(-2, 3), st.text(max_size=3), st.none(), st.floats())}
    ).map(lambda d: json.dumps(d).encode()),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=6,
    ).map(lambda v: json.dumps(v).encode()),
)
_method = st.one_of(
    st.sampled_from(["GET", "GET", "GET", "POST", "POST", "DELETE"]),
    st.sampled_from(["PUT", "OPTIONS", "HEAD", "PATCH"]),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8),
)


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=_method,
    path=_path,
    query=_query,
    body=_body,
    length=st.one_of(
        st.none(), st.none(), st.sampled_from(["abc", "-1", "", "999999", "70000", "5"])
    ),
    auth=st.sampled_from([None, f"Bearer {TOKEN}", "Bearer wrong", TOKEN, "Bearer "]),
    read_only=st.booleans(),
)
def test_no_request_makes_a_500(
    world: tuple[Scheduler, AdminApp, AdminApp, dict[str, str]],
    method: str,
    path: str,
    query: str,
    body: bytes,
    length: str | None,
    auth: str | None,
    read_only: bool,
) -> None:
    sched, app, quiet, ids = world
    path = path.replace("{job}", ids["job"]).replace("{failed}", ids["failed"])
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        # As wsgiref gives it: the path's bytes, percent-decoded, as latin-1 characters.
        "PATH_INFO": urllib.parse.unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)) if length is None else length,
        "wsgi.input": io.BytesIO(body),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
    }
    if auth is not None:
        environ["HTTP_AUTHORIZATION"] = auth
    status, headers, payload = _call(quiet if read_only else app, environ)
    assert status != 500, payload
    assert headers["Content-Length"] == str(len(payload))
    if headers["Content-Type"].startswith("text/html"):
        # The page, and only at the root: "/" or, for an app mounted under a
        # prefix, the empty path WSGI gives the prefix itself.
        assert status == 200 and path in ("", "/"), (status, path)
        return
    document = json.loads(payload)
    if status >= 400:
        assert document["error"] in CODES, document
        assert isinstance(document["message"], str)
        if status == 405:
            assert headers["Allow"]
        if read_only and method in ("POST", "DELETE") and status in (401, 200):
            pytest.fail(f"read-only app answered {status} to {method} {path}")
    if status < 400 and method in ("POST", "DELETE"):
        assert auth == f"Bearer {TOKEN}"
        assert not read_only
    assert sched.running


def _call(app: AdminApp, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer["status"] = int(status.split(maxsplit=1)[0])
        answer["headers"] = dict(headers)
        return lambda data: None

    payload = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], payload


_ROUTES = [
    "/api/v1/jobs/{}", "/api/v1/jobs/{}/cancel", "/api/v1/jobs/{}/retry",
    "/api/v1/schedules/{}", "/api/v1/schedules/{}/pause",
    "/api/v1/schedules/{}/trigger", "/api/v1/queues/{}/resize",
]  # fmt: skip


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "GET", "POST", "DELETE"]),
    path=st.one_of(
        st.just("/api/v1/jobs"),
        st.tuples(
            st.sampled_from(_ROUTES),
            st.sampled_from(["{job}", "{failed}", "hourly", "default", "nope"]),
        ).map(lambda pair: pair[0].replace("{}", pair[1])),
    ),
    params=st.lists(_param, max_size=3, unique_by=lambda pair: pair[0]),
    body=st.one_of(
        st.just(b""),
        st.fixed_dictionaries({"workers": st.one_of(st.integers(-2, 3), _junk)}).map(
            lambda d: json.dumps(d).encode()
        ),
    ),
)
def test_well_shaped_requests_never_500(
    world: tuple[Scheduler, AdminApp, AdminApp, dict[str, str]],
    method: str,
    path: str,
    params: list[tuple[str, str]],
    body: bytes,
) -> None:
    """Requests of the right shape with wrong values reach the deepest checks."""
    sched, app, _quiet, ids = world
    path = path.replace("{job}", ids["job"]).replace("{failed}", ids["failed"])
    status, _headers, payload = _call(
        app,
        {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": urllib.parse.urlencode(params),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "HTTP_AUTHORIZATION": f"Bearer {TOKEN}",
        },
    )
    assert status != 500, payload
    document = json.loads(payload)
    if status >= 400:
        assert document["error"] in CODES, document
    assert sched.running
