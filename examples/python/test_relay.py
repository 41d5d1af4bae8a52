"""Playwright against browserd's CDP relay (no mocks): HTTP discovery from
the session's http:// URL, the token as an Authorization header, and what
Playwright's browser.close() does to a session it connected to over CDP."""

from __future__ import annotations

import grpc
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from browserd.v1 import sessions_pb2 as pb
from browserd.v1 import sessions_pb2_grpc as rpc


def create(stub: rpc.SessionServiceStub, keep_alive: bool) -> pb.Session:
    return stub.CreateSession(pb.CreateSessionRequest(keep_alive=keep_alive), timeout=60).session


def http_form(ws_url: str) -> str:
    assert ws_url.startswith("ws://"), ws_url
    return "http://" + ws_url.removeprefix("ws://")


def drive(browser) -> None:
    """Proof the connection works: a new page evaluates script."""
    page = browser.contexts[0].new_page()
    assert page.evaluate("6 * 7") == 42
    page.close()


def test_connect_over_cdp_with_the_http_url(browserd):
    """Playwright given `http://…/devtools/browser/<id>?token=…` asks
    `…/<id>/json/version/?token=…` and connects to its webSocketDebuggerUrl."""
    with grpc.insecure_channel(browserd.grpc_addr) as channel:
        stub = rpc.SessionServiceStub(channel)
        session = create(stub, keep_alive=True)
        with sync_playwright() as p:
            browser = p.chromium.connect_over_cdp(http_form(session.connect_url), timeout=30_000)
            drive(browser)
            browser.close()
        stub.ReleaseSession(pb.ReleaseSessionRequest(session_id=session.id), timeout=30)
    assert browserd.stop() == 0, browserd.tail()


def test_the_token_as_a_bearer_header(browserd):
    """With `headers={"Authorization": "Bearer <token>"}` the token stays out
    of the URL, over ws:// and over http:// discovery alike; without it the
    relay refuses."""
    with grpc.insecure_channel(browserd.grpc_addr) as channel:
        stub = rpc.SessionServiceStub(channel)
        session = create(stub, keep_alive=True)
        base, token = session.connect_url.split("?token=")
        headers = {"Authorization": f"Bearer {token}"}
        with sync_playwright() as p:
            for url in (base, http_form(base)):
                browser = p.chromium.connect_over_cdp(url, headers=headers, timeout=30_000)
                drive(browser)
                browser.close()
            for url in (base, http_form(base)):
                with pytest.raises(PlaywrightError):
                    p.chromium.connect_over_cdp(url, timeout=10_000)
        assert stub.GetSession(pb.GetSessionRequest(session_id=session.id), timeout=10).session.status == (
            pb.SESSION_STATUS_LIVE
        )
        stub.ReleaseSession(pb.ReleaseSessionRequest(session_id=session.id), timeout=30)
    assert token not in "\n".join(browserd.log), "a token reached the log"
    assert browserd.stop() == 0, browserd.tail()


@pytest.mark.parametrize("keep_alive", [True, False])
def test_playwright_close_only_disconnects(browserd, keep_alive):
    """Playwright's browser.close() on a connect_over_cdp browser does not
    send Browser.close: it closes its connection. So the session behaves as
    on any disconnect: kept with keep_alive, else released DISCONNECTED.
    (Puppeteer's browser.close() does send it: see the Node suite.)"""
    with grpc.insecure_channel(browserd.grpc_addr) as channel:
        stub = rpc.SessionServiceStub(channel)
        session = create(stub, keep_alive=keep_alive)
        with sync_playwright() as p:
            browser = p.chromium.connect_over_cdp(session.connect_url, timeout=30_000)
            drive(browser)
            browser.close()
        watch = stub.WatchSessions(
            pb.WatchSessionsRequest(session_ids=[session.id], after_sequence=0), timeout=30
        )
        if keep_alive:
            current = stub.GetSession(pb.GetSessionRequest(session_id=session.id), timeout=10).session
            assert current.status == pb.SESSION_STATUS_LIVE, current
            stub.ReleaseSession(pb.ReleaseSessionRequest(session_id=session.id), timeout=30)
        ended = next(
            e for e in (r.event for r in watch) if e.to_status in (pb.SESSION_STATUS_RELEASED, pb.SESSION_STATUS_FAILED)
        )
        watch.cancel()
        assert ended.to_status == pb.SESSION_STATUS_RELEASED, ended
        expected = pb.END_REASON_REQUESTED if keep_alive else pb.END_REASON_DISCONNECTED
        assert ended.end_reason == expected, pb.EndReason.Name(ended.end_reason)
    assert browserd.stop() == 0, browserd.tail()
