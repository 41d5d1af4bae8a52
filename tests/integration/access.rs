//! Access control, attacked: calls without a key, with a forged, unknown or
//! revoked one, and with another project's; quotas; who each event says
//! did it; connect tokens that are forged, expired or another session's;
//! and when a server may start without any key.

use std::time::{Duration, SystemTime};

use browserd::pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    every_rpc_refuses_a_missing_forged_unknown_or_revoked_key,
    a_project_key_sees_nothing_of_another_project,
    an_admin_key_sees_every_project_and_filters_by_one,
    a_project_quota_refuses_with_its_name,
    racing_creates_never_overshoot_a_quota,
    events_record_who_caused_them,
    the_relay_refuses_forged_expired_and_foreign_tokens,
    an_open_server_closes_when_its_first_key_is_made,
    an_open_server_closes_when_a_key_is_made_beside_it,
    beyond_loopback_a_server_without_keys_refuses_to_start,
);

/// A server whose database already holds an admin key of the default
/// project when it starts (so it requires keys), and that key.
pub(crate) async fn spawn_keyed(backend: Backend) -> (TestApp, String) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data_dir.path()).await;
    let store = browserd::store::Store::connect(&database.url)
        .await
        .expect("open the test database");
    let (_, key) = browserd::access::create_key(&store, "default", true, "bootstrap".into())
        .await
        .expect("create the admin key");
    drop(store);
    (spawn_app_on(database, data_dir, |_| {}).await, key)
}

/// A project with a key of its own, made through AdminService.
pub(crate) async fn project_key(
    admin: &mut KeyedAdmin,
    name: &str,
    max_sessions: u32,
) -> (String, String) {
    admin
        .create_project(pb::CreateProjectRequest {
            name: name.into(),
            max_sessions,
        })
        .await
        .expect("CreateProject");
    let created = admin
        .create_api_key(pb::CreateApiKeyRequest {
            project: name.into(),
            admin: false,
            description: format!("{name}'s key"),
        })
        .await
        .expect("CreateApiKey")
        .into_inner();
    let record = created.api_key.expect("key record");
    (record.id, created.key)
}

async fn create_with(client: &mut KeyedClient, request: pb::CreateSessionRequest) -> pb::Session {
    client
        .create_session(request)
        .await
        .expect("CreateSession")
        .into_inner()
        .session
        .expect("session")
}

/// The code of every SessionService RPC and of an AdminService one, made
/// with `client` / `admin`.
async fn codes_of_every_rpc(
    client: &mut KeyedClient,
    admin: &mut KeyedAdmin,
    session_id: &str,
) -> Vec<(&'static str, Code)> {
    let id = || session_id.to_owned();
    let code = |outcome: Result<(), tonic::Status>| match outcome {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    };
    vec![
        (
            "CreateSession",
            code(
                client
                    .create_session(pb::CreateSessionRequest::default())
                    .await
                    .map(drop),
            ),
        ),
        (
            "GetSession",
            code(
                client
                    .get_session(pb::GetSessionRequest { session_id: id() })
                    .await
                    .map(drop),
            ),
        ),
        (
            "ListSessions",
            code(
                client
                    .list_sessions(pb::ListSessionsRequest::default())
                    .await
                    .map(drop),
            ),
        ),
        (
            "ExtendSession",
            code(
                client
                    .extend_session(pb::ExtendSessionRequest {
                        session_id: id(),
                        timeout: seconds(600),
                    })
                    .await
                    .map(drop),
            ),
        ),
        (
            "GetLiveDetails",
            code(
                client
                    .get_live_details(pb::GetLiveDetailsRequest { session_id: id() })
                    .await
                    .map(drop),
            ),
        ),
        (
            "WatchSessions",
            code(
                client
                    .watch_sessions(pb::WatchSessionsRequest::default())
                    .await
                    .map(drop),
            ),
        ),
        (
            "ReleaseSession",
            code(
                client
                    .release_session(pb::ReleaseSessionRequest { session_id: id() })
                    .await
                    .map(drop),
            ),
        ),
        (
            "ReleaseAllSessions",
            code(
                client
                    .release_all_sessions(pb::ReleaseAllSessionsRequest::default())
                    .await
                    .map(drop),
            ),
        ),
        (
            "ListApiKeys",
            code(
                admin
                    .list_api_keys(pb::ListApiKeysRequest::default())
                    .await
                    .map(drop),
            ),
        ),
    ]
}

