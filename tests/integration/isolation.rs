//! What a session's browser can see of browserd: not its environment, and
//! not its data directory or database, which only browserd's user reads.

use std::os::unix::fs::PermissionsExt;

use browserd::browser::process_table;
use browserd::pb;

use crate::on_both_backends;
use crate::support::*;

/// Secrets in browserd's environment, as an operator would set them.
const SECRETS: [(&str, &str); 3] = [
    (
        "BROWSERD_DATABASE_URL",
        "postgres://browserd:s3cret@db/browserd",
    ),
    ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer s3cret"),
    ("BROWSERD_ISOLATION_PROBE", "s3cret"),
];

async fn browsers_start_with_a_clean_environment(backend: Backend) {
    // browserd's own home: a browser that used it kept its disk cache
    // there, shared by every session and outliving them all.
    let home = tempfile::tempdir().expect("a home");
    for (name, value) in SECRETS {
        // SAFETY: nextest runs this test in a process of its own, and no
        // other thread reads the environment while the server starts.
        unsafe { std::env::set_var(name, value) };
    }
    // SAFETY: as above.
    unsafe { std::env::set_var("HOME", home.path()) };
    let mut app = spawn_app(backend).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let page = serve_page("cached?").await;
    let client = cdp_client(&session.connect_url).await;
    client
        .create_target(&format!("http://{page}/"), None, EVENT_WAIT)
        .await
        .expect("a page");
    let profile = app.profiles_dir().join(&session.id);
    let main = browser_main_pid(&app.profiles_dir(), &session.id);
    let processes = process_table::mentioning(&profile);
    assert!(processes.contains(&main), "the session's browser runs");
    for pid in processes {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue; // exited meanwhile
        };
        let environ = String::from_utf8_lossy(&environ);
        assert!(
            !environ.contains("s3cret") && !environ.contains("BROWSERD_"),
            "process {pid} of the browser inherited browserd's environment: {environ:?}"
        );
        // Helpers write their titles over their environment's memory; the
        // browser itself shows what it was given.
        if pid == main {
            assert!(
                environ.contains(&format!("HOME={}", profile.display())),
                "{environ:?}"
            );
        }
    }
    assert_eq!(
        entries(home.path()),
        Vec::<String>::new(),
        "the browser wrote into browserd's home"
    );
    app.release(&session.id).await;
    app.stop().await;
}

async fn the_data_directory_is_private(backend: Backend) {
    // A data dir browserd creates itself (the test's temp dir is 0700
    // already); the SQLite database stays in the temp dir, made by sqlx.
    let mut app = spawn_app_with(backend, |c| c.data_dir = c.data_dir.join("data")).await;
    let data_dir = app.data_dir.path().join("data");
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&app.profiles_dir()), 0o700);
    if backend == Backend::Sqlite {
        let db = app.data_dir.path().join("browserd.db");
        assert_eq!(mode(&db), 0o600, "the database file");
        for suffix in ["-wal", "-shm"] {
            let file = app.data_dir.path().join(format!("browserd.db{suffix}"));
            if file.exists() {
                assert_eq!(mode(&file), 0o600, "{}", file.display());
            }
        }
    }
    app.release(&session.id).await;
    app.stop().await;
}

/// Credentials for a SOCKS proxy: browserd's hop speaks only HTTP to the
/// upstream proxy, and Chromium ignores credentials in `--proxy-server`,
/// so they are refused, and never quoted back. (HTTP proxies with
/// credentials work: see `secrets.rs`.)
async fn socks_proxy_credentials_are_refused_and_never_echoed(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let refused = app
        .client
        .create_session(pb::CreateSessionRequest {
            proxy_url: "socks5://alice:s3cret@127.0.0.1:1080".into(),
            ..Default::default()
        })
        .await
        .expect_err("credentials in proxy_url");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().starts_with("proxy_url"), "{refused:?}");
    assert!(!format!("{refused:?}").contains("s3cret"), "{refused:?}");
    assert!(
        app.list(pb::ListSessionsRequest::default())
            .await
            .is_empty()
    );
    assert_eq!(app.newest_sequence().await, 0, "nothing was written");
    assert_eq!(browser_processes(&app.profiles_dir()), Vec::<i32>::new());
    app.stop().await;
}

on_both_backends!(
    browsers_start_with_a_clean_environment,
    the_data_directory_is_private,
    socks_proxy_credentials_are_refused_and_never_echoed,
);
