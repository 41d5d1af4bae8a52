//! The `browserd` binary as users run it: flags, logs, signals, exit codes,
//! and what a `kill -9` leaves for the next start to clean up.

use std::path::Path;
use std::process::Stdio;

use browserd::harness::ChildServer;
use browserd::pb;
use tokio::process::Command;

use crate::on_both_backends;
use crate::support::*;

pub fn browserd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_browserd"));
    command
        .env_remove("BROWSERD_DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn serve(data_dir: &Path, database_url: &str) -> ChildServer {
    serve_with(data_dir, database_url, &[]).await
}

/// `browserd serve` on ephemeral ports, with `data_dir`.
pub fn serve_command(data_dir: &Path) -> Command {
    let mut command = browserd();
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cdp-listen",
            "127.0.0.1:0",
            "--egress-allow",
            &browserd::harness::PAGE_HOST.to_string(),
        ])
        .env("BROWSERD_DATA_DIR", data_dir);
    command
}

/// Starts the binary on ephemeral ports with extra environment, once it
/// has logged its bound address.
pub async fn serve_with(data_dir: &Path, database_url: &str, env: &[(&str, &str)]) -> ChildServer {
    let mut command = serve_command(data_dir);
    command
        .args(["--node-id", "binary-test", "--warm-pool", "0"])
        .env("BROWSERD_DATABASE_URL", database_url)
        .envs(env.iter().copied());
    ChildServer::spawn(command).await
}

async fn sigterm_releases_everything_and_exits_zero(backend: Backend) {
    let data = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data.path()).await;
    let mut served = serve(data.path(), &database.url).await;
    let session = create_on(&mut served.client, pb::CreateSessionRequest::default()).await;
    assert_eq!(status_of(&session), pb::SessionStatus::Live);
    let profiles = data.path().join("profiles");
    assert!(!browser_processes(&profiles).is_empty());

    served.signal(libc::SIGTERM);
    let status = served.exit_status().await;
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(browser_processes(&profiles), Vec::<i32>::new());
    assert_eq!(entries(&profiles), Vec::<String>::new());

    let mut served = serve(data.path(), &database.url).await;
    let stored = get_on(&mut served.client, &session.id).await;
    assert_eq!(reason_of(&stored), pb::EndReason::Shutdown);
    served.signal(libc::SIGTERM);
    assert!(served.exit_status().await.success());
    database.remove().await;
}

async fn kill_9_then_restart_reconciles(backend: Backend) {
    let data = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data.path()).await;
    let profiles = data.path().join("profiles");
    let mut served = serve(data.path(), &database.url).await;
    let session = create_on(&mut served.client, pb::CreateSessionRequest::default()).await;
    assert!(!browser_processes(&profiles).is_empty());

    served.signal(libc::SIGKILL);
    served.exit_status().await;
    // Orphan prevention: the browsers die with browserd.
    eventually("browsers die with browserd", async || {
        browser_processes(&profiles).is_empty()
    })
    .await;

    // As if the parent-death signal had failed: a real browser still runs
    // on the session's profile...
    let profile = profiles.join(&session.id);
    let tmp = browserd::browser::temp_dir(&profile);
    std::fs::create_dir_all(&tmp).expect("the browser's TMPDIR");
    let mut survivor = std::process::Command::new("/usr/bin/chromium")
        .env("TMPDIR", &tmp)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a leftover browser");
    // ...and the pid recorded on the row now belongs to an unrelated process.
    let mut unrelated = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("start an unrelated process");
    database
        .execute(&format!(
            "UPDATE sessions SET browser_pid = {} WHERE id = '{}'",
            unrelated.id(),
            session.id
        ))
        .await;

    let mut served = serve(data.path(), &database.url).await;
    let stored = get_on(&mut served.client, &session.id).await;
    assert_eq!(status_of(&stored), pb::SessionStatus::Failed);
    assert_eq!(reason_of(&stored), pb::EndReason::NodeLost);
    let mut events = served
        .client
        .watch_sessions(pb::WatchSessionsRequest {
            session_ids: vec![session.id.clone()],
            after_sequence: Some(0),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let mut statuses = Vec::new();
    while statuses.len() < 3 {
        let event = events
            .message()
            .await
            .expect("stream")
            .expect("event")
            .event
            .expect("event");
        statuses.push((event.to_status, event.end_reason));
    }
    assert_eq!(
        statuses,
        vec![
            (pb::SessionStatus::Pending as i32, 0),
            (pb::SessionStatus::Live as i32, 0),
            (
                pb::SessionStatus::Failed as i32,
                pb::EndReason::NodeLost as i32
            ),
        ]
    );

    let killed = tokio::task::spawn_blocking(move || survivor.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(!killed.success(), "the leftover browser was killed");
    assert_eq!(
        unrelated.try_wait().expect("try_wait"),
        None,
        "an unrelated process must never be killed"
    );
    unrelated.kill().expect("stop the unrelated process");
    let _ = unrelated.wait();
    assert_eq!(entries(&profiles), Vec::<String>::new());
    assert!(!tmp.exists(), "the browser's TMPDIR is removed with it");

    served.signal(libc::SIGTERM);
    assert!(served.exit_status().await.success());
    database.remove().await;
}

on_both_backends!(
    sigterm_releases_everything_and_exits_zero,
    kill_9_then_restart_reconciles
);

#[tokio::test]
async fn a_bad_chrome_path_is_one_clear_sentence() {
    let data = tempfile::tempdir().expect("temp dir");
    let output = serve_command(data.path())
        .args(["--chrome-path", "/nonexistent/chrome"])
        .output()
        .await
        .expect("run browserd");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--chrome-path /nonexistent/chrome"),
        "{stderr}"
    );
}

/// A second node on a running node's SQLite file, or on its data
/// directory (whatever the database), is refused at start, naming the
/// holder; the first node carries on. (Several nodes share PostgreSQL,
/// each with a data directory of its own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_one_data_dir_or_sqlite_file_is_refused() {
    let mut first = spawn_app(Backend::Sqlite).await;
    // Answered only once `run` is past its start, locks taken: the
    // listener answers connects before that.
    let session = first.create(Default::default()).await;
    let other_dir = tempfile::tempdir().expect("temp dir");
    let same_file =
        browserd::harness::config(other_dir.path(), Some(first.database_url().to_owned()));
    let refused = start_and_stop(same_file)
        .await
        .expect_err("a second node on one SQLite file")
        .to_string();
    let pid = std::process::id().to_string();
    assert!(
        refused.contains("SQLite database") && refused.contains(&pid),
        "{refused}"
    );
    let postgres = TestDatabase::new(Backend::Postgres, other_dir.path()).await;
    let same_dir = browserd::harness::config(first.data_dir.path(), Some(postgres.url.clone()));
    let refused = start_and_stop(same_dir)
        .await
        .expect_err("a second node on one data directory")
        .to_string();
    assert!(refused.contains("data directory"), "{refused}");
    let session = first.get(&session.id).await;
    assert_eq!(
        status_of(&session),
        pb::SessionStatus::Live,
        "the first node carries on"
    );
    postgres.remove().await;
    first.stop().await;
}