/// A key is checked on every call: none, garbage, a well-formed key nobody
/// made, a real key with a wrong secret, and a revoked key (from the call
/// after RevokeApiKey returns) all get UNAUTHENTICATED from every RPC, and
/// the live session is untouched by them.
async fn every_rpc_refuses_a_missing_forged_unknown_or_revoked_key(backend: Backend) {
    let (app, admin_key) = spawn_keyed(backend).await;
    let channel = app.channel();
    let mut admin = keyed_admin(&channel, &admin_key);
    let (victim_id, victim_key) = project_key(&mut admin, "victim", 0).await;
    let mut victim = keyed(&channel, &victim_key);
    let session = create_with(&mut victim, pb::CreateSessionRequest::default()).await;

    let mut anonymous = pb::session_service_client::SessionServiceClient::new(channel.clone());
    let refused = anonymous
        .get_session(pb::GetSessionRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect_err("no key");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    let (_, unknown, _) = browserd::access::keys::generate();
    let wrong_secret = format!("{}_{}", &victim_key[..25], "A".repeat(43));
    let revoked = {
        let (id, key) = project_key(&mut admin, "leaver", 0).await;
        let revoked = admin
            .revoke_api_key(pb::RevokeApiKeyRequest { id })
            .await
            .expect("RevokeApiKey")
            .into_inner()
            .api_key
            .expect("record");
        assert!(revoked.revoked_at.is_some());
        key
    };
    for (what, key) in [
        ("garbage", "not a key".to_owned()),
        ("unknown", unknown),
        ("wrong secret", wrong_secret),
        ("revoked", revoked),
    ] {
        let mut client = keyed(&channel, &key);
        let mut keyed_admin = keyed_admin(&channel, &key);
        for (rpc, code) in codes_of_every_rpc(&mut client, &mut keyed_admin, &session.id).await {
            assert_eq!(code, Code::Unauthenticated, "{rpc} with a {what} key");
        }
    }
    // Neither raw nor through the `Bearer` helper: a request without any.
    let mut bare_admin = pb::admin_service_client::AdminServiceClient::new(channel.clone());
    let refused = bare_admin
        .list_projects(pb::ListProjectsRequest {})
        .await
        .expect_err("no key");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // A project key is not an admin key.
    let mut victim_admin = keyed_admin(&channel, &victim_key);
    let refused = victim_admin
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .expect_err("a project key");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Revocation holds from the next call on.
    let live = victim
        .get_session(pb::GetSessionRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect("the owner reads it")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(status_of(&live), pb::SessionStatus::Live);
    admin
        .revoke_api_key(pb::RevokeApiKeyRequest { id: victim_id })
        .await
        .expect("RevokeApiKey");
    let refused = victim
        .get_session(pb::GetSessionRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect_err("revoked");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut admin_sessions = keyed(&channel, &admin_key);
    let still = admin_sessions
        .get_session(pb::GetSessionRequest {
            session_id: session.id,
        })
        .await
        .expect("GetSession")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(status_of(&still), pb::SessionStatus::Live);
    app.stop().await;
}

/// Project B's key learns nothing of project A's session: every RPC that
/// names it answers NOT_FOUND (the answer for an id that never existed),
/// List and ReleaseAll skip it, A's idempotency key makes B a session of
/// its own, and B's watch stream (replay and live) carries none of A's
/// events.
async fn a_project_key_sees_nothing_of_another_project(backend: Backend) {
    let (app, admin_key) = spawn_keyed(backend).await;
    let channel = app.channel();
    let mut admin = keyed_admin(&channel, &admin_key);
    let (_, a_key) = project_key(&mut admin, "alpha", 0).await;
    let (_, b_key) = project_key(&mut admin, "beta", 0).await;
    let mut a = keyed(&channel, &a_key);
    let mut b = keyed(&channel, &b_key);
    let a_session = create_with(
        &mut a,
        pb::CreateSessionRequest {
            idempotency_key: "shared-key".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(a_session.project, "alpha");
    assert!(!a_session.connect_url.is_empty());
    let mut b_events = b
        .watch_sessions(pb::WatchSessionsRequest {
            after_sequence: Some(0),
            ..Default::default()
        })
        .await
        .expect("WatchSessions")
        .into_inner();

    let never_existed = uuid::Uuid::new_v4().to_string();
    for id in [&a_session.id, &never_existed] {
        let mut unused_admin = keyed_admin(&channel, &b_key);
        let codes = codes_of_every_rpc(&mut b, &mut unused_admin, id).await;
        for (rpc, code) in codes {
            let wanted = match rpc {
                "CreateSession" | "ListSessions" | "WatchSessions" | "ReleaseAllSessions" => {
                    Code::Ok
                }
                "ListApiKeys" => Code::PermissionDenied,
                _ => Code::NotFound,
            };
            assert_eq!(code, wanted, "{rpc} on {id}");
        }
    }
    let listed = b
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("ListSessions")
        .into_inner()
        .sessions;
    assert!(listed.iter().all(|s| s.project == "beta"), "{listed:?}");
    let asked_for_alpha = b
        .list_sessions(pb::ListSessionsRequest {
            project: "alpha".into(),
            ..Default::default()
        })
        .await
        .expect("ListSessions")
        .into_inner()
        .sessions;
    assert!(asked_for_alpha.is_empty(), "{asked_for_alpha:?}");
    let b_same_key = create_with(
        &mut b,
        pb::CreateSessionRequest {
            idempotency_key: "shared-key".into(),
            ..Default::default()
        },
    )
    .await;
    assert_ne!(b_same_key.id, a_session.id);
    assert_eq!(b_same_key.project, "beta");

    // A's session is still live after all that; A ends it, then B ends its
    // own: B's stream must reach its own last event without A's in between.
    let a_now = a
        .get_session(pb::GetSessionRequest {
            session_id: a_session.id.clone(),
        })
        .await
        .expect("GetSession")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(status_of(&a_now), pb::SessionStatus::Live);
    a.release_session(pb::ReleaseSessionRequest {
        session_id: a_session.id.clone(),
    })
    .await
    .expect("release A");
    b.release_all_sessions(pb::ReleaseAllSessionsRequest::default())
        .await
        .expect("release B's");
    loop {
        let event = tokio::time::timeout(EVENT_WAIT, b_events.message())
            .await
            .expect("an event within the wait")
            .expect("stream")
            .expect("not ended")
            .event
            .expect("event");
        let session = event.session.as_ref().expect("snapshot");
        assert_eq!(session.project, "beta", "B saw {event:?}");
        assert!(session.connect_url.is_empty(), "a token in an event");
        if event.session_id == b_same_key.id
            && event.to_status == pb::SessionStatus::Released as i32
        {
            break;
        }
    }
    app.stop().await;
}

/// An admin key reads every project's sessions (without their connect
/// URLs, which only the owning project gets) and narrows to one project
/// with the `project` filters.
async fn an_admin_key_sees_every_project_and_filters_by_one(backend: Backend) {
    let (app, admin_key) = spawn_keyed(backend).await;
    let channel = app.channel();
    let mut admin = keyed_admin(&channel, &admin_key);
    let mut admin_sessions = keyed(&channel, &admin_key);
    let (_, a_key) = project_key(&mut admin, "alpha", 0).await;
    let (_, b_key) = project_key(&mut admin, "beta", 0).await;
    let a_session = create_with(&mut keyed(&channel, &a_key), Default::default()).await;
    let b_session = create_with(&mut keyed(&channel, &b_key), Default::default()).await;

    let seen = admin_sessions
        .get_session(pb::GetSessionRequest {
            session_id: a_session.id.clone(),
        })
        .await
        .expect("GetSession")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(seen.project, "alpha");
    assert_eq!(status_of(&seen), pb::SessionStatus::Live);
    assert!(seen.connect_url.is_empty(), "another project's connect_url");
    let details = admin_sessions
        .get_live_details(pb::GetLiveDetailsRequest {
            session_id: a_session.id.clone(),
        })
        .await
        .expect("GetLiveDetails")
        .into_inner();
    assert!(details.connect_url.is_empty());

    let all = admin_sessions
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("ListSessions")
        .into_inner()
        .sessions;
    let ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
    assert!(ids.contains(&a_session.id.as_str()) && ids.contains(&b_session.id.as_str()));
    let only_beta = admin_sessions
        .list_sessions(pb::ListSessionsRequest {
            project: "beta".into(),
            ..Default::default()
        })
        .await
        .expect("ListSessions")
        .into_inner()
        .sessions;
    assert_eq!(
        only_beta.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [b_session.id.as_str()]
    );
    let bad = admin_sessions
        .list_sessions(pb::ListSessionsRequest {
            project: "Not A Name".into(),
            ..Default::default()
        })
        .await;
    assert_invalid_argument(&refusal(bad), "project");

    let released = admin_sessions
        .release_all_sessions(pb::ReleaseAllSessionsRequest {
            project: "beta".into(),
            ..Default::default()
        })
        .await
        .expect("ReleaseAllSessions")
        .into_inner()
        .released_ids;
    assert_eq!(released, std::slice::from_ref(&b_session.id));
    let mut beta_events = admin_sessions
        .watch_sessions(pb::WatchSessionsRequest {
            after_sequence: Some(0),
            project: "alpha".into(),
            ..Default::default()
        })
        .await
        .expect("WatchSessions")
        .into_inner();
    let first = beta_events
        .message()
        .await
        .expect("stream")
        .expect("an event")
        .event
        .expect("event");
    assert_eq!(first.session_id, a_session.id);
    app.stop().await;
}

/// A project at its quota gets RESOURCE_EXHAUSTED naming the project (not
/// the node), with a retry hint; another project is unaffected; a freed
/// slot is usable again.
async fn a_project_quota_refuses_with_its_name(backend: Backend) {
    let (app, admin_key) = spawn_keyed(backend).await;
    let channel = app.channel();
    let mut admin = keyed_admin(&channel, &admin_key);
    let (_, small_key) = project_key(&mut admin, "small", 1).await;
    let (_, other_key) = project_key(&mut admin, "other", 0).await;
    let mut small = keyed(&channel, &small_key);
    let first = create_with(&mut small, Default::default()).await;
    let refused = small
        .create_session(pb::CreateSessionRequest::default())
        .await
        .expect_err("over the quota");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("small"), "{}", refused.message());
    let details = refused.get_error_details();
    let violation = &details.quota_failure().expect("QuotaFailure").violations[0];
    assert_eq!(violation.subject, "project:small");
    assert!(details.retry_info().is_some());
    create_with(&mut keyed(&channel, &other_key), Default::default()).await;
    small
        .release_session(pb::ReleaseSessionRequest {
            session_id: first.id,
        })
        .await
        .expect("release");
    create_with(&mut small, Default::default()).await;
    // Raising the quota takes effect for the next create.
    admin
        .update_project(pb::UpdateProjectRequest {
            name: "small".into(),
            max_sessions: 2,
        })
        .await
        .expect("UpdateProject");
    create_with(&mut small, Default::default()).await;
    app.stop().await;
}

/// Six creates at once for a project allowed two: exactly two sessions,
/// four refusals naming the project. (The count is taken in the inserting
/// transaction, with the project's row locked on PostgreSQL.)
async fn racing_creates_never_overshoot_a_quota(backend: Backend) {
    let (app, admin_key) = spawn_keyed(backend).await;
    let channel = app.channel();
    let mut admin = keyed_admin(&channel, &admin_key);
    let (_, key) = project_key(&mut admin, "pair", 2).await;
    let creates = (0..6).map(|_| {
        let mut client = keyed(&channel, &key);
        async move {
            client
                .create_session(pb::CreateSessionRequest::default())
                .await
        }
    });
    let outcomes = futures_util::future::join_all(creates).await;
    let created = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(created, 2, "{outcomes:?}");
    for status in refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("pair"), "{status:?}");
    }
    app.stop().await;
}

/// Each event names who caused it: the key's id (never the key) for calls,
/// `system/timeout` for an expiry, `cdp-client` for a client's
/// Browser.close.
async fn events_record_who_caused_them(backend: Backend) {
    let (app, admin_key) = spawn_keyed(backend).await;
    let channel = app.channel();
    let mut admin = keyed_admin(&channel, &admin_key);
    let (key_id, key) = project_key(&mut admin, "actors", 0).await;
    let mut client = keyed(&channel, &key);
    let released = create_with(&mut client, Default::default()).await;
    client
        .release_session(pb::ReleaseSessionRequest {
            session_id: released.id.clone(),
        })
        .await
        .expect("release");
    let expiring = create_with(
        &mut client,
        pb::CreateSessionRequest {
            timeout: seconds(1),
            ..Default::default()
        },
    )
    .await;
    let closed = create_with(&mut client, Default::default()).await;
    let cdp = cdp_client(&closed.connect_url).await;
    let _ = cdp
        .call("Browser.close", serde_json::json!({}), EVENT_WAIT)
        .await;

    let mut events = keyed(&channel, &admin_key)
        .watch_sessions(pb::WatchSessionsRequest {
            after_sequence: Some(0),
            ..Default::default()
        })
        .await
        .expect("WatchSessions")
        .into_inner();
    let released_status = pb::SessionStatus::Released as i32;
    let mut actors = std::collections::HashMap::new();
    while [&released.id, &expiring.id, &closed.id]
        .iter()
        .any(|id| !actors.contains_key(&((*id).clone(), released_status)))
    {
        let event = tokio::time::timeout(EVENT_WAIT, events.message())
            .await
            .expect("an event within the wait")
            .expect("stream")
            .expect("not ended")
            .event
            .expect("event");
        assert!(
            !event.actor.contains(&key[9..]),
            "the key itself in an event"
        );
        actors.insert((event.session_id.clone(), event.to_status), event.actor);
    }
    let by_key = format!("key/{key_id}");
    for id in [&released.id, &expiring.id, &closed.id] {
        for status in [pb::SessionStatus::Pending, pb::SessionStatus::Live] {
            assert_eq!(actors[&(id.clone(), status as i32)], by_key, "{status:?}");
        }
    }
    assert_eq!(actors[&(released.id.clone(), released_status)], by_key);
    assert_eq!(
        actors[&(expiring.id.clone(), released_status)],
        "system/timeout"
    );
    assert_eq!(actors[&(closed.id.clone(), released_status)], "cdp-client");
    app.stop().await;
}

/// The relay accepts a session's own signed, unexpired token only: a
/// random one, one signed for another session, one whose expiry was
/// pushed out (the expiry is signed), one made with the server's secret
/// but expired, and one for the right session signed with another secret
/// all get the relay's answer for a session it does not serve (404: a
/// wrong token tells nothing about the session); the real one still works.
async fn the_relay_refuses_forged_expired_and_foreign_tokens(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(Default::default()).await;
    let other = app.create(Default::default()).await;
    let secret =
        browserd::secret::ServerSecret::load_or_create(&app.data_dir.path().join("secret"))
            .expect("the server's secret");
    let (base, token) = session.connect_url.split_once("?token=").expect("a token");
    let (_, other_token) = other.connect_url.split_once("?token=").expect("a token");
    let (expiry, mac) = token.split_once('.').expect("expiry.mac");
    let expires: u64 = expiry.parse().expect("seconds");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert!(
        expires > now && expires <= now + 301,
        "expires with the session"
    );
    let expired = secret.connect_token(&session.id, SystemTime::now() - Duration::from_secs(5));
    let stranger = browserd::secret::ServerSecret::from_bytes(vec![9; 32])
        .connect_token(&session.id, SystemTime::now() + Duration::from_secs(600));
    for (what, forged) in [
        ("random", format!("{expiry}.{}", "A".repeat(43))),
        ("another session's", other_token.to_owned()),
        ("pushed-out expiry", format!("{}.{mac}", expires + 3600)),
        ("expired", expired),
        ("another secret's", stranger),
    ] {
        let outcome = tokio_tungstenite::connect_async(format!("{base}?token={forged}"))
            .await
            .map(|(socket, _)| socket);
        assert_eq!(refused_status(outcome), 404, "{what} token");
    }
    round_trip(&cdp_client(&session.connect_url).await).await;
    app.stop().await;
}

/// On loopback with no key, the server runs open: calls without a key are
/// the default project's admin, recorded as `anonymous`. Once it creates a
/// key itself, a call without one is refused.
async fn an_open_server_closes_when_its_first_key_is_made(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(Default::default()).await;
    assert_eq!(session.project, "default");
    let created = app.events_of(&session.id).await;
    assert_eq!(created[0].actor, "anonymous");
    let mut admin = pb::admin_service_client::AdminServiceClient::new(app.channel());
    let key = admin
        .create_api_key(pb::CreateApiKeyRequest {
            project: "default".into(),
            admin: true,
            description: String::new(),
        })
        .await
        .expect("an open server makes its first key")
        .into_inner()
        .key;
    assert!(key.starts_with("browserd_"));
    let refused = app
        .client
        .get_session(pb::GetSessionRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect_err("no key any more");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut keyed_client = keyed(&app.channel(), &key);
    let seen = keyed_client
        .get_session(pb::GetSessionRequest {
            session_id: session.id,
        })
        .await
        .expect("GetSession with the key")
        .into_inner()
        .session
        .expect("session");
    assert!(
        !seen.connect_url.is_empty(),
        "the default project's own session"
    );
    app.stop().await;
}

/// A key written into the database by another process (`browserd keys
/// create`, another node) closes an open server from its next call on.
async fn an_open_server_closes_when_a_key_is_made_beside_it(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(Default::default()).await;
    let store = browserd::store::Store::connect(app.database_url())
        .await
        .expect("open the server's database");
    let (_, key) = browserd::access::create_key(&store, "default", true, String::new())
        .await
        .expect("create a key");
    drop(store);
    let refused = app
        .client
        .get_session(pb::GetSessionRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect_err("a key exists now");
    assert_eq!(refused.code(), Code::Unauthenticated);
    keyed(&app.channel(), &key)
        .get_session(pb::GetSessionRequest {
            session_id: session.id,
        })
        .await
        .expect("GetSession with the key");
    app.stop().await;
}

/// Listening beyond loopback with no key refuses to start and says how to
/// make one; `--auth none` starts anyway; so does a database with a key.
async fn beyond_loopback_a_server_without_keys_refuses_to_start(backend: Backend) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data_dir.path()).await;
    let mut config = browserd::harness::config(data_dir.path(), Some(database.url.clone()));
    config.listen = "0.0.0.0:0".parse().expect("address");
    let refused = start_and_stop(config.clone())
        .await
        .expect_err("no key, not loopback");
    let message = refused.to_string();
    assert!(
        message.contains("browserd keys create") && message.contains("--auth none"),
        "{message}"
    );
    let mut open = config.clone();
    open.auth = browserd::config::Auth::None;
    start_and_stop(open).await.expect("--auth none starts");
    let store = browserd::store::Store::connect(&database.url)
        .await
        .expect("open the test database");
    browserd::access::create_key(&store, "default", true, String::new())
        .await
        .expect("create a key");
    drop(store);
    start_and_stop(config).await.expect("a key exists: starts");
    database.remove().await;
}
