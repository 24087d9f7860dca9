"""The admin API over real HTTP: `Scheduler.serve_admin` on port 0, every endpoint,
the auth matrix on every mutation, and what a careless or hostile client sends
(malformed ids, bad query strings, wrong methods, bad bodies, a stalled client).

Whatever the client sends: no 500, every error a JSON ``{"error", "message"}``
with its stable code, and the scheduler still serving afterwards.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from actors import InvalidArgument, Scheduler, SchedulerClosed
from actors._admin import server as admin_server
from actors._admin.api import MAX_BODY, MAX_QUERY
from actors._admin.server import AdminServer
from tests.helpers import WAIT, Gate, wait_until

TOKEN = "s3cret-token-for-the-tests"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Api:
    sched: Scheduler
    server: AdminServer
    gate: Gate

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=WAIT)
        try:
            sent = dict(headers or {})
            if token is not None:
                sent["Authorization"] = f"Bearer {token}"
            data = raw if raw is not None else None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            text = response.read()
            kind = response.getheader("Content-Type", "")
            parsed = json.loads(text) if kind.startswith("application/json") else text
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, parsed)
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None, *, token: str | None = TOKEN) -> Reply:
        return self.call("POST", path, body, token=token)


def _error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, reply
    assert reply.headers["content-type"] == "application/json; charset=utf-8"
    assert reply.body["error"] == code, reply.body
    assert isinstance(reply.body["message"], str)
    assert reply.body["message"]


def _scheduler() -> tuple[Scheduler, Gate]:
    sched = Scheduler(workers=2, history=1000)
    gate = Gate()

    @sched.handler("block")
    def block(ctx: Any, payload: Any) -> str:
        gate.started.set()
        assert gate.release.wait(10)
        return "released"

    @sched.handler("work")
    def work(ctx: Any, payload: Any) -> Any:
        return payload

    @sched.handler("boom")
    def boom(ctx: Any, payload: Any) -> None:
        raise ValueError("it broke")

    return sched, gate


@pytest.fixture
def api() -> Iterator[Api]:
    sched, gate = _scheduler()
    sched.start()
    try:
        server = sched.serve_admin(0, token=TOKEN)
        yield Api(sched, server, gate)
    finally:
        gate.release.set()
        sched.shutdown(timeout=WAIT)


@pytest.fixture
def read_only() -> Iterator[Api]:
    sched, gate = _scheduler()
    sched.start()
    try:
        server = sched.serve_admin(0, token=TOKEN, read_only=True)
        yield Api(sched, server, gate)
    finally:
        gate.release.set()
        sched.shutdown(timeout=WAIT)


# --- reads ------------------------------------------------------------------------------


def test_health_ready_and_metrics_on_one_port(api: Api) -> None:
    assert api.get("/healthz").body == {"status": "alive"}
    ready = api.get("/readyz")
    assert (ready.status, ready.body) == (200, {"status": "ready"})
    metrics = api.get("/metrics")
    assert metrics.status == 200
    assert b"postroom_" in metrics.body
    assert api.server.url == f"http://127.0.0.1:{api.server.port}/"


def test_stats_queues_nodes(api: Api) -> None:
    api.sched.submit("work", 1).result(WAIT)
    stats = api.get("/api/v1/stats")
    assert stats.status == 200
    assert stats.body["submitted"] == 1
    assert stats.body["completed"] == 1
    assert stats.body["queues"][0]["name"] == "default"
    queues = api.get("/api/v1/queues").body["queues"]
    assert queues == [
        {"name": "default", "workers": 2, "running": 0, "pending": 0, "max_pending": 10000}
    ]
    assert api.get("/api/v1/nodes").body == {"nodes": []}


def test_jobs_list_filters_and_pages(api: Api) -> None:
    ids = [api.sched.submit("work", n, repo="r1" if n % 2 else "r2").id for n in range(5)]
    failed = api.sched.submit("boom")
    with pytest.raises(Exception, match="it broke"):
        failed.result(WAIT)
    wait_until(lambda: api.sched.stats().completed == 5, "the jobs to complete")

    page = api.get("/api/v1/jobs?limit=2").body
    assert [job["id"] for job in page["jobs"]] == [failed.id, ids[4]]  # newest first
    assert (page["limit"], page["offset"], page["next_offset"]) == (2, 0, 2)
    last = api.get("/api/v1/jobs?limit=2&offset=5").body
    assert [job["id"] for job in last["jobs"]] == [ids[0]]
    assert last["next_offset"] is None

    only = api.get("/api/v1/jobs?status=failed").body["jobs"]
    assert [job["id"] for job in only] == [failed.id]
    assert only[0]["error"]["type"] == "ValueError"
    assert "it broke" in only[0]["error"]["traceback"]
    assert only[0]["status"] == "failed"
    repo = api.get("/api/v1/jobs?repo=r1&handler=work&queue=default&status=").body["jobs"]
    assert sorted(job["id"] for job in repo) == sorted([ids[1], ids[3]])


def test_one_job_with_its_runs(api: Api) -> None:
    handle = api.sched.submit("boom", {"x": [1, 2]})
    with pytest.raises(Exception, match="it broke"):
        handle.result(WAIT)
    reply = api.get(f"/api/v1/jobs/{handle.id}")
    assert reply.status == 200
    job = reply.body["job"]
    assert (job["id"], job["handler"], job["payload"]) == (handle.id, "boom", {"x": [1, 2]})
    assert isinstance(job["submitted_at"], float)
    (run,) = reply.body["runs"]
    assert (run["attempt"], run["outcome"]) == (1, "failed")
    assert run["error"]["message"] == "it broke"


def test_schedules_listed_and_one_by_id(api: Api) -> None:
    schedule = api.sched.every("work", 3600, 7)
    listed = api.get("/api/v1/schedules").body["schedules"]
    assert [s["id"] for s in listed] == [schedule.id]
    assert listed[0]["kind"] == "every"
    assert isinstance(listed[0]["next_fire"], float)  # a datetime, as epoch seconds
    one = api.get(f"/api/v1/schedules/{schedule.id}")
    assert one.body["schedule"]["id"] == schedule.id


def test_the_page_is_served_only_when_it_exists(api: Api) -> None:
    import importlib.util

    reply = api.get("/")
    if importlib.util.find_spec("actors._admin.page") is None:
        _error(reply, 404, "not_found")
    else:
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/html")


# --- mutations ----------------------------------------------------------------------------


def test_cancel_a_running_job(api: Api) -> None:
    handle = api.sched.submit("block")
    assert api.gate.started.wait(WAIT)
    reply = api.post(f"/api/v1/jobs/{handle.id}/cancel")
    assert reply.body == {"result": "signalled"}
    api.gate.release.set()
    wait_until(lambda: api.sched.job(handle.id).status.finished, "the job to end")
    again = api.post(f"/api/v1/jobs/{handle.id}/cancel")
    assert again.body == {"result": "already_finished"}


def test_retry_a_failed_job_and_conflict_on_a_completed_one(api: Api) -> None:
    failed = api.sched.submit("boom")
    with pytest.raises(Exception, match="it broke"):
        failed.result(WAIT)
    reply = api.post(f"/api/v1/jobs/{failed.id}/retry")
    assert reply.status == 200
    new = reply.body["job"]
    assert new["retry_of"] == failed.id
    assert new["id"] != failed.id
    done = api.sched.submit("work", 1)
    done.result(WAIT)
    _error(api.post(f"/api/v1/jobs/{done.id}/retry"), 409, "conflict")
    _error(api.post(f"/api/v1/jobs/{failed.id}/retry"), 409, "conflict")  # retried already


def test_pause_resume_trigger_remove_a_schedule(api: Api) -> None:
    schedule = api.sched.every("work", 3600, 7)
    paused = api.post(f"/api/v1/schedules/{schedule.id}/pause").body["schedule"]
    assert paused["paused"] is True
    assert paused["next_fire"] is None
    assert api.sched.schedule(schedule.id).paused
    resumed = api.post(f"/api/v1/schedules/{schedule.id}/resume").body["schedule"]
    assert resumed["paused"] is False
    fired = api.post(f"/api/v1/schedules/{schedule.id}/trigger").body["job"]
    assert fired["schedule_id"] == schedule.id
    assert fired["payload"] == 7
    removed = api.call("DELETE", f"/api/v1/schedules/{schedule.id}", token=TOKEN)
    assert removed.body["schedule"]["id"] == schedule.id
    assert api.sched.schedules() == []
    _error(api.get(f"/api/v1/schedules/{schedule.id}"), 404, "not_found")


def test_resize_a_queue(api: Api) -> None:
    reply = api.post("/api/v1/queues/default/resize", {"workers": 3})
    assert reply.status == 200
    assert reply.body["queue"]["workers"] == 3
    assert api.sched.stats().queue("default").workers == 3


MUTATIONS = [
    ("POST", "/api/v1/jobs/{job}/cancel"),
    ("POST", "/api/v1/jobs/{failed}/retry"),
    ("POST", "/api/v1/schedules/{schedule}/pause"),
    ("POST", "/api/v1/schedules/{schedule}/resume"),
    ("POST", "/api/v1/schedules/{schedule}/trigger"),
    ("DELETE", "/api/v1/schedules/{schedule}"),
    ("POST", "/api/v1/queues/default/resize"),
]


def _targets(api: Api) -> dict[str, str]:
    job = api.sched.submit("block")
    failed = api.sched.submit("boom")
    with pytest.raises(Exception, match="it broke"):
        failed.result(WAIT)
    return {"job": job.id, "failed": failed.id, "schedule": _hourly(api)}


def _hourly(api: Api) -> str:
    """A schedule that does not fire while the test runs (its first fire is an hour away)."""
    return api.sched.every("work", 3600, start=time.time() + 3600).id


def _state(api: Api) -> tuple[Any, ...]:
    stats = api.sched.stats()
    return (
        [(s.id, s.paused, s.fires) for s in api.sched.schedules()],
        [(j.id, j.status, j.retried_as) for j in api.sched.jobs()],
        stats.queue("default").workers,
    )


@pytest.mark.parametrize(("method", "template"), MUTATIONS)
def test_auth_matrix(api: Api, method: str, template: str) -> None:
    path = template.format(**_targets(api))
    body = {"workers": 1} if path.endswith("resize") else None
    before = _state(api)
    for token, header in (
        (None, None),
        ("wrong-token-wrong-token", None),
        (TOKEN[:-1], None),
        (None, f"Basic {TOKEN}"),
        (None, TOKEN),
        (None, "Bearer"),
        (None, "Bearer é"),
    ):
        headers = {"Authorization": header} if header is not None else None
        reply = api.call(method, path, body, token=token, headers=headers)
        _error(reply, 401, "unauthorized")
        assert reply.headers["www-authenticate"].startswith("Bearer")
    assert _state(api) == before  # nothing changed
    allowed = api.call(method, path, body, token=TOKEN)
    assert allowed.status == 200, allowed


@pytest.mark.parametrize(("method", "template"), MUTATIONS)
def test_read_only_serves_no_mutation(read_only: Api, method: str, template: str) -> None:
    api = read_only
    path = template.format(**_targets(api))
    body = {"workers": 1} if path.endswith("resize") else None
    before = _state(api)
    for token in (TOKEN, None, "wrong-token-wrong-token"):
        _error(api.call(method, path, body, token=token), 403, "read_only")
    assert _state(api) == before
    assert api.get("/api/v1/jobs").status == 200  # reads still served
    assert read_only.server.read_only


# --- bad input ----------------------------------------------------------------------------


def test_unknown_ids_are_404(api: Api) -> None:
    for method, path in [
        ("GET", "/api/v1/jobs/nope"),
        ("POST", "/api/v1/jobs/nope/cancel"),
        ("POST", "/api/v1/jobs/nope/retry"),
        ("GET", "/api/v1/schedules/nope"),
        ("POST", "/api/v1/schedules/nope/pause"),
        ("POST", "/api/v1/schedules/nope/resume"),
        ("POST", "/api/v1/schedules/nope/trigger"),
        ("DELETE", "/api/v1/schedules/nope"),
    ]:
        _error(api.call(method, path, token=TOKEN), 404, "not_found")
    _error(api.post("/api/v1/queues/nope/resize", {"workers": 1}), 404, "not_found")
    for path in (
        "/nope", "/api/v1", "/api/v1/", "/api/v1/jobs/", "/api/v1/jobs/a/b/c", "/api/v2/jobs"
    ):  # fmt: skip
        _error(api.get(path), 404, "not_found")


def test_malformed_ids_are_400(api: Api) -> None:
    for segment in ("%00", "a%0ab", "%ff%fe", "x" * 300, "%7f"):
        for method, template in [
            ("GET", "/api/v1/jobs/{}"),
            ("POST", "/api/v1/jobs/{}/cancel"),
            ("GET", "/api/v1/schedules/{}"),
            ("DELETE", "/api/v1/schedules/{}"),
            ("POST", "/api/v1/queues/{}/resize"),
        ]:
            reply = api.call(method, template.format(segment), {"workers": 1}, token=TOKEN)
            _error(reply, 400, "bad_request")


@pytest.mark.parametrize(
    "query",
    [
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "limit=1001",
        "limit=%EF%BC%91",  # a fullwidth digit: isdigit() says yes, int() too
        "offset=-3",
        "offset=" + "9" * 40,
        "offset=" + "9" * 5000,
        "status=bogus",
        "status=FAILED",
        "queue=nope",
        "handler=nope",
        "sort=id",
        "limit=1&limit=2",
        "repo=%ff",
        "repo=a%00b",
        "&".join(f"x{n}=1" for n in range(30)),
    ],
)
def test_bad_query_strings_are_400(api: Api, query: str) -> None:
    _error(api.get(f"/api/v1/jobs?{query}"), 400, "bad_request")


def test_odd_but_valid_query_strings(api: Api) -> None:
    for query in (
        "", "limit=0", "offset=2147483648", "limit=&offset=", "status=&queue=&repo=", "&&"
    ):  # fmt: skip
        reply = api.get(f"/api/v1/jobs?{query}")
        assert reply.status == 200, (query, reply)
    assert api.get("/api/v1/jobs?limit=0").body["next_offset"] is None


def test_huge_query_and_path_are_414(api: Api) -> None:
    # Over http.server's own line limit (64 KiB): refused before the app, in JSON too.
    _error(api.get("/api/v1/jobs?repo=" + "a" * 100_000), 414, "uri_too_long")
    _error(api.get("/api/v1/jobs?repo=" + "a" * MAX_QUERY), 414, "uri_too_long")
    _error(api.get("/api/v1/jobs/" + "a" * 3000), 414, "uri_too_long")
    assert api.get("/api/v1/stats?" + "a" * (MAX_QUERY - 1)).status == 200


def test_wrong_methods_are_405_with_allow(api: Api) -> None:
    cases = [
        ("POST", "/api/v1/stats", "GET"),
        ("DELETE", "/healthz", "GET"),
        ("PUT", "/api/v1/jobs", "GET"),
        ("OPTIONS", "/api/v1/jobs/x/cancel", "POST"),  # a CORS preflight: never approved
        ("GET", "/api/v1/jobs/x/cancel", "POST"),
        ("GET", "/api/v1/queues/default/resize", "POST"),
        ("PATCH", "/api/v1/schedules/x", "DELETE, GET"),
        ("POST", "/api/v1/schedules/x", "DELETE, GET"),
        ("BREW", "/api/v1/jobs/x", "GET"),
    ]
    for method, path, allowed in cases:
        reply = api.call(method, path, token=TOKEN)
        _error(reply, 405, "method_not_allowed")
        assert reply.headers["allow"] == allowed
        assert "access-control-allow-origin" not in reply.headers


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[1, 2]",
        b'"workers"',
        b'{"workers": "3"}',
        b'{"workers": -1}',
        b'{"workers": true}',
        b'{"workers": 2.0}',
        b'{"workers": 1e999}',
        b'{"workers": 100000000000000000000000000}',
        b'{"workers": NaN}',
        b"\xff\xfe",
        b"[" * 60_000,
        b"{}",
    ],
)
def test_bad_json_bodies_are_400(api: Api, raw: bytes) -> None:
    reply = api.call(
        "POST", "/api/v1/queues/default/resize", token=TOKEN, raw=raw,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    _error(reply, 400, "bad_request")
    assert api.sched.stats().queue("default").workers == 2


def test_a_body_over_the_limit_is_413(api: Api) -> None:
    raw = b'{"workers": 1, "pad": "' + b"x" * MAX_BODY + b'"}'
    reply = api.call("POST", "/api/v1/queues/default/resize", token=TOKEN, raw=raw)
    _error(reply, 413, "too_large")
    # Said, not sent: answered from the header alone.
    head = b"POST /api/v1/jobs/x/cancel HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"
    assert _raw(api, head).startswith(b"HTTP/1.0 413 ")


def _raw(api: Api, request: bytes, *, half_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", api.server.port), timeout=WAIT) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_wrong_content_lengths_are_400(api: Api) -> None:
    head = b"POST /api/v1/queues/default/resize HTTP/1.1\r\nHost: x\r\n"
    for length in (b"abc", b"-1", b"1e3", b"0x10", b"99999999999999999999999"):
        reply = _raw(api, head + b"Content-Length: " + length + b"\r\n\r\n{}")
        assert reply.startswith((b"HTTP/1.0 400 ", b"HTTP/1.0 413 ")), reply
        assert b'"error"' in reply
    # Longer than what is sent, then the client stops sending.
    short = _raw(api, head + b"Content-Length: 100\r\nAuthorization: Bearer " + TOKEN.encode()
                 + b"\r\n\r\n{\"workers\": 1}")  # fmt: skip
    assert short.startswith(b"HTTP/1.0 400 ")
    assert b"shorter than its Content-Length" in short
    chunked = _raw(api, head + b"Transfer-Encoding: chunked\r\n\r\n5\r\n{}{}{\r\n0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.0 400 ")
    assert b"not chunked" in chunked
    assert api.sched.stats().queue("default").workers == 2


# --- many clients, slow clients -------------------------------------------------------------


@pytest.fixture
def quick_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    """The server's client timeout, cut to 3 s so a stalled client is cut quickly."""
    monkeypatch.setattr(admin_server._AdminHandler, "timeout", 3.0)
    return 3.0


