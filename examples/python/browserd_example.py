"""browserd from Python: one session, end to end.

Watches the session's lifecycle events in a thread (WatchSessions), creates a
session with metadata, drives its browser with Playwright's
``connect_over_cdp``, scrapes a page served by a local HTTP server, checks
GetLiveDetails, releases the session, and checks every answer and event.
Any deviation from the API contract raises ``ScenarioError``. First, it
sends a request browserd must refuse and reads the refusal's rich error
details (``google.rpc.BadRequest``) as a program would, instead of parsing
the message.

Every call carries ``authorization: Bearer <key>`` when ``BROWSERD_API_KEY``
is set (see ``open_channel``); a browserd listening on loopback with no key
created yet takes calls without one.

Run against a running browserd (stubs first: ``./gen_stubs.sh``)::

    BROWSERD_API_KEY=browserd_… python browserd_example.py --server 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import collections
import http.server
import os
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))

import grpc  # noqa: E402
from google.protobuf import duration_pb2  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_status import rpc_status  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from browserd.v1 import sessions_pb2 as pb  # noqa: E402
from browserd.v1 import sessions_pb2_grpc as rpc  # noqa: E402

PAGE_TITLE = "browserd example page"
PAGE = f"""<!doctype html>
<html>
<head>
  <meta charset="utf-8">
  <title>{PAGE_TITLE}</title>
  <style>h1 {{ color: rgb(200, 30, 40); }}</style>
</head>
<body>
  <h1>Hello from browserd</h1>
  <ul id="primes"><li>2</li><li>3</li><li>5</li><li>7</li><li>11</li></ul>
  <p id="sum"></p>
  <script>
    const primes = [...document.querySelectorAll('#primes li')].map(li => +li.textContent);
    document.getElementById('sum').textContent = String(primes.reduce((a, b) => a + b, 0));
  </script>
</body>
</html>
""".encode()

Status = pb.SessionStatus
EndReason = pb.EndReason

API_KEY_ENV = "BROWSERD_API_KEY"


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    """A call's details with its metadata replaced (grpc's own type is private)."""


class BearerKey(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Sends ``authorization: Bearer <key>`` with every call of a channel.

    An interceptor rather than call credentials: grpc only attaches those to
    TLS channels, and browserd's examples talk plaintext."""

    def __init__(self, key: str) -> None:
        self._entry = ("authorization", f"Bearer {key}")

    def _intercept(self, continuation, details, request):
        metadata = [*(details.metadata or ()), self._entry]
        return continuation(
            _CallDetails(details.method, details.timeout, metadata, details.credentials,
                         details.wait_for_ready, details.compression),
            request,
        )

    intercept_unary_unary = _intercept
    intercept_unary_stream = _intercept
    intercept_stream_unary = _intercept
    intercept_stream_stream = _intercept


def open_channel(address: str, api_key: str | None = None) -> grpc.Channel:
    """A plaintext channel to browserd whose every call carries the API key:
    ``api_key``, else ``$BROWSERD_API_KEY``; ``""`` (or neither set) sends
    none, which only a server running open accepts."""
    # strip(): a key read from a file, or from `docker compose exec` on a
    # TTY, ends in "\n" or "\r\n", which metadata values cannot hold.
    key = (os.environ.get(API_KEY_ENV, "") if api_key is None else api_key).strip()
    channel = grpc.insecure_channel(address)
    return grpc.intercept_channel(channel, BearerKey(key)) if key else channel


class ScenarioError(AssertionError):
    """The server did not behave as its API contract says."""


def check(condition: bool, message: str) -> None:
    # Not `assert`: it must hold under `python -O` too.
    if not condition:
        raise ScenarioError(message)


def error_details(err: grpc.RpcError) -> list:
    """The google.rpc error details (BadRequest, ResourceInfo, RetryInfo,
    ErrorInfo...) that browserd attaches to a refusal, decoded from the
    ``grpc-status-details-bin`` trailer. Empty when there are none."""
    status = rpc_status.from_call(err)
    if status is None:
        return []
    kinds = [
        error_details_pb2.BadRequest,
        error_details_pb2.ResourceInfo,
        error_details_pb2.RetryInfo,
        error_details_pb2.QuotaFailure,
        error_details_pb2.ErrorInfo,
    ]
    details = []
    for any_detail in status.details:
        for kind in kinds:
            if any_detail.Is(kind.DESCRIPTOR):
                detail = kind()
                any_detail.Unpack(detail)
                details.append(detail)
    return details


def bad_fields(err: grpc.RpcError) -> dict[str, str]:
    """field -> description of every BadRequest violation of a refusal."""
    return {
        v.field: v.description
        for d in error_details(err)
        if isinstance(d, error_details_pb2.BadRequest)
        for v in d.field_violations
    }


