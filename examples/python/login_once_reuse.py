"""browserd from Python: log in once, reuse the login in later sessions.

A *context* (ContextService) keeps a browser's state between sessions. This
scenario logs in to a tiny local site in one session, saves that browser's
state to a context, and starts later sessions from it already logged in:

1. ``CreateContext`` makes an empty context (version 0).
2. Session 1 is created with ``context {context_id, persist: true}``:
   Playwright logs in. The site sets an ``HttpOnly`` session cookie (no
   expiry: it would die with an ordinary browser) and its page stores the
   user in localStorage and IndexedDB.
3. ``ReleaseSession`` ends session 1 normally, and browserd saves its
   browser's state to the context as version 1. The save shows up in
   ``WatchSessions`` as an ``EVENT_KIND_CONTEXT_SAVED`` event.
4. Session 2 is created with the context (read-only: no ``persist``) and is
   logged in from its first request: the site knows the user, and
   localStorage and IndexedDB hold what session 1 stored.
5. A session without the context is logged out, as any new browser is.

Run against a running browserd (stubs first: ``./gen_stubs.sh``)::

    BROWSERD_API_KEY=browserd_… python login_once_reuse.py --server 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import http.cookies
import http.server
import json
import re
import secrets
import sys
import threading
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))

import grpc  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from browserd.v1 import contexts_pb2 as ctx_pb  # noqa: E402
from browserd.v1 import contexts_pb2_grpc as ctx_rpc  # noqa: E402
from browserd.v1 import sessions_pb2 as pb  # noqa: E402
from browserd.v1 import sessions_pb2_grpc as rpc  # noqa: E402
from browserd_example import ScenarioError, check, open_channel  # noqa: E402

USER = "alice"

# The login page stores the user in the browser too, as single-page apps
# do, and says "logged in" once IndexedDB has committed the record.
LOGIN_PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>Log in</title></head>
<body>
  <p id="status">logging in…</p>
  <script>
    const user = %(user)s;
    localStorage.setItem('user', user);
    const open = indexedDB.open('app', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('profile');
    open.onsuccess = () => {
      const tx = open.result.transaction('profile', 'readwrite');
      tx.objectStore('profile').put({name: user}, 'me');
      tx.oncomplete = () => {
        open.result.close();
        document.getElementById('status').textContent = 'logged in';
      };
    };
  </script>
</body>
</html>
"""

HOME_PAGE = b"<!doctype html><html><head><title>Home</title></head><body>home</body></html>"

# What a browser knows of the login, read from a page of the site: who the
# server says we are (the cookie is HttpOnly: only the server can tell),
# and the user in localStorage and in IndexedDB (null when absent).
READ_LOGIN_JS = """async () => {
  const whoami = await (await fetch('/whoami')).text();
  const localStorageUser = localStorage.getItem('user');
  const indexedDbUser = await new Promise((resolve) => {
    const open = indexedDB.open('app', 1);
    // No database yet: abort instead of creating one, so that reading
    // leaves the browser as it was.
    open.onupgradeneeded = () => open.transaction.abort();
    open.onerror = () => resolve(null);
    open.onsuccess = () => {
      const get = open.result.transaction('profile').objectStore('profile').get('me');
      get.onsuccess = () => { open.result.close(); resolve(get.result ? get.result.name : null); };
      get.onerror = () => { open.result.close(); resolve(null); };
    };
  });
  return {whoami, localStorageUser, indexedDbUser};
}"""


