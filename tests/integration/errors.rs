//! Every refused request gets the right code, names its field, and writes
//! nothing.

use browserd::pb;
use tonic::Code;

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
        let (code, message) = code_and_message(app.client.create_session(request.clone()).await);
        assert_eq!(code, Code::InvalidArgument, "{request:?}: {message}");
        assert!(
            message.starts_with(field),
            "{field} must be named: {message}"
        );
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
        code_and_message(
            c.get_session(pb::GetSessionRequest {
                session_id: id("nope"),
            })
            .await,
        ),
        code_and_message(
            c.release_session(pb::ReleaseSessionRequest {
                session_id: id("nope"),
            })
            .await,
        ),
        code_and_message(
            c.get_live_details(pb::GetLiveDetailsRequest { session_id: id("") })
                .await,
        ),
    ];
    for (code, message) in malformed {
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.starts_with("session_id"), "{message}");
    }
    let (code, message) = code_and_message(
        c.extend_session(pb::ExtendSessionRequest {
            session_id: id(&unknown),
            timeout: None,
        })
        .await,
    );
    assert_eq!(
        (code, message.starts_with("timeout")),
        (Code::InvalidArgument, true),
        "{message}"
    );

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
        let (code, message) = code_and_message(c.list_sessions(request).await);
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.starts_with(field), "{field}: {message}");
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
    ];
    for (request, field) in watch_cases {
        let (code, message) = code_and_message(c.watch_sessions(request).await);
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.starts_with(field), "{field}: {message}");
    }
    let (code, message) = code_and_message(
        c.release_all_sessions(pb::ReleaseAllSessionsRequest {
            metadata: [("".into(), "v".into())].into(),
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");

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

on_both_backends!(bad_requests_name_the_field_and_write_nothing);