def test_a_stalled_client_blocks_no_one(quick_timeout: float) -> None:
    sched, gate = _scheduler()
    sched.start()
    try:
        server = sched.serve_admin(0, token=TOKEN)
        api = Api(sched, server, gate)
        stalled = []
        for request in (
            b"GET /api/v1/stats HTTP/1.1\r\nHo",  # half a request line's headers
            b"POST /api/v1/queues/default/resize HTTP/1.1\r\nContent-Length: 50\r\n\r\n{",
        ):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
            sock.sendall(request)
            stalled.append(sock)
        failures: list[object] = []
        latencies: list[float] = []

        def client(n: int) -> None:
            for _ in range(3):
                began = time.monotonic()
                try:
                    reply = api.get("/api/v1/stats" if n % 2 else "/api/v1/jobs?limit=5")
                    if reply.status != 200:
                        failures.append(reply)
                except OSError as exc:
                    failures.append(exc)
                latencies.append(time.monotonic() - began)

        start = threading.Event()

        def started(n: int) -> None:
            start.wait()
            client(n)

        threads = [threading.Thread(target=started, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        start.set()
        for thread in threads:
            thread.join(WAIT * 2)
        assert failures == []
        assert len(latencies) == 24
        # Each served while the stalled ones still hold their threads, not after.
        assert max(latencies) < quick_timeout, latencies
        for sock in stalled:
            sock.settimeout(WAIT)
            answer = sock.recv(65536)  # cut by the server after its client timeout
            assert answer == b"" or answer.startswith(b"HTTP/1.0 400 "), answer
            sock.close()
        assert api.get("/readyz").status == 200
    finally:
        gate.release.set()
        sched.shutdown(timeout=WAIT)


def test_many_concurrent_clients_no_500_no_drop(api: Api) -> None:
    ids = [api.sched.submit("work", n).id for n in range(10)]
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    paths = ["/api/v1/stats", "/api/v1/jobs", f"/api/v1/jobs/{ids[3]}", "/api/v1/jobs/nope",
             "/api/v1/jobs?limit=abc", "/api/v1/schedules", "/readyz", "/metrics"]  # fmt: skip

    def client(n: int) -> None:
        for k in range(10):
            try:
                reply = api.get(paths[(n + k) % len(paths)])
            except OSError as exc:
                with lock:
                    errors.append(exc)
                continue
            with lock:
                statuses.append(reply.status)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 4)
    assert errors == []
    assert len(statuses) == 240
    assert set(statuses) <= {200, 400, 404}
    assert 500 not in statuses


# --- the server's life ----------------------------------------------------------------------


def test_the_token_generated_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    sched, gate = _scheduler()
    sched.start()
    try:
        with caplog.at_level(logging.WARNING, logger="postroom.admin"):
            server = sched.serve_admin(0)
        token = server.token
        assert token is not None
        assert len(token) >= 40
        records = [r for r in caplog.records if r.name == "postroom.admin"]
        assert len(records) == 1
        assert records[0].levelno == logging.WARNING
        assert token in records[0].getMessage()
        assert "Authorization: Bearer" in records[0].getMessage()
        api = Api(sched, server, gate)
        assert api.post("/api/v1/queues/default/resize", {"workers": 1}, token=token).status == 200
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="postroom.admin"):
            given = sched.serve_admin(0, token=TOKEN)
            quiet = sched.serve_admin(0, read_only=True)
        assert given.token == TOKEN
        assert quiet.token is None
        assert [r for r in caplog.records if r.name == "postroom.admin"] == []
        assert server.port != given.port
    finally:
        gate.release.set()
        sched.shutdown(timeout=WAIT)