def check_refusal(stub: rpc.SessionServiceStub, rpc_timeout: float) -> dict[str, str]:
    """A viewport narrower than any headless window is refused; the refusal
    names the field in a BadRequest detail, and nothing is created."""
    try:
        stub.CreateSession(
            pb.CreateSessionRequest(viewport=pb.Viewport(width=100, height=600)),
            timeout=rpc_timeout,
        )
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT,
              f"a 100 px wide viewport got {e.code()}, not INVALID_ARGUMENT")
        fields = bad_fields(e)
        check("viewport.width" in fields,
              f"the refusal does not name viewport.width in a BadRequest detail: {fields}")
        return fields
    raise ScenarioError("a 100 px wide viewport was accepted")


def status_name(value: int) -> str:
    return Status.Name(value)


class PageServer:
    """Serves PAGE on an ephemeral 127.0.0.1 port and records each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []  # (path, user agent)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.requests.append((self.path, self.headers.get("User-Agent", "")))
                if self.path != "/":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class EventWatcher(threading.Thread):
    """Collects WatchSessions events in a background thread.

    Subscribes with a metadata filter unique to this run and
    ``after_sequence=0``: the server replays any event of ours stored before
    the stream got going, so nothing is lost to a subscribe/create race.
    """

    def __init__(self, stub: rpc.SessionServiceStub, metadata: dict[str, str]) -> None:
        super().__init__(name="browserd-watch", daemon=True)
        self._call = stub.WatchSessions(
            pb.WatchSessionsRequest(metadata=metadata, after_sequence=0)
        )
        self._cond = threading.Condition()
        self.events: list[pb.SessionEvent] = []
        self.error: grpc.RpcError | None = None
        self.ended = False
        self._cancelled = False

    def run(self) -> None:
        try:
            for response in self._call:
                with self._cond:
                    self.events.append(response.event)
                    self._cond.notify_all()
        except grpc.RpcError as e:
            if not (self._cancelled and e.code() == grpc.StatusCode.CANCELLED):
                self.error = e
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def wait_for_status(self, session_id: str, status: int, timeout: float) -> None:
        def seen() -> bool:
            return self.ended or any(
                e.session_id == session_id and e.to_status == status for e in self.events
            )

        with self._cond:
            self._cond.wait_for(seen, timeout=timeout)
            check(self.error is None, f"WatchSessions failed: {self.error}")
            check(
                any(e.session_id == session_id and e.to_status == status for e in self.events),
                f"no {status_name(status)} event for {session_id} within {timeout}s "
                f"(stream ended: {self.ended}; got {[status_name(e.to_status) for e in self.events]})",
            )

    def stop(self) -> None:
        self._cancelled = True
        self._call.cancel()
        self.join(timeout=10)
        check(not self.is_alive(), "watch thread did not stop after cancel")
        check(self.error is None, f"WatchSessions failed: {self.error}")


@dataclass
class ScenarioResult:
    session_id: str
    heading: str
    prime_sum: int
    heading_color: str
    viewport: list[int]
    live_pages: list[tuple[str, str]]
    released: pb.Session
    events: list[pb.SessionEvent] = field(repr=False)
    refused_fields: dict[str, str] = field(default_factory=dict)


def check_events(events: list[pb.SessionEvent], session_id: str) -> None:
    """CREATED(PENDING) -> LIVE -> RELEASED for our session, in order, once each."""
    check(bool(events), "the watcher received no event")
    for e in events:
        check(
            e.session_id == session_id,
            f"metadata filter leaked an event of session {e.session_id}",
        )
        check(e.session.id == session_id, f"event {e.sequence} carries session {e.session.id}")
        check(
            e.session.status == e.to_status,
            f"event {e.sequence}: snapshot status {status_name(e.session.status)} "
            f"!= to_status {status_name(e.to_status)}",
        )
    sequences = [e.sequence for e in events]
    check(
        all(a < b for a, b in zip(sequences, sequences[1:])),
        f"sequences not strictly increasing (duplicate or out of order): {sequences}",
    )
    times = [e.occurred_at.ToNanoseconds() for e in events]
    check(times == sorted(times), f"occurred_at goes backwards: {times}")
    transitions = [(status_name(e.from_status), status_name(e.to_status)) for e in events]
    check(
        transitions
        == [
            ("SESSION_STATUS_UNSPECIFIED", "SESSION_STATUS_PENDING"),
            ("SESSION_STATUS_PENDING", "SESSION_STATUS_LIVE"),
            ("SESSION_STATUS_LIVE", "SESSION_STATUS_RELEASED"),
        ],
        f"unexpected transitions: {transitions}",
    )
    check(
        [e.end_reason for e in events]
        == [EndReason.END_REASON_UNSPECIFIED] * 2 + [EndReason.END_REASON_REQUESTED],
        f"unexpected end reasons: {[EndReason.Name(e.end_reason) for e in events]}",
    )


def run(address: str, rpc_timeout: float = 60.0, api_key: str | None = None) -> ScenarioResult:
    """Runs the whole scenario against the browserd at ``address``, with
    ``api_key`` (default: ``$BROWSERD_API_KEY``; see ``open_channel``)."""
    labels = {"example": "python", "run": uuid.uuid4().hex}
    with open_channel(address, api_key) as channel, PageServer() as site:
        stub = rpc.SessionServiceStub(channel)
        refused_fields = check_refusal(stub, rpc_timeout)
        watcher = EventWatcher(stub, labels)
        watcher.start()
        try:
            created = stub.CreateSession(
                pb.CreateSessionRequest(
                    metadata=labels,
                    timeout=duration_pb2.Duration(seconds=120),
                    keep_alive=True,
                    viewport=pb.Viewport(width=1024, height=700),
                ),
                timeout=rpc_timeout,
            ).session
            sid = created.id
            check(created.status == Status.SESSION_STATUS_LIVE,
                  f"CreateSession returned {status_name(created.status)}, not LIVE")
            check(created.connect_url.startswith("ws://"),
                  f"connect_url {created.connect_url!r} is not a ws:// URL")
            check(dict(created.metadata) == labels, f"metadata came back as {dict(created.metadata)}")
            check(created.end_reason == EndReason.END_REASON_UNSPECIFIED,
                  f"a LIVE session has end_reason {EndReason.Name(created.end_reason)}")
            check(created.HasField("created_at") and created.HasField("started_at"),
                  "LIVE session lacks created_at or started_at")
            check(created.keep_alive, "keep_alive did not stick")

            try:
                with sync_playwright() as p:
                    browser = p.chromium.connect_over_cdp(created.connect_url, timeout=30_000)
                    check(len(browser.contexts) >= 1, "connect_over_cdp found no default context")
                    page = browser.contexts[0].new_page()
                    response = page.goto(site.url)
                    check(response is not None and response.status == 200,
                          f"page load failed: {response and response.status}")
                    heading = page.text_content("h1") or ""
                    prime_sum = int(page.text_content("#sum") or "-1")
                    color = page.eval_on_selector("h1", "e => getComputedStyle(e).color")
                    viewport = page.evaluate("[window.innerWidth, window.innerHeight]")
                    check(heading == "Hello from browserd", f"h1 is {heading!r}")
                    check(prime_sum == 28, f"#sum is {prime_sum}, not 28")
                    check(color == "rgb(200, 30, 40)", f"h1 color is {color}")
                    check(page.title() == PAGE_TITLE, f"title is {page.title()!r}")
                    # The session's viewport is the page's inner size.
                    check(viewport == [1024, 700], f"inner size is {viewport}, asked for 1024x700")

                    details = stub.GetLiveDetails(
                        pb.GetLiveDetailsRequest(session_id=sid), timeout=rpc_timeout
                    )
                    live_pages = [(pg.url, pg.title) for pg in details.pages]
                    check((site.url, PAGE_TITLE) in live_pages,
                          f"GetLiveDetails does not show our page: {live_pages}")
                    check(all(pg.target_id for pg in details.pages), "a page has no target_id")
                    check(details.connect_url == created.connect_url,
                          "GetLiveDetails connect_url differs from CreateSession's")
                    # Disconnects Playwright; the browser itself stays up.
                    browser.close()

                still = stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=rpc_timeout)
                check(still.session.status == Status.SESSION_STATUS_LIVE,
                      "keep_alive session did not stay LIVE after the client disconnected: "
                      f"{status_name(still.session.status)} "
                      f"{EndReason.Name(still.session.end_reason)}")
            finally:
                released = stub.ReleaseSession(
                    pb.ReleaseSessionRequest(session_id=sid), timeout=rpc_timeout
                ).session

            check(released.status == Status.SESSION_STATUS_RELEASED,
                  f"after ReleaseSession the session is {status_name(released.status)}")
            check(released.end_reason == EndReason.END_REASON_REQUESTED,
                  f"end_reason is {EndReason.Name(released.end_reason)}, not END_REASON_REQUESTED")
            check(released.HasField("ended_at"), "released session has no ended_at")
            check(released.connect_url == "", "released session still has a connect_url")
            check(
                released.ended_at.ToNanoseconds() >= released.created_at.ToNanoseconds(),
                "ended_at precedes created_at",
            )
            again = stub.ReleaseSession(pb.ReleaseSessionRequest(session_id=sid), timeout=rpc_timeout)
            check(again.session == released, "a second ReleaseSession changed the session")

            watcher.wait_for_status(sid, Status.SESSION_STATUS_RELEASED, timeout=15)
        finally:
            watcher.stop()

        check(any(path == "/" and "Chrome" in ua for path, ua in site.requests),
              f"the page server saw no browser request: {site.requests}")
        check_events(watcher.events, sid)
        return ScenarioResult(
            session_id=sid,
            heading=heading,
            prime_sum=prime_sum,
            heading_color=color,
            viewport=viewport,
            live_pages=live_pages,
            released=released,
            events=list(watcher.events),
            refused_fields=refused_fields,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051", help="browserd gRPC address")
    args = parser.parse_args()
    try:
        result = run(args.server)
    except (ScenarioError, grpc.RpcError) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    for name, description in result.refused_fields.items():
        print(f"refused as expected: {name}: {description}")
    print(f"session {result.session_id}: h1={result.heading!r} sum={result.prime_sum} "
          f"color={result.heading_color} viewport={result.viewport}")
    for e in result.events:
        print(f"  event {e.sequence}: {status_name(e.from_status)} -> {status_name(e.to_status)}"
              f" {EndReason.Name(e.end_reason)}")
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
