"""The web console and live view in real headless Chromium (Playwright),
against a real browserd that requires API keys: sign in with a project
key, see a session appear within a second of CreateSession (and another
project's never), open its live view, see the frame change when a CDP
client navigates, click through the viewer and see the page count the
click, see a view-only link refuse input and an expired link refused, and
see the session disappear on release. Saves docs/console.png and
docs/live-view.png, which README shows."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest
from google.protobuf import duration_pb2
from playwright.sync_api import sync_playwright

import browserd_example
from browserd.v1 import sessions_pb2 as pb
from browserd.v1 import sessions_pb2_grpc as rpc
from browserd_server import Browserd, create_key

DOCS = Path(__file__).resolve().parents[2] / "docs"

# A page that counts clicks in its title, so a CDP client can read them.
CLICK_PAGE = b"""<!doctype html><html><head><title>clicks: 0</title>
<style>body{margin:0;height:100vh;font:32px sans-serif;background:#fdf6e3;display:flex;align-items:center;justify-content:center}</style>
</head><body><div id="n">Click me: 0</div>
<script>let n=0;document.addEventListener('click',()=>{n++;document.title='clicks: '+n;document.getElementById('n').textContent='Click me: '+n;});</script>
</body></html>"""


class PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(CLICK_PAGE)))
        self.end_headers()
        self.wfile.write(CLICK_PAGE)

    def log_message(self, *args):
        pass


@pytest.fixture
def click_page():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture
def keyed(tmp_path):
    data_dir = str(tmp_path / "data")
    keys = {
        "admin": create_key(data_dir, "default", admin=True),
        "team-a": create_key(data_dir, "team-a"),
    }
    server = Browserd(data_dir=data_dir)
    try:
        yield server, keys
    finally:
        server.cleanup()


def frames(page) -> int:
    return int(page.get_attribute("#screen", "data-frames") or 0)


def test_console_and_live_view(keyed, click_page):
    server, keys = keyed
    console_url = f"http://{server.cdp_addr}/console"
    channel = browserd_example.open_channel(server.grpc_addr, keys["team-a"])
    stub = rpc.SessionServiceStub(channel)
    admin = rpc.SessionServiceStub(browserd_example.open_channel(server.grpc_addr, keys["admin"]))
    with sync_playwright() as p:
        viewer = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        context = viewer.new_context(viewport={"width": 1280, "height": 900})
        console = context.new_page()

        # Sign in: a wrong key is refused, the project's key is taken.
        console.goto(console_url)
        console.fill("#key", "browserd_0000000000000000_nope")
        console.click("#sign-in button")
        console.wait_for_selector("#sign-in-error:has-text('refused')")
        console.fill("#key", keys["team-a"])
        console.click("#sign-in button")
        console.wait_for_selector("#sessions-view", state="visible")
        assert "team-a" in console.inner_text("#who")
        console.wait_for_selector("#stream-state:has-text('live')")

        # Another project's session never shows; this project's shows
        # within a second of CreateSession.
        foreign = admin.CreateSession(pb.CreateSessionRequest(keep_alive=True), timeout=60).session
        session = stub.CreateSession(
            pb.CreateSessionRequest(keep_alive=True, metadata={"suite": "console"}), timeout=60
        ).session
        created = time.monotonic()
        console.wait_for_selector(f'tr[data-id="{session.id}"]', timeout=1000)
        assert time.monotonic() - created < 1.0
        assert console.query_selector(f'tr[data-id="{foreign.id}"]') is None
        console.fill("#metadata-filter", "suite=console")
        DOCS.mkdir(exist_ok=True)
        console.screenshot(path=str(DOCS / "console.png"))

        # Its live view, opened from the session page.
        console.click(f'tr[data-id="{session.id}"]')
        console.wait_for_selector("#session-view", state="visible")
        with context.expect_page() as opened:
            console.click("#live-control")
        live = opened.value
        live.wait_for_function("() => Number(document.querySelector('#screen').dataset.frames || 0) > 0")
        assert "control" in live.inner_text("#mode")
        blank = live.get_attribute("#screen", "src")

        # A CDP client navigates: the viewer's frame changes.
        cdp = p.chromium.connect_over_cdp(session.connect_url, timeout=30_000)
        page = cdp.contexts[0].pages[0]
        page.goto(click_page)
        live.wait_for_function(
            "(before) => document.querySelector('#screen').src !== before", arg=blank, timeout=10_000
        )
        live.wait_for_selector("#tabs button:has-text('clicks: 0')")

        # A click in the viewer reaches the page.
        live.click("#screen", position={"x": 200, "y": 200})
        deadline = time.monotonic() + 10
        while page.title() != "clicks: 1" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert page.title() == "clicks: 1"
        live.wait_for_function("() => document.querySelector('#tabs button.shown')?.textContent === 'clicks: 1'")
        live.screenshot(path=str(DOCS / "live-view.png"))

        # A view-only link shows the page and refuses input.
        view_only = stub.CreateLiveViewLink(
            pb.CreateLiveViewLinkRequest(session_id=session.id, control=False), timeout=30
        )
        watcher = context.new_page()
        watcher.goto(view_only.url)
        watcher.wait_for_function("() => Number(document.querySelector('#screen').dataset.frames || 0) > 0")
        assert "view only" in watcher.inner_text("#mode")
        watcher.click("#screen", position={"x": 200, "y": 200})
        watcher.wait_for_selector("#notice:has-text('view-only')")
        time.sleep(0.5)
        assert page.title() == "clicks: 1"

        # An expired link is refused, with no frame shown.
        short = stub.CreateLiveViewLink(
            pb.CreateLiveViewLinkRequest(
                session_id=session.id, control=True, ttl=duration_pb2.Duration(seconds=1)
            ),
            timeout=30,
        )
        time.sleep(1.5)
        late = context.new_page()
        late.goto(short.url)
        late.wait_for_selector("body[data-ended]")
        assert frames(late) == 0

        # A revoked link closes its viewer at once.
        stub.RevokeLiveViewLink(pb.RevokeLiveViewLinkRequest(link_id=view_only.link_id), timeout=30)
        watcher.wait_for_selector("body[data-ended*='revoked']", timeout=5_000)

        # Released from the console: the session leaves the LIVE list, and
        # its viewer ends.
        console.click("#release")
        console.wait_for_selector("#session-title:has-text('RELEASED')", timeout=10_000)
        console.click("#back")
        console.wait_for_selector(f'tr[data-id="{session.id}"]', state="detached", timeout=1000)
        live.wait_for_selector("body[data-ended]", timeout=5_000)

        # The timeline recorded the viewers, by link.
        events = [
            e
            for e in stub_events(stub, session.id)
            if e.kind in (pb.EVENT_KIND_VIEWER_JOINED, pb.EVENT_KIND_VIEWER_LEFT)
        ]
        assert events and all(e.actor.startswith("viewer/") for e in events), events
        cdp.close()
        viewer.close()
    admin.ReleaseSession(pb.ReleaseSessionRequest(session_id=foreign.id), timeout=30)
    assert server.stop() == 0, server.tail()


def stub_events(stub, session_id: str) -> list:
    events = []
    stream = stub.WatchSessions(
        pb.WatchSessionsRequest(session_ids=[session_id], after_sequence=0), timeout=3
    )
    try:
        for response in stream:
            events.append(response.event)
            if response.event.to_status == pb.SESSION_STATUS_RELEASED and response.event.kind == pb.EVENT_KIND_STATUS_CHANGED:
                break
    except Exception:  # the deadline ends a stream that has no more
        pass
    return events