def test_bad_arguments_and_a_stopped_scheduler() -> None:
    sched, _gate = _scheduler()
    with pytest.raises(SchedulerClosed):
        sched.serve_admin(0)
    sched.start()
    try:
        for token in ("short", "has a space in it!", "é" * 20, 12345678901234567):
            with pytest.raises(InvalidArgument):
                sched.serve_admin(0, token=token)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            sched.serve_admin(-1, token=TOKEN)
        with pytest.raises(InvalidArgument):
            sched.admin_app(read_only="yes")  # type: ignore[arg-type]
        server = sched.serve_admin(0, token=TOKEN)
        port = server.port
    finally:
        sched.shutdown(timeout=WAIT)
    # The scheduler's shutdown stopped the server.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=WAIT)


# --- readiness ----------------------------------------------------------------------------


def _wsgi(
    app: Any, method: str, path: str, *, token: str | None = None, body: bytes = b""
) -> tuple[int, Any]:
    """One request through the WSGI app alone (a scheduler not running has no server)."""
    import io

    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer["status"] = int(status.split(maxsplit=1)[0])
        return lambda data: None

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    body = json.loads(b"".join(app(environ, start_response)))
    return answer["status"], body


def test_not_ready_before_start_and_after_shutdown() -> None:
    sched, _gate = _scheduler()
    app = sched.admin_app(token=TOKEN)
    status, body = _wsgi(app, "GET", "/readyz")
    assert (status, body["error"]) == (503, "not_ready")
    assert "not started" in body["message"]
    assert _wsgi(app, "GET", "/healthz") == (200, {"status": "alive"})
    sched.start()
    try:
        assert _wsgi(app, "GET", "/readyz") == (200, {"status": "ready"})
    finally:
        sched.shutdown(timeout=WAIT)
    status, body = _wsgi(app, "GET", "/readyz")
    assert (status, body["error"]) == (503, "not_ready")
    assert "closed" in body["message"]
    # A change on a scheduler that stopped: 503, never a 500.
    status, body = _wsgi(
        app, "POST", "/api/v1/queues/default/resize", token=TOKEN, body=b'{"workers": 1}'
    )
    assert (status, body["error"]) == (503, "unavailable")
    assert _wsgi(app, "GET", "/api/v1/stats")[0] == 200  # the final figures


