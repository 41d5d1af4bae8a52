//! Every refused request gets the right code, names its field, and writes
//! nothing.

use browserd::pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::on_both_backends;
use crate::support::*;

async fn bad_requests_name_the_field_and_write_nothing(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| {
        c.max_timeout = std::time::Duration::from_secs(3600)
    })
    .await;
    let base = pb::CreateSessionRequest::default;
    let many: std::collections::HashMap<String, String> =
        (0..17).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let cases: Vec<(pb::CreateSessionRequest, &str)> = vec![
        (
            pb::CreateSessionRequest {
                timeout: seconds(0),
                ..base()
            },
            "timeout",
        ),
        (
            pb::CreateSessionRequest {
                timeout: seconds(-5),
                ..base()
            },
            "timeout",
        ),
        (
            pb::CreateSessionRequest {
                timeout: seconds(7200),
                ..base()
            },
            "timeout",
        ),
        (
            pb::CreateSessionRequest {
                inactivity_timeout: seconds(0),
                ..base()
            },
            "inactivity_timeout",
        ),
        (
            pb::CreateSessionRequest {
                inactivity_timeout: seconds(-1),
                ..base()
            },
            "inactivity_timeout",
        ),
        (
            pb::CreateSessionRequest {
                // Narrower than any headless Chromium window.
                viewport: Some(pb::Viewport {
                    width: 375,
                    height: 600,
                }),
                ..base()
            },
            "viewport.width",
        ),
        (
            pb::CreateSessionRequest {
                viewport: Some(pb::Viewport {
                    width: 800,
                    height: 99_999,
                }),
                ..base()
            },
            "viewport.height",
        ),
        (
            pb::CreateSessionRequest {
                metadata: many,
                ..base()
            },
            "metadata",
        ),
        (
            pb::CreateSessionRequest {
                metadata: [(String::new(), "v".into())].into(),
                ..base()
            },
            "metadata",
        ),
        (
            pb::CreateSessionRequest {
                metadata: [("k".into(), "v".repeat(300))].into(),
                ..base()
            },
            "metadata[k]",
        ),
        (
            pb::CreateSessionRequest {
                user_agent: "bot\nInjected: 1".into(),
                ..base()
            },
            "user_agent",
        ),
        (
            pb::CreateSessionRequest {
                user_agent: "a".repeat(600),
                ..base()
            },
            "user_agent",
        ),
        (
            pb::CreateSessionRequest {
                proxy_url: "ftp://proxy:21".into(),
                ..base()
            },
            "proxy_url",
        ),
        (
            pb::CreateSessionRequest {
                proxy_url: "http://proxy".into(),
                ..base()
            },
            "proxy_url",
        ),
        (
            pb::CreateSessionRequest {
                idempotency_key: "k".repeat(200),
                ..base()
            },
            "idempotency_key",
        ),
    ];
    for (request, field) in cases {
        let refused = refusal(app.client.create_session(request.clone()).await);
        assert_invalid_argument(&refused, field);
    }

    let unknown = uuid::Uuid::new_v4().to_string();
    let c = &mut app.client;
    let id = |s: &str| s.to_owned();
    let not_found = [
        code_and_message(
            c.get_session(pb::GetSessionRequest {
                session_id: id(&unknown),
            })
            .await,
        ),
        code_and_message(
            c.release_session(pb::ReleaseSessionRequest {
                session_id: id(&unknown),
            })
            .await,
        ),
        code_and_message(
            c.extend_session(pb::ExtendSessionRequest {
                session_id: id(&unknown),
                timeout: seconds(60),
            })
            .await,
        ),
        code_and_message(
            c.get_live_details(pb::GetLiveDetailsRequest {
                session_id: id(&unknown),
            })
            .await,
        ),
    ];
    for (code, message) in not_found {
        assert_eq!(code, Code::NotFound, "{message}");
        assert!(message.contains(&unknown), "{message}");
    }
    let malformed = [
        refusal(
            c.get_session(pb::GetSessionRequest {
                session_id: id("nope"),
            })
            .await,
        ),
        refusal(
            c.release_session(pb::ReleaseSessionRequest {
                session_id: id("nope"),
            })
            .await,
        ),
        refusal(
            c.get_live_details(pb::GetLiveDetailsRequest { session_id: id("") })
                .await,
        ),
    ];
    for refused in malformed {
        assert_invalid_argument(&refused, "session_id");
    }
    let refused = refusal(
        c.extend_session(pb::ExtendSessionRequest {
            session_id: id(&unknown),
            timeout: None,
        })
        .await,
    );
    assert_invalid_argument(&refused, "timeout");

    let list_cases = [
        (
            pb::ListSessionsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListSessionsRequest {
                statuses: vec![0],
                ..Default::default()
            },
            "statuses",
        ),
        (
            pb::ListSessionsRequest {
                statuses: vec![99],
                ..Default::default()
            },
            "statuses",
        ),
        (
            pb::ListSessionsRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
    ];
    for (request, field) in list_cases {
        assert_invalid_argument(&refusal(c.list_sessions(request).await), field);
    }
    let watch_cases = [
        (
            pb::WatchSessionsRequest {
                statuses: vec![0],
                ..Default::default()
            },
            "statuses",
        ),
        (
            pb::WatchSessionsRequest {
                session_ids: vec!["x".into()],
                ..Default::default()
            },
            "session_id",
        ),
        (
            pb::WatchSessionsRequest {
                kinds: vec![0],
                ..Default::default()
            },
            "kinds",
        ),
        (
            pb::WatchSessionsRequest {
                kinds: vec![99],
                ..Default::default()
            },
            "kinds",
        ),
    ];
    for (request, field) in watch_cases {
        assert_invalid_argument(&refusal(c.watch_sessions(request).await), field);
    }
    let refused = refusal(
        c.release_all_sessions(pb::ReleaseAllSessionsRequest {
            metadata: [("".into(), "v".into())].into(),
            project: String::new(),
        })
        .await,
    );
    assert_invalid_argument(&refused, "metadata");

    let listed = app.list(pb::ListSessionsRequest::default()).await;
    assert!(
        listed.is_empty(),
        "refused requests wrote sessions: {listed:?}"
    );
    assert_eq!(
        app.newest_sequence().await,
        0,
        "refused requests wrote events"
    );
    assert_eq!(entries(&app.profiles_dir()), Vec::<String>::new());
    app.stop().await;
}

