"""API keys and projects from a client's side, against a real browserd whose
keys were made offline with ``browserd keys create --data-dir`` before it
started (so it requires them from its first call)."""

from __future__ import annotations

import grpc
import pytest
from playwright.sync_api import sync_playwright

import browserd_example
from browserd.v1 import sessions_pb2 as pb
from browserd.v1 import sessions_pb2_grpc as rpc
from browserd_server import Browserd, create_key, key_id


@pytest.fixture
def keyed(tmp_path):
    """A browserd with an admin key and keys of projects team-a and team-b."""
    data_dir = str(tmp_path / "data")
    keys = {
        "admin": create_key(data_dir, "default", admin=True),
        "team-a": create_key(data_dir, "team-a"),
        "team-b": create_key(data_dir, "team-b"),
    }
    server = Browserd(data_dir=data_dir)
    try:
        yield server, keys
    finally:
        server.cleanup()


def stub_with(server: Browserd, api_key: str) -> tuple[grpc.Channel, rpc.SessionServiceStub]:
    channel = browserd_example.open_channel(server.grpc_addr, api_key)
    return channel, rpc.SessionServiceStub(channel)


def refused(call, code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == code, err.value
    return err.value


def test_calls_without_a_valid_key_are_unauthenticated(keyed):
    server, keys = keyed
    admin_id = key_id(keys["admin"])
    wrong_secret = f"browserd_{admin_id}_{'A' * 43}"
    for api_key in ("", wrong_secret, "not-a-browserd-key"):
        channel, stub = stub_with(server, api_key)
        with channel:
            refused(lambda: stub.CreateSession(pb.CreateSessionRequest(), timeout=10),
                    grpc.StatusCode.UNAUTHENTICATED)
            refused(lambda: stub.ListSessions(pb.ListSessionsRequest(), timeout=10),
                    grpc.StatusCode.UNAUTHENTICATED)
            refused(lambda: next(stub.WatchSessions(pb.WatchSessionsRequest(after_sequence=0), timeout=10)),
                    grpc.StatusCode.UNAUTHENTICATED)
    # Nothing was created by the refused calls.
    channel, admin = stub_with(server, keys["admin"])
    with channel:
        assert list(admin.ListSessions(pb.ListSessionsRequest(), timeout=10).sessions) == []
    assert server.stop() == 0, server.tail()


def test_the_example_runs_with_the_key_from_the_environment(keyed, monkeypatch):
    server, keys = keyed
    monkeypatch.setenv(browserd_example.API_KEY_ENV, keys["team-a"])
    result = browserd_example.run(server.grpc_addr)

    assert result.heading == "Hello from browserd"
    assert result.released.project == "team-a"
    assert {e.actor for e in result.events} == {f"key/{key_id(keys['team-a'])}"}
    assert server.stop() == 0, server.tail()


def test_a_project_key_sees_its_own_sessions_only(keyed):
    server, keys = keyed
    channel_a, team_a = stub_with(server, keys["team-a"])
    channel_b, team_b = stub_with(server, keys["team-b"])
    channel_admin, admin = stub_with(server, keys["admin"])
    with channel_a, channel_b, channel_admin:
        session = team_a.CreateSession(pb.CreateSessionRequest(keep_alive=True), timeout=60).session
        assert session.project == "team-a"
        assert session.connect_url.startswith("ws://"), session

        # To team-b, team-a's session does not exist.
        by_id = {"session_id": session.id}
        for call in (
            lambda: team_b.GetSession(pb.GetSessionRequest(**by_id), timeout=10),
            lambda: team_b.GetLiveDetails(pb.GetLiveDetailsRequest(**by_id), timeout=10),
            lambda: team_b.ReleaseSession(pb.ReleaseSessionRequest(**by_id), timeout=10),
        ):
            refused(call, grpc.StatusCode.NOT_FOUND)
        assert list(team_b.ListSessions(pb.ListSessionsRequest(), timeout=10).sessions) == []
        assert list(team_b.ListSessions(pb.ListSessionsRequest(project="team-a"), timeout=10).sessions) == []
        assert list(team_b.ReleaseAllSessions(pb.ReleaseAllSessionsRequest(), timeout=10).released_ids) == []

        # The admin key sees it, but only its own project gets a connect_url.
        (seen,) = admin.ListSessions(pb.ListSessionsRequest(project="team-a"), timeout=10).sessions
        assert (seen.id, seen.status, seen.connect_url) == (session.id, pb.SESSION_STATUS_LIVE, "")

        # team-b's refused release left it LIVE; Playwright drives it.
        with sync_playwright() as p:
            browser = p.chromium.connect_over_cdp(session.connect_url, timeout=30_000)
            page = browser.contexts[0].new_page()
            assert page.evaluate("6 * 7") == 42
            browser.close()

        released = team_a.ReleaseSession(pb.ReleaseSessionRequest(**by_id), timeout=30).session
        assert (released.status, released.end_reason) == (pb.SESSION_STATUS_RELEASED, pb.END_REASON_REQUESTED)
    assert server.stop() == 0, server.tail()
