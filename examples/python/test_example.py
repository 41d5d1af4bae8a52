"""Runs the Python example against a real browserd (no mocks)."""

import grpc
import pytest
from google.rpc import error_details_pb2

import browserd_example
from browserd.v1 import sessions_pb2 as pb
from browserd.v1 import sessions_pb2_grpc as rpc


def test_scrape_scenario(browserd):
    result = browserd_example.run(browserd.grpc_addr)

    assert result.heading == "Hello from browserd"
    assert result.prime_sum == 28
    assert "viewport.width" in result.refused_fields
    assert result.heading_color == "rgb(200, 30, 40)"
    assert result.released.status == pb.SESSION_STATUS_RELEASED
    assert result.released.end_reason == pb.END_REASON_REQUESTED
    assert [e.to_status for e in result.events] == [
        pb.SESSION_STATUS_PENDING,
        pb.SESSION_STATUS_LIVE,
        pb.SESSION_STATUS_RELEASED,
    ]
    assert browserd.stop() == 0, browserd.tail()


def test_error_statuses(browserd):
    with grpc.insecure_channel(browserd.grpc_addr) as channel:
        stub = rpc.SessionServiceStub(channel)
        missing = "00000000-0000-4000-8000-000000000000"
        cases = [
            (lambda: stub.GetSession(pb.GetSessionRequest(session_id=missing), timeout=10),
             grpc.StatusCode.NOT_FOUND, None),
            (lambda: stub.GetSession(pb.GetSessionRequest(session_id="not-a-uuid"), timeout=10),
             grpc.StatusCode.INVALID_ARGUMENT, "session_id"),
            (lambda: stub.CreateSession(pb.CreateSessionRequest(viewport=pb.Viewport(width=0, height=10)), timeout=10),
             grpc.StatusCode.INVALID_ARGUMENT, "viewport.width"),
            (lambda: stub.CreateSession(pb.CreateSessionRequest(metadata={"team": "a\u202eb"}), timeout=10),
             grpc.StatusCode.INVALID_ARGUMENT, "metadata[team]"),
            (lambda: next(stub.WatchSessions(
                pb.WatchSessionsRequest(statuses=[pb.SESSION_STATUS_UNSPECIFIED], after_sequence=0), timeout=10)),
             grpc.StatusCode.INVALID_ARGUMENT, "statuses"),
        ]
        for call, code, bad_field in cases:
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == code, err.value
            details = browserd_example.error_details(err.value)
            if bad_field is not None:
                assert bad_field in browserd_example.bad_fields(err.value), details
            else:
                (resource,) = [d for d in details if isinstance(d, error_details_pb2.ResourceInfo)]
                assert (resource.resource_type, resource.resource_name) == ("browserd.v1.Session", missing)
        # A rejected request writes nothing.
        assert list(stub.ListSessions(pb.ListSessionsRequest(), timeout=10).sessions) == []
    assert browserd.stop() == 0, browserd.tail()