/// NOT_FOUND carries `google.rpc.ResourceInfo` naming the session.
async fn unknown_sessions_are_named_in_resource_info(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let c = &mut app.client;
    let session_id = unknown.clone();
    let refusals = [
        refusal(
            c.get_session(pb::GetSessionRequest {
                session_id: session_id.clone(),
            })
            .await,
        ),
        refusal(
            c.release_session(pb::ReleaseSessionRequest {
                session_id: session_id.clone(),
            })
            .await,
        ),
        refusal(
            c.extend_session(pb::ExtendSessionRequest {
                session_id: session_id.clone(),
                timeout: seconds(60),
            })
            .await,
        ),
        refusal(
            c.get_live_details(pb::GetLiveDetailsRequest { session_id })
                .await,
        ),
    ];
    for refused in refusals {
        assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
        let details = refused.get_error_details();
        let resource = details
            .resource_info()
            .unwrap_or_else(|| panic!("NOT_FOUND without ResourceInfo: {refused:?}"));
        assert_eq!(resource.resource_type, "browserd.v1.Session");
        assert_eq!(resource.resource_name, unknown);
    }
    app.stop().await;
}

/// RESOURCE_EXHAUSTED says when to retry and which limit was hit.
async fn a_full_node_says_when_to_retry(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| c.max_sessions = 1).await;
    let first = app.create(pb::CreateSessionRequest::default()).await;
    let refused = refusal(
        app.client
            .create_session(pb::CreateSessionRequest::default())
            .await,
    );
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let details = refused.get_error_details();
    let delay = details
        .retry_info()
        .and_then(|r| r.retry_delay)
        .unwrap_or_else(|| panic!("RESOURCE_EXHAUSTED without a retry delay: {refused:?}"));
    assert!(!delay.is_zero() && delay <= std::time::Duration::from_secs(60));
    let quota = details
        .quota_failure()
        .unwrap_or_else(|| panic!("RESOURCE_EXHAUSTED without QuotaFailure: {refused:?}"));
    assert!(
        quota
            .violations
            .iter()
            .any(|v| v.subject == "node" && v.description.contains("--max-sessions")),
        "{quota:?}"
    );
    app.release(&first.id).await;
    app.stop().await;
}

/// A 1 MiB session_id is refused with a message short enough for any
/// client to read (the HTTP/2 header limit rejects a huge grpc-message).
async fn a_huge_session_id_gets_a_short_message(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let huge = "a".repeat(1 << 20);
    let c = &mut app.client;
    let refusals = [
        refusal(
            c.get_session(pb::GetSessionRequest {
                session_id: huge.clone(),
            })
            .await,
        ),
        refusal(
            c.release_session(pb::ReleaseSessionRequest {
                session_id: huge.clone(),
            })
            .await,
        ),
        refusal(
            c.watch_sessions(pb::WatchSessionsRequest {
                session_ids: vec![huge.clone()],
                ..Default::default()
            })
            .await,
        ),
    ];
    for refused in refusals {
        assert_invalid_argument(&refused, "session_id");
        assert!(
            refused.message().len() < 200,
            "{} bytes of message",
            refused.message().len()
        );
        let details = refused.get_error_details();
        for v in &details.bad_request().expect("BadRequest").field_violations {
            assert!(v.description.len() < 200, "{} bytes", v.description.len());
        }
    }
    app.stop().await;
}