def test_not_ready_when_the_store_cannot_be_written(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    sched = Scheduler(store=str(tmp_path / "jobs.db"))
    with sched:
        server = sched.serve_admin(0, token=TOKEN)
        api = Api(sched, server, Gate())
        assert api.get("/readyz").status == 200
        real = os.access
        # Root may write anywhere, so the file's mode cannot make it read-only here.
        monkeypatch.setattr(
            os,
            "access",
            lambda path, mode: not str(path).startswith(str(tmp_path)) and real(path, mode),
        )
        reply = api.get("/readyz")
        _error(reply, 503, "not_ready")
        assert "cannot be written" in reply.body["message"]
        assert api.get("/healthz").status == 200  # alive all the same


def test_a_trickling_client_is_cut_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_server._AdminHandler, "deadline", 1.0)
    sched, gate = _scheduler()
    sched.start()
    try:
        server = sched.serve_admin(0, token=TOKEN)
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            began = time.monotonic()
            cut = threading.Event()
            # A byte every 0.1 s: never 5 s silent, so only the deadline can cut it.
            for byte in b"GET /api/v1/stats HTTP/1.1\r\nX-Slow: " + b"a" * 200:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    cut.set()
                    break
                if cut.wait(0.1):
                    break
                sock.setblocking(False)
                try:
                    if sock.recv(1) == b"":
                        cut.set()
                except BlockingIOError:
                    pass
                except OSError:
                    cut.set()
                finally:
                    sock.setblocking(True)
                    sock.settimeout(WAIT)
            took = time.monotonic() - began
        assert cut.is_set()
        assert 1.0 <= took < 1.0 + 2.0, took
        assert Api(sched, server, gate).get("/readyz").status == 200
    finally:
        sched.shutdown(timeout=WAIT)


def test_stop_does_not_wait_for_a_stalled_client() -> None:
    sched, _gate = _scheduler()
    sched.start()
    try:
        server = sched.serve_admin(0, token=TOKEN)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        sock.sendall(b"GET /api/v1/stats HTTP/1.1\r\nHo")
        Api(sched, server, _gate).get("/healthz")  # served: the stalled one is being read
    finally:
        began = time.monotonic()
        sched.shutdown(timeout=WAIT)
        took = time.monotonic() - began
    assert sock.recv(1) == b""  # cut
    sock.close()
    assert took < 2.0, took  # not the 5 s client timeout