class LoginSite:
    """A site with a login, on an ephemeral 127.0.0.1 port.

    ``/login?user=NAME`` opens a server-side session and sets its id in a
    ``sid`` cookie (``HttpOnly``, no expiry: a session cookie);
    ``/whoami`` answers the user the request's cookie names, or
    ``anonymous``; ``/`` is a plain page to read the browser's storage from.
    """

    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}  # sid -> user
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/login":
                    user = urllib.parse.parse_qs(url.query).get("user", [""])[0]
                    if not re.fullmatch(r"[a-z0-9]{1,32}", user):
                        self.send_error(400, "user: 1 to 32 of a-z0-9")
                        return
                    sid = secrets.token_hex(16)
                    outer.sessions[sid] = user
                    page = (LOGIN_PAGE % {"user": json.dumps(user)}).encode()
                    self._reply(page, "text/html", [("Set-Cookie", f"sid={sid}; Path=/; HttpOnly")])
                elif url.path == "/whoami":
                    cookies = http.cookies.SimpleCookie(self.headers.get("Cookie", ""))
                    sid = cookies["sid"].value if "sid" in cookies else ""
                    self._reply(outer.sessions.get(sid, "anonymous").encode(), "text/plain")
                elif url.path == "/":
                    self._reply(HOME_PAGE, "text/html")
                else:
                    self.send_error(404)

            def _reply(self, body: bytes, content_type: str, headers=()) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"{content_type}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> LoginSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@dataclass
class Login:
    """What one browser knows of the login."""

    whoami: str
    local_storage_user: str | None
    indexed_db_user: str | None


@dataclass
class ReuseResult:
    context_id: str
    # Session 1 (persist): its id, the context's writer while it was LIVE,
    # and what its browser knew right after logging in.
    first_session_id: str
    writer_while_live: str
    after_login: Login
    # The CONTEXT_SAVED event of session 1, and the context right after.
    save_event: pb.SessionEvent
    saved: ctx_pb.Context
    # Session 2 (read-only, from the context) and a session without it.
    reused_session_id: str
    reused: Login
    without_context: Login
    # The context after session 2 ended: read-only sessions save nothing.
    after_reuse: ctx_pb.Context


def with_context(context_id: str, persist: bool, labels: dict[str, str]) -> pb.CreateSessionRequest:
    return pb.CreateSessionRequest(
        metadata=labels,
        # Playwright disconnects before we release: the session must stay.
        keep_alive=True,
        context=pb.SessionContext(context_id=context_id, persist=persist),
    )


def drive(connect_url: str, site: LoginSite, log_in: bool) -> Login:
    """Connects Playwright to a session's browser, logs in first if asked,
    and reads what the browser knows of the login."""
    with sync_playwright() as p:
        browser = p.chromium.connect_over_cdp(connect_url, timeout=30_000)
        # The browser's default context, not browser.new_context(): browserd
        # saves and restores the default context's state (its profile on
        # disk). A new_context() is an incognito-like context whose cookies
        # and storage are neither restored nor saved.
        context = browser.contexts[0]
        page = context.new_page()
        if log_in:
            page.goto(f"{site.url}login?user={USER}")
            page.wait_for_function("document.getElementById('status').textContent === 'logged in'")
        else:
            page.goto(site.url)
        seen = page.evaluate(READ_LOGIN_JS)
        # Disconnects Playwright; the browser stays up (keep_alive).
        browser.close()
    return Login(seen["whoami"], seen["localStorageUser"], seen["indexedDbUser"])


def release(stub: rpc.SessionServiceStub, session_id: str, rpc_timeout: float) -> None:
    released = stub.ReleaseSession(pb.ReleaseSessionRequest(session_id=session_id), timeout=rpc_timeout)
    check(released.session.status == pb.SESSION_STATUS_RELEASED,
          f"session {session_id} is {pb.SessionStatus.Name(released.session.status)} after release")