/// Metadata keys and values, like the other string fields, refuse control
/// and bidi characters (NUL truncates C strings; U+202E reverses what an
/// operator reads), name the field, and write nothing.
async fn control_and_bidi_characters_are_refused(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let base = pb::CreateSessionRequest::default;
    let label = |k: &str, v: &str| [(k.to_owned(), v.to_owned())].into();
    let creates: Vec<(pb::CreateSessionRequest, &str)> = vec![
        (
            pb::CreateSessionRequest {
                metadata: label("team\0admin", "x"),
                ..base()
            },
            "metadata[",
        ),
        (
            pb::CreateSessionRequest {
                metadata: label("team", "x\0admin"),
                ..base()
            },
            "metadata[team]",
        ),
        (
            pb::CreateSessionRequest {
                metadata: label("team\u{202e}", "x"),
                ..base()
            },
            "metadata[",
        ),
        (
            pb::CreateSessionRequest {
                metadata: label("team", "gpj.\u{202e}exe"),
                ..base()
            },
            "metadata[team]",
        ),
        (
            pb::CreateSessionRequest {
                metadata: label("team", "a\nb"),
                ..base()
            },
            "metadata[team]",
        ),
        (
            pb::CreateSessionRequest {
                user_agent: "bot \u{202e}1.0".into(),
                ..base()
            },
            "user_agent",
        ),
        (
            pb::CreateSessionRequest {
                idempotency_key: "key\u{2066}".into(),
                ..base()
            },
            "idempotency_key",
        ),
        (
            pb::CreateSessionRequest {
                proxy_url: "http://proxy\u{202e}:3128".into(),
                ..base()
            },
            "proxy_url",
        ),
    ];
    for (request, field) in creates {
        let refused = refusal(app.client.create_session(request.clone()).await);
        assert_invalid_argument(&refused, field);
        assert!(
            !refused
                .message()
                .contains(['\0', '\u{202e}', '\u{2066}', '\n']),
            "the message echoes the raw character: {:?}",
            refused.message()
        );
    }
    let c = &mut app.client;
    let filter = || label("team\0", "x");
    assert_invalid_argument(
        &refusal(
            c.list_sessions(pb::ListSessionsRequest {
                metadata: filter(),
                ..Default::default()
            })
            .await,
        ),
        "metadata[",
    );
    assert_invalid_argument(
        &refusal(
            c.release_all_sessions(pb::ReleaseAllSessionsRequest {
                metadata: filter(),
                project: String::new(),
            })
            .await,
        ),
        "metadata[",
    );
    assert_invalid_argument(
        &refusal(
            c.watch_sessions(pb::WatchSessionsRequest {
                metadata: filter(),
                ..Default::default()
            })
            .await,
        ),
        "metadata[",
    );
    let listed = app.list(pb::ListSessionsRequest::default()).await;
    assert!(listed.is_empty(), "refused requests wrote: {listed:?}");
    assert_eq!(
        app.newest_sequence().await,
        0,
        "refused requests wrote events"
    );
    assert_eq!(entries(&app.profiles_dir()), Vec::<String>::new());
    app.stop().await;
}

/// The real binary's log: a session_id carrying a newline and a made-up
/// log line stays on one escaped line, and refused requests are not
/// logged at ERROR (they are the client's mistake, not the server's).
async fn untrusted_input_cannot_forge_log_lines(backend: Backend) {
    let data = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data.path()).await;
    let mut command = crate::binary::serve_command(data.path());
    command
        .args(["--node-id", "log-test", "--warm-pool", "0"])
        .env("BROWSERD_DATABASE_URL", &database.url)
        .env("RUST_LOG", "info,browserd=debug");
    let (server, mut logged) = browserd::harness::ChildServer::spawn_logged(command).await;
    let mut client = server.client.clone();
    let forged = "2026-01-01T00:00:00Z INFO FORGED admin";
    let attack = format!("nope\n{forged}");
    let refused = refusal(
        client
            .get_session(pb::GetSessionRequest {
                session_id: attack.clone(),
            })
            .await,
    );
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = refusal(
        client
            .get_session(pb::GetSessionRequest {
                session_id: uuid::Uuid::new_v4().to_string(),
            })
            .await,
    );
    assert_eq!(refused.code(), Code::NotFound);
    server.stop().await;
    let mut log = Vec::new();
    while let Some(line) = logged.recv().await {
        log.push(line);
    }
    let text = log.join("\n");
    assert!(
        !log.iter().any(|line| line.starts_with(forged)),
        "a request forged a log line:\n{text}"
    );
    assert!(
        log.iter()
            .any(|line| line.contains("FORGED admin") && line.contains("nope\\n")),
        "the refused request is logged, escaped, on one line:\n{text}"
    );
    assert!(
        !log.iter().any(|line| line.contains(" ERROR ")),
        "client errors logged at ERROR:\n{text}"
    );
    for code in ["InvalidArgument", "NotFound"] {
        assert!(
            log.iter().any(|line| line.contains(code)),
            "no log line with the code {code}:\n{text}"
        );
    }
    database.remove().await;
}

on_both_backends!(
    bad_requests_name_the_field_and_write_nothing,
    unknown_sessions_are_named_in_resource_info,
    a_full_node_says_when_to_retry,
    a_huge_session_id_gets_a_short_message,
    control_and_bidi_characters_are_refused,
    untrusted_input_cannot_forge_log_lines,
);
