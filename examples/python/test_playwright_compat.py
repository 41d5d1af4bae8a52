"""What Playwright users do through browserd's relay (connect_over_cdp, no
mocks), each kept working whatever browserd does to isolate a session:
screenshots, PDFs, downloads saved with save_as, uploads by path and by
buffer, tracing, routes, new contexts, many tabs, a second client, and a
20 MB evaluate result.

One browserd and one session serve the whole module: Chromium launches are
the expensive part."""

from __future__ import annotations

import zipfile
from pathlib import Path
import grpc
import pytest
from playwright.sync_api import sync_playwright

from browserd.v1 import sessions_pb2 as pb
from browserd.v1 import sessions_pb2_grpc as rpc
from browserd_server import Browserd

PAGE = "<html><head><title>compat</title></head><body><h1>Hello</h1></body></html>"


@pytest.fixture(scope="module")
def session():
    server = Browserd()
    try:
        with grpc.insecure_channel(server.grpc_addr) as channel:
            stub = rpc.SessionServiceStub(channel)
            created = stub.CreateSession(pb.CreateSessionRequest(keep_alive=True), timeout=60).session
            yield created
            stub.ReleaseSession(pb.ReleaseSessionRequest(session_id=created.id), timeout=30)
        assert server.stop() == 0, server.tail()
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def playwright():
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright, session):
    browser = playwright.chromium.connect_over_cdp(session.connect_url, timeout=30_000)
    yield browser
    browser.close()


@pytest.fixture
def page(browser):
    page = browser.contexts[0].new_page()
    page.set_content(PAGE)
    yield page
    page.close()


def test_screenshot(page):
    png = page.screenshot()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_pdf(page):
    pdf = page.pdf()
    assert pdf.startswith(b"%PDF-")


def save_a_download(page, target: Path) -> str:
    """Clicks a download link and saves the file with save_as; returns it."""
    page.evaluate(
        """() => {
            const a = document.createElement('a');
            a.href = URL.createObjectURL(new Blob(['downloaded by playwright']));
            a.download = 'report.txt';
            a.textContent = 'get it';
            document.body.append(a);
        }"""
    )
    with page.expect_download() as info:
        page.click("text=get it")
    download = info.value
    assert download.suggested_filename == "report.txt"
    download.save_as(target)
    return target.read_text()


def test_download_saved_with_save_as(page, tmp_path):
    assert save_a_download(page, tmp_path / "saved.txt") == "downloaded by playwright"


def read_input(page) -> list[str]:
    return page.evaluate(
        "() => Promise.all([...document.querySelector('input').files]"
        ".map(async f => f.name + ': ' + await f.text()))"
    )


def test_upload_by_path(page, tmp_path):
    page.set_content("<input type=file>")
    upload = tmp_path / "upload.txt"
    upload.write_text("sent by path")
    page.set_input_files("input", upload)
    assert read_input(page) == ["upload.txt: sent by path"]


def test_upload_by_buffer(page):
    page.set_content("<input type=file>")
    page.set_input_files(
        "input", files=[{"name": "buffer.txt", "mimeType": "text/plain", "buffer": b"sent as contents"}]
    )
    assert read_input(page) == ["buffer.txt: sent as contents"]


def test_tracing_to_a_zip(browser, tmp_path):
    context = browser.contexts[0]
    context.tracing.start(screenshots=True, snapshots=True)
    page = context.new_page()
    page.set_content(PAGE)
    page.close()
    trace = tmp_path / "trace.zip"
    context.tracing.stop(path=trace)
    with zipfile.ZipFile(trace) as archive:
        assert any(name.endswith(".trace") for name in archive.namelist()), archive.namelist()


def test_route_interception(page):
    page.route("http://compat.browserd.test/**", lambda route: route.fulfill(
        status=200, content_type="text/html", body="<title>intercepted</title>"))
    page.goto("http://compat.browserd.test/page")
    assert page.title() == "intercepted"


def test_a_new_context(browser, tmp_path):
    cookie = {"name": "who", "value": "default", "url": "http://compat.browserd.test/"}
    browser.contexts[0].add_cookies([cookie])
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content(PAGE)
        assert page.title() == "compat"
        assert context.cookies() == [], "a new context starts empty"
        assert save_a_download(page, tmp_path / "saved.txt") == "downloaded by playwright"
    finally:
        context.close()
        browser.contexts[0].clear_cookies()


def test_many_tabs(browser):
    context = browser.contexts[0]
    pages = [context.new_page() for _ in range(8)]
    try:
        for i, page in enumerate(pages):
            page.set_content(f"<title>tab {i}</title>")
        assert [page.title() for page in pages] == [f"tab {i}" for i in range(8)]
    finally:
        for page in pages:
            page.close()


def test_a_second_client(playwright, session, browser):
    second = playwright.chromium.connect_over_cdp(session.connect_url, timeout=30_000)
    try:
        page = second.contexts[0].new_page()
        assert page.evaluate("6 * 7") == 42
        page.close()
    finally:
        second.close()
    # The first client carries on.
    page = browser.contexts[0].new_page()
    assert page.evaluate("1 + 1") == 2
    page.close()


def test_a_20_mb_evaluate_result(page):
    size = 20 * 1024 * 1024
    assert page.evaluate(f"'x'.repeat({size})") == "x" * size

