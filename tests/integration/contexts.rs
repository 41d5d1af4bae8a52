//! ContextService and the context lease of CreateSession: names and
//! pages, project scoping attacked with another project's key, one
//! persisting session per context (racing on two nodes), and
//! `browserd contexts` as an operator runs it.

use std::collections::HashMap;

use browserd::pb;
use serde_json::Value;
use tonic::Code;

use crate::access::{project_key, spawn_keyed};
use crate::binary::{browserd, serve_with};
use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    contexts_are_created_read_listed_and_deleted,
    bad_context_requests_name_the_field_and_write_nothing,
    another_projects_contexts_are_not_found,
    one_persisting_session_per_context_and_any_number_of_readers,
);

// Several nodes share PostgreSQL only: a second node on a SQLite file is
// refused at start (see `binary::a_second_node_on_one_data_dir_or_sqlite_file_is_refused`).
mod two_nodes {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_persisting_creates_admit_exactly_one() {
        super::racing_persisting_creates_on_two_nodes_admit_exactly_one(
            crate::support::Backend::Postgres,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delete_racing_session_starts_never_leaves_a_session_without_its_context() {
        super::a_delete_racing_session_starts_never_leaves_a_session_without_its_context(
            crate::support::Backend::Postgres,
        )
        .await
    }
}

/// A keyed server with projects `a` and `b`, each with a key of its own.
struct Projects {
    app: TestApp,
    admin_key: String,
    key_a: String,
    /// ContextService and SessionService with project `a`'s key.
    a: KeyedContexts,
    sessions_a: KeyedClient,
    /// The same with project `b`'s key.
    b: KeyedContexts,
    sessions_b: KeyedClient,
}

async fn two_projects(backend: Backend) -> Projects {
    let (app, admin_key) = spawn_keyed(backend).await;
    let mut admin = keyed_admin(&app.channel(), &admin_key);
    let (_, a) = project_key(&mut admin, "a", 0).await;
    let (_, b) = project_key(&mut admin, "b", 0).await;
    Projects {
        a: keyed_contexts(&app.channel(), &a),
        sessions_a: keyed(&app.channel(), &a),
        b: keyed_contexts(&app.channel(), &b),
        sessions_b: keyed(&app.channel(), &b),
        app,
        admin_key,
        key_a: a,
    }
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn create_context(
    client: &mut KeyedContexts,
    name: &str,
    metadata: &[(&str, &str)],
) -> pb::Context {
    client
        .create_context(pb::CreateContextRequest {
            name: name.into(),
            metadata: labels(metadata),
        })
        .await
        .expect("CreateContext")
        .into_inner()
        .context
        .expect("context in response")
}

async fn get_context(client: &mut KeyedContexts, id: &str) -> Result<pb::Context, tonic::Status> {
    client
        .get_context(pb::GetContextRequest {
            context_id: id.into(),
        })
        .await
        .map(|r| r.into_inner().context.expect("context in response"))
}

async fn delete_context(client: &mut KeyedContexts, id: &str) -> Result<(), tonic::Status> {
    client
        .delete_context(pb::DeleteContextRequest {
            context_id: id.into(),
        })
        .await
        .map(drop)
}

/// Every page of a listing, and how many pages it took.
async fn list_all(
    client: &mut KeyedContexts,
    request: pb::ListContextsRequest,
) -> (Vec<pb::Context>, usize) {
    let mut contexts = Vec::new();
    let mut pages = 0;
    let mut request = request;
    loop {
        let page = client
            .list_contexts(request.clone())
            .await
            .expect("ListContexts")
            .into_inner();
        pages += 1;
        contexts.extend(page.contexts);
        if page.next_page_token.is_empty() {
            return (contexts, pages);
        }
        request.page_token = page.next_page_token;
    }
}

fn names(contexts: &[pb::Context]) -> Vec<&str> {
    contexts.iter().map(|c| c.name.as_str()).collect()
}

fn with_context(context_id: &str, persist: bool) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        context: Some(pb::SessionContext {
            context_id: context_id.into(),
            persist,
        }),
        ..Default::default()
    }
}

async fn create_session(
    client: &mut KeyedClient,
    request: pb::CreateSessionRequest,
) -> Result<pb::Session, tonic::Status> {
    client
        .create_session(request)
        .await
        .map(|r| r.into_inner().session.expect("session in response"))
}

async fn release(client: &mut KeyedClient, id: &str) -> pb::Session {
    client
        .release_session(pb::ReleaseSessionRequest {
            session_id: id.into(),
        })
        .await
        .expect("ReleaseSession")
        .into_inner()
        .session
        .expect("session in response")
}

async fn contexts_are_created_read_listed_and_deleted(backend: Backend) {
    let Projects {
        app, mut a, mut b, ..
    } = two_projects(backend).await;

    let login = create_context(&mut a, "login", &[("site", "shop")]).await;
    assert!(!login.id.is_empty());
    assert_eq!(login.name, "login");
    assert_eq!(login.project, "a");
    assert_eq!(login.metadata, labels(&[("site", "shop")]));
    assert_eq!(
        (login.version, login.size_bytes),
        (0, 0),
        "a new context is empty"
    );
    assert_eq!(login.writer_session_id, "");
    assert_eq!(login.saved_by_session_id, "");
    assert_eq!(login.last_save_error, "");
    assert!(login.created_at.is_some() && login.created_at == login.updated_at);

    let duplicate = a
        .create_context(pb::CreateContextRequest {
            name: "login".into(),
            metadata: HashMap::new(),
        })
        .await;
    let (code, message) = code_and_message(duplicate);
    assert_eq!(code, Code::AlreadyExists, "{message}");
    assert!(message.contains("login"), "{message}");
    // Names are per project.
    let elsewhere = create_context(&mut b, "login", &[]).await;
    assert_eq!(elsewhere.project, "b");
    assert_ne!(elsewhere.id, login.id);

    assert_eq!(
        get_context(&mut a, &login.id).await.expect("GetContext"),
        login
    );

    create_context(&mut a, "two", &[("site", "shop"), ("team", "x")]).await;
    create_context(&mut a, "three", &[("site", "news")]).await;
    let (shop, _) = list_all(
        &mut a,
        pb::ListContextsRequest {
            metadata: labels(&[("site", "shop")]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(names(&shop), ["login", "two"]);
    let (both, _) = list_all(
        &mut a,
        pb::ListContextsRequest {
            metadata: labels(&[("site", "shop"), ("team", "x")]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(names(&both), ["two"]);
    let (paged, pages) = list_all(
        &mut a,
        pb::ListContextsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        names(&paged),
        ["login", "three", "two"],
        "by name, once each"
    );
    assert!(pages >= 3, "one context per page: {pages} pages");
    // A filtered listing pages through the matches only.
    let (shop_paged, _) = list_all(
        &mut a,
        pb::ListContextsRequest {
            metadata: labels(&[("site", "shop")]),
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(names(&shop_paged), ["login", "two"]);

    delete_context(&mut a, &login.id)
        .await
        .expect("DeleteContext");
    let (code, message) = code_and_message(get_context(&mut a, &login.id).await);
    assert_eq!(code, Code::NotFound, "{message}");
    let (code, _) = code_and_message(delete_context(&mut a, &login.id).await);
    assert_eq!(code, Code::NotFound, "a second delete");
    let (left, _) = list_all(&mut a, pb::ListContextsRequest::default()).await;
    assert_eq!(names(&left), ["three", "two"]);
    // Its name is free again.
    create_context(&mut a, "login", &[]).await;
    app.stop().await;
}

async fn bad_context_requests_name_the_field_and_write_nothing(backend: Backend) {
    let Projects {
        app,
        mut a,
        mut sessions_a,
        ..
    } = two_projects(backend).await;
    let create = |name: &str, metadata: &[(&str, &str)]| pb::CreateContextRequest {
        name: name.into(),
        metadata: labels(metadata),
    };
    let long_name = "n".repeat(129);
    let long_key = "k".repeat(200);
    for (request, field) in [
        (create("", &[]), "name"),
        (create(&long_name, &[]), "name"),
        (create("bad\nname", &[]), "name"),
        (create("ok", &[("", "v")]), "metadata"),
        (create("ok", &[(&long_key, "v")]), "metadata"),
        (create("ok", &[("k", "bad\u{7}value")]), "metadata"),
    ] {
        let status = refusal(a.create_context(request.clone()).await);
        assert_invalid_argument(&status, field);
    }
    let (none, _) = list_all(&mut a, pb::ListContextsRequest::default()).await;
    assert_eq!(names(&none), Vec::<&str>::new(), "nothing was written");
    // The longest name is taken.
    create_context(&mut a, &"n".repeat(128), &[]).await;

    for (request, field) in [
        (
            pb::ListContextsRequest {
                page_token: "zz".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListContextsRequest {
                page_token: "not a token".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListContextsRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListContextsRequest {
                metadata: labels(&[("", "v")]),
                ..Default::default()
            },
            "metadata",
        ),
        (
            pb::ListContextsRequest {
                project: "Not A Project".into(),
                ..Default::default()
            },
            "project",
        ),
    ] {
        let status = refusal(a.list_contexts(request).await);
        assert_invalid_argument(&status, field);
    }
    for id in ["", "not-a-uuid"] {
        assert_invalid_argument(&refusal(get_context(&mut a, id).await), "context_id");
        assert_invalid_argument(&refusal(delete_context(&mut a, id).await), "context_id");
    }
    let status = refusal(create_session(&mut sessions_a, with_context("nope", false)).await);
    assert_invalid_argument(&status, "context.context_id");
    let listed = sessions_a
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("ListSessions")
        .into_inner()
        .sessions;
    assert!(listed.is_empty(), "no session was made: {listed:?}");
    app.stop().await;
}

async fn another_projects_contexts_are_not_found(backend: Backend) {
    let Projects {
        app,
        admin_key,
        mut a,
        mut b,
        mut sessions_b,
        ..
    } = two_projects(backend).await;
    let mine = create_context(&mut a, "login", &[("site", "shop")]).await;
    let theirs = create_context(&mut b, "other", &[("site", "shop")]).await;

    let (code, message) = code_and_message(get_context(&mut b, &mine.id).await);
    assert_eq!(code, Code::NotFound, "{message}");
    let (code, message) = code_and_message(delete_context(&mut b, &mine.id).await);
    assert_eq!(code, Code::NotFound, "{message}");
    assert_eq!(
        get_context(&mut a, &mine.id).await.expect("still there"),
        mine
    );
    for persist in [false, true] {
        let (code, message) = code_and_message(
            create_session(&mut sessions_b, with_context(&mine.id, persist)).await,
        );
        assert_eq!(code, Code::NotFound, "persist {persist}: {message}");
    }
    let sessions = sessions_b
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("ListSessions")
        .into_inner()
        .sessions;
    assert!(sessions.is_empty(), "no session was made: {sessions:?}");
    assert_eq!(
        get_context(&mut a, &mine.id)
            .await
            .expect("GetContext")
            .writer_session_id,
        "",
        "a refused session holds no lease"
    );

    // A project key lists its own, whatever it asks for.
    for request in [
        pb::ListContextsRequest::default(),
        pb::ListContextsRequest {
            metadata: labels(&[("site", "shop")]),
            ..Default::default()
        },
        pb::ListContextsRequest {
            page_size: 1,
            ..Default::default()
        },
    ] {
        let (listed, _) = list_all(&mut b, request).await;
        assert_eq!(names(&listed), ["other"]);
    }
    let (listed, _) = list_all(
        &mut b,
        pb::ListContextsRequest {
            project: "a".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(names(&listed), Vec::<&str>::new(), "another project's name");

    // An admin key sees every project's, and filters by one.
    let mut admin = keyed_contexts(&app.channel(), &admin_key);
    let (all, _) = list_all(&mut admin, pb::ListContextsRequest::default()).await;
    let ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [mine.id.as_str(), theirs.id.as_str()], "by project");
    let (paged, _) = list_all(
        &mut admin,
        pb::ListContextsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(paged, all, "pages cross projects");
    let (only_b, _) = list_all(
        &mut admin,
        pb::ListContextsRequest {
            project: "b".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(names(&only_b), ["other"]);
    assert_eq!(
        get_context(&mut admin, &mine.id)
            .await
            .expect("admin reads"),
        mine
    );
    app.stop().await;
}

async fn one_persisting_session_per_context_and_any_number_of_readers(backend: Backend) {
    let Projects {
        app,
        mut a,
        mut sessions_a,
        ..
    } = two_projects(backend).await;
    let context = create_context(&mut a, "login", &[]).await;
    let writer = create_session(&mut sessions_a, with_context(&context.id, true))
        .await
        .expect("the first persisting session");
    assert_eq!(status_of(&writer), pb::SessionStatus::Live);
    assert_eq!(
        writer.context,
        Some(pb::SessionContext {
            context_id: context.id.clone(),
            persist: true,
        })
    );
    let held = get_context(&mut a, &context.id).await.expect("GetContext");
    assert_eq!(held.writer_session_id, writer.id);

    let (code, message) =
        code_and_message(create_session(&mut sessions_a, with_context(&context.id, true)).await);
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(
        message.contains(&writer.id),
        "names the holder {}: {message}",
        writer.id
    );

    // Readers start beside the writer, and beside each other.
    let mut readers = Vec::new();
    for _ in 0..2 {
        let reader = create_session(&mut sessions_a, with_context(&context.id, false))
            .await
            .expect("a read-only session");
        assert_eq!(reader.context.as_ref().map(|c| c.persist), Some(false));
        readers.push(reader);
    }
    for reader in &readers {
        let shown = get_on_keyed(&mut sessions_a, &reader.id).await;
        assert_eq!(status_of(&shown), pb::SessionStatus::Live, "{}", reader.id);
    }
    assert_eq!(
        get_context(&mut a, &context.id)
            .await
            .expect("GetContext")
            .writer_session_id,
        writer.id,
        "readers take no lease"
    );

    let (code, message) = code_and_message(delete_context(&mut a, &context.id).await);
    assert_eq!(code, Code::FailedPrecondition, "{message}");

    let ended = release(&mut sessions_a, &writer.id).await;
    assert_eq!(status_of(&ended), pb::SessionStatus::Released);
    let freed = get_context(&mut a, &context.id).await.expect("GetContext");
    assert_eq!(
        freed.writer_session_id, "",
        "the lease died with the writer"
    );
    // Once saves land, the release saved (version 1); either way the
    // context is there to start from.
    assert!(freed.version <= 1, "{freed:?}");

    let (code, message) = code_and_message(delete_context(&mut a, &context.id).await);
    assert_eq!(code, Code::FailedPrecondition, "readers still use it");
    let busy_with = readers.iter().any(|r| message.contains(&r.id));
    assert!(busy_with, "names a reader: {message}");

    let next = create_session(&mut sessions_a, with_context(&context.id, true))
        .await
        .expect("a new writer once the first is gone");
    assert_eq!(status_of(&next), pb::SessionStatus::Live);
    assert_eq!(
        get_context(&mut a, &context.id)
            .await
            .expect("GetContext")
            .writer_session_id,
        next.id
    );

    for session in readers.iter().chain([&next]) {
        release(&mut sessions_a, &session.id).await;
    }
    delete_context(&mut a, &context.id)
        .await
        .expect("deleted once no session uses it");
    let (code, _) =
        code_and_message(create_session(&mut sessions_a, with_context(&context.id, false)).await);
    assert_eq!(code, Code::NotFound, "a deleted context starts nothing");
    app.stop().await;
}

async fn get_on_keyed(client: &mut KeyedClient, id: &str) -> pb::Session {
    client
        .get_session(pb::GetSessionRequest {
            session_id: id.into(),
        })
        .await
        .expect("GetSession")
        .into_inner()
        .session
        .expect("session in response")
}

/// Two nodes on one database: the lease is the database's, not a lock of
/// one process.
async fn racing_persisting_creates_on_two_nodes_admit_exactly_one(backend: Backend) {
    let Projects {
        app, mut a, key_a, ..
    } = two_projects(backend).await;
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other = second_node(&app, other_dir.path()).await;
    let context = create_context(&mut a, "login", &[]).await;

    let nodes = [app.channel(), other.channel.clone()];
    let racers = (0..4).map(|i| {
        let mut client = keyed(&nodes[i % 2], &key_a);
        let request = with_context(&context.id, true);
        tokio::spawn(async move { (i % 2, create_session(&mut client, request).await) })
    });
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for racer in racers.collect::<Vec<_>>() {
        match racer.await.expect("racer") {
            (node, Ok(session)) => admitted.push((node, session)),
            (_, Err(status)) => refused.push(status),
        }
    }
    assert_eq!(admitted.len(), 1, "one writer; refused: {refused:?}");
    let (node, winner) = &admitted[0];
    assert_eq!(status_of(winner), pb::SessionStatus::Live);
    assert_eq!(refused.len(), 3);
    for status in &refused {
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(
            status.message().contains(&winner.id),
            "names the winner {}: {}",
            winner.id,
            status.message()
        );
    }
    assert_eq!(
        get_context(&mut a, &context.id)
            .await
            .expect("GetContext")
            .writer_session_id,
        winner.id
    );
    let mut sessions = keyed(&app.channel(), &key_a);
    let all = sessions
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("ListSessions")
        .into_inner()
        .sessions;
    assert_eq!(all.len(), 1, "refused creates store nothing: {all:?}");
    release(&mut keyed(&nodes[*node], &key_a), &winner.id).await;
    other.stop().await;
    app.stop().await;
}

/// A second node on the database of `app`.
async fn second_node(app: &TestApp, dir: &std::path::Path) -> browserd::harness::Server {
    let mut config = browserd::harness::config(dir, Some(app.database_url().to_owned()));
    config.node_id = Some("other-node".into());
    browserd::harness::Server::start(config).await
}

/// Either the delete wins (every start is NOT_FOUND) or a start does (the
/// delete is FAILED_PRECONDITION and the context stays): never a LIVE
/// session whose context is gone. Starts and the delete go to different
/// nodes, so no lock of one process can be what keeps them apart.
async fn a_delete_racing_session_starts_never_leaves_a_session_without_its_context(
    backend: Backend,
) {
    let Projects {
        app, mut a, key_a, ..
    } = two_projects(backend).await;
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other = second_node(&app, other_dir.path()).await;
    for round in 0..4 {
        let context = create_context(&mut a, &format!("round-{round}"), &[]).await;
        let starts: Vec<_> = (0..2)
            .map(|_| {
                let mut client = keyed(&other.channel, &key_a);
                let request = with_context(&context.id, false);
                tokio::spawn(async move { create_session(&mut client, request).await })
            })
            .collect();
        let deleted = delete_context(&mut a, &context.id).await;
        let mut started = Vec::new();
        for start in starts {
            match start.await.expect("start") {
                Ok(session) => started.push(session),
                Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
            }
        }
        match deleted {
            Ok(()) => assert!(
                started.is_empty(),
                "round {round}: deleted, yet sessions started from it: {started:?}"
            ),
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert!(!started.is_empty(), "round {round}: refused for no user");
                get_context(&mut a, &context.id)
                    .await
                    .expect("a refused delete keeps the context");
            }
        }
        let mut sessions = keyed(&other.channel, &key_a);
        for session in &started {
            release(&mut sessions, &session.id).await;
        }
    }
    other.stop().await;
    app.stop().await;
}

/// `browserd contexts …` against the real binary, with a session that
/// persists to a context shown by `browserd sessions`.
#[tokio::test]
async fn contexts_cli_against_a_real_server() {
    let data = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(Backend::Sqlite, data.path()).await;
    let served = serve_with(data.path(), &database.url, &[]).await;
    let server = served.addr.clone();

    let created = json(
        &server,
        &["contexts", "create", "login", "--metadata", "site=shop"],
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["name"], "login");
    assert_eq!(created["project"], "default");
    assert_eq!(created["version"], "0", "uint64 as a JSON string");
    assert_eq!(created["metadata"]["site"], "shop");
    assert_eq!(created["writerSessionId"], "");
    json(&server, &["contexts", "create", "other"]).await;
    json(
        &server,
        &["contexts", "create", "third", "--metadata", "site=shop"],
    )
    .await;

    let shop = ok(&server, &["contexts", "list", "--metadata", "site=shop"]).await;
    let header = shop.lines().next().unwrap_or_default();
    for column in [
        "ID", "NAME", "PROJECT", "VERSION", "SIZE", "UPDATED", "WRITER",
    ] {
        assert!(header.contains(column), "{column} in {header}");
    }
    assert!(shop.contains(&id) && shop.contains("third"), "{shop}");
    assert!(!shop.contains("other"), "filtered: {shop}");
    let every = json(&server, &["contexts", "list", "--page-size", "1"]).await;
    let listed: Vec<&str> = every["contexts"]
        .as_array()
        .expect("contexts")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(listed, ["login", "other", "third"], "every page");

    let session = json(
        &server,
        &["sessions", "create", "--context", &id, "--persist"],
    )
    .await;
    let session_id = session["id"].as_str().expect("session id").to_owned();
    assert_eq!(session["context"]["contextId"], id.as_str());
    assert_eq!(session["context"]["persist"], true);
    let shown = ok(&server, &["sessions", "get", &session_id]).await;
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("context") && l.contains(&id) && l.contains("persist")),
        "{shown}"
    );
    let context = ok(&server, &["contexts", "get", &id]).await;
    for expected in ["login", "site=shop", "default", session_id.as_str()] {
        assert!(context.contains(expected), "{expected:?} in:\n{context}");
    }

    let busy = cli(&server, &["contexts", "delete", &id]).await;
    assert!(!busy.status.success());
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(
        stderr.contains("FailedPrecondition") && stderr.contains(&session_id),
        "{stderr}"
    );
    ok(&server, &["sessions", "release", &session_id]).await;
    let deleted = ok(&server, &["contexts", "delete", &id]).await;
    assert!(deleted.contains(&id), "{deleted}");
    let gone = cli(&server, &["contexts", "get", &id]).await;
    assert!(!gone.status.success());
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert!(stderr.contains("NotFound"), "{stderr}");
    let bad = cli(&server, &["contexts", "create", ""]).await;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("InvalidArgument") && stderr.contains("name"),
        "{stderr}"
    );
    served.stop().await;
    database.remove().await;
}

async fn cli(server: &str, args: &[&str]) -> std::process::Output {
    browserd()
        .args(args)
        .args(["--server", server])
        .output()
        .await
        .expect("run browserd")
}

/// Runs a command that must succeed and returns its stdout.
async fn ok(server: &str, args: &[&str]) -> String {
    let output = cli(server, args).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?} failed: {stderr}");
    String::from_utf8(output.stdout).expect("utf-8 output")
}

async fn json(server: &str, args: &[&str]) -> Value {
    let out = ok(server, &[args, &["--json"]].concat()).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}
