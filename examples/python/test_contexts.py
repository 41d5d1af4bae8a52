"""Persistent contexts from a client's side, against a real browserd and
real Chromium: the "log in once, reuse" scenario, and the rules that keep
one context from being written by two sessions or deleted under one."""

from __future__ import annotations

import grpc
import pytest

from browserd.v1 import contexts_pb2 as ctx_pb
from browserd.v1 import contexts_pb2_grpc as ctx_rpc
from browserd.v1 import sessions_pb2 as pb
from browserd.v1 import sessions_pb2_grpc as rpc
from login_once_reuse import USER, Login, login_once_reuse, with_context


def refused(call, code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == code, err.value
    return err.value


def test_a_login_is_reused_by_a_later_session(browserd):
    result = login_once_reuse(browserd.grpc_addr)

    assert result.writer_while_live == result.first_session_id
    assert result.after_login == Login(whoami=USER, local_storage_user=USER, indexed_db_user=USER)

    event = result.save_event
    assert event.session_id == result.first_session_id
    assert event.kind == pb.EVENT_KIND_CONTEXT_SAVED
    assert event.context_save.context_id == result.context_id
    assert (event.context_save.version, event.context_save.error) == (1, "")
    assert event.context_save.size_bytes > 0

    saved = result.saved
    assert (saved.id, saved.version) == (result.context_id, 1)
    assert saved.size_bytes == event.context_save.size_bytes
    assert saved.saved_by_session_id == result.first_session_id
    assert (saved.writer_session_id, saved.last_save_error) == ("", "")

    # The HttpOnly session cookie, localStorage and IndexedDB all came back.
    assert result.reused == Login(whoami=USER, local_storage_user=USER, indexed_db_user=USER)
    assert result.without_context == Login(whoami="anonymous", local_storage_user=None, indexed_db_user=None)
    # The read-only session saved nothing.
    assert (result.after_reuse.version, result.after_reuse.saved_by_session_id) == (1, result.first_session_id)
    assert browserd.stop() == 0, browserd.tail()


def test_one_writer_at_a_time_and_no_delete_in_use(browserd):
    with browserd.channel() as channel:
        sessions = rpc.SessionServiceStub(channel)
        contexts = ctx_rpc.ContextServiceStub(channel)
        context = contexts.CreateContext(ctx_pb.CreateContextRequest(name="shared"), timeout=10).context
        labels = {"test": "one-writer"}

        def create(persist: bool) -> pb.Session:
            return sessions.CreateSession(with_context(context.id, persist, labels), timeout=60).session

        def release(session: pb.Session) -> None:
            sessions.ReleaseSession(pb.ReleaseSessionRequest(session_id=session.id), timeout=60)

        def delete():
            return contexts.DeleteContext(ctx_pb.DeleteContextRequest(context_id=context.id), timeout=10)

        writer = create(persist=True)
        assert writer.status == pb.SESSION_STATUS_LIVE

        # A second writer while the first is LIVE is refused, naming it,
        # and nothing is created; a reader is welcome.
        err = refused(lambda: create(persist=True), grpc.StatusCode.FAILED_PRECONDITION)
        assert writer.id in err.details(), err.details()
        reader = create(persist=False)
        assert reader.status == pb.SESSION_STATUS_LIVE
        listed = sessions.ListSessions(pb.ListSessionsRequest(metadata=labels), timeout=10).sessions
        assert sorted(s.id for s in listed) == sorted([writer.id, reader.id])

        # Deleting the context under its sessions is refused, whichever
        # kind they are.
        err = refused(delete, grpc.StatusCode.FAILED_PRECONDITION)
        assert writer.id in err.details() or reader.id in err.details(), err.details()
        release(writer)
        err = refused(delete, grpc.StatusCode.FAILED_PRECONDITION)
        assert reader.id in err.details(), err.details()

        # The write lease died with its session: a new writer is accepted.
        successor = create(persist=True)
        assert successor.status == pb.SESSION_STATUS_LIVE
        release(successor)
        release(reader)

        # Unused now: the delete goes through, and the context is gone.
        delete()
        refused(lambda: contexts.GetContext(ctx_pb.GetContextRequest(context_id=context.id), timeout=10),
                grpc.StatusCode.NOT_FOUND)
        refused(lambda: create(persist=False), grpc.StatusCode.NOT_FOUND)
    assert browserd.stop() == 0, browserd.tail()