def wait_for_save(stub: rpc.SessionServiceStub, session_id: str, timeout: float) -> pb.SessionEvent:
    """The save of a persisting session's state, from WatchSessions: the
    first CONTEXT_SAVED or CONTEXT_SAVE_FAILED event of the session.
    ``after_sequence=0`` replays stored events, so a save made before we
    subscribed is seen too."""
    call = stub.WatchSessions(
        pb.WatchSessionsRequest(
            session_ids=[session_id],
            kinds=[pb.EVENT_KIND_CONTEXT_SAVED, pb.EVENT_KIND_CONTEXT_SAVE_FAILED],
            after_sequence=0,
        ),
        timeout=timeout,
    )
    try:
        event = next(call).event
    except grpc.RpcError as e:
        raise ScenarioError(f"no context save event for session {session_id}: {e.code()}") from e
    except StopIteration:
        raise ScenarioError("WatchSessions ended before the context save event") from None
    finally:
        call.cancel()
    check(event.kind == pb.EVENT_KIND_CONTEXT_SAVED,
          f"saving the context failed: {event.context_save.error!r}")
    return event


def login_once_reuse(address: str, api_key: str | None = None, rpc_timeout: float = 60.0) -> ReuseResult:
    """Runs the scenario against the browserd at ``address``, with
    ``api_key`` (default: ``$BROWSERD_API_KEY``; see ``open_channel``), and
    returns what it observed."""
    run = uuid.uuid4().hex
    labels = {"example": "python-login-once-reuse", "run": run}
    with open_channel(address, api_key) as channel, LoginSite() as site:
        sessions = rpc.SessionServiceStub(channel)
        contexts = ctx_rpc.ContextServiceStub(channel)

        def get_context(context_id: str) -> ctx_pb.Context:
            return contexts.GetContext(ctx_pb.GetContextRequest(context_id=context_id),
                                       timeout=rpc_timeout).context

        context = contexts.CreateContext(
            ctx_pb.CreateContextRequest(name=f"{USER} on the shop {run[:8]}", metadata=labels),
            timeout=rpc_timeout,
        ).context
        check(context.version == 0, f"a new context is at version {context.version}")

        # Session 1: log in, and save the browser's state when it ends.
        first = sessions.CreateSession(with_context(context.id, True, labels), timeout=rpc_timeout).session
        try:
            writer = get_context(context.id).writer_session_id
            after_login = drive(first.connect_url, site, log_in=True)
        finally:
            release(sessions, first.id, rpc_timeout)
        save_event = wait_for_save(sessions, first.id, timeout=rpc_timeout)
        saved = get_context(context.id)

        # Session 2: starts from the saved state, already logged in.
        reused = sessions.CreateSession(with_context(context.id, False, labels), timeout=rpc_timeout).session
        try:
            reused_login = drive(reused.connect_url, site, log_in=False)
        finally:
            release(sessions, reused.id, rpc_timeout)

        # Any session without the context starts from a new profile.
        stranger = sessions.CreateSession(
            pb.CreateSessionRequest(metadata=labels, keep_alive=True), timeout=rpc_timeout
        ).session
        try:
            stranger_login = drive(stranger.connect_url, site, log_in=False)
        finally:
            release(sessions, stranger.id, rpc_timeout)

        return ReuseResult(
            context_id=context.id,
            first_session_id=first.id,
            writer_while_live=writer,
            after_login=after_login,
            save_event=save_event,
            saved=saved,
            reused_session_id=reused.id,
            reused=reused_login,
            without_context=stranger_login,
            after_reuse=get_context(context.id),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051", help="browserd gRPC address")
    args = parser.parse_args()
    try:
        result = login_once_reuse(args.server)
        check(result.reused == Login(USER, USER, USER),
              f"session 2 did not start logged in: {result.reused}")
        check(result.without_context.whoami == "anonymous",
              f"a session without the context is logged in: {result.without_context}")
    except (ScenarioError, grpc.RpcError) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    save = result.save_event.context_save
    print(f"context {result.context_id}: session {result.first_session_id} logged in as "
          f"{result.after_login.whoami} and saved version {save.version} ({save.size_bytes} bytes)")
    print(f"session {result.reused_session_id} started from it: {result.reused}")
    print(f"a session without the context: {result.without_context}")
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
