//! The `browserd` binary as users run it: flags, logs, signals, exit codes.

use std::process::Stdio;

use browserd::pb;
use browserd::pb::session_service_client::SessionServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::*;

fn browserd() -> Command {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_its_port_and_exits_cleanly_on_sigterm() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = browserd()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cdp-listen",
            "127.0.0.1:0",
        ])
        .env("BROWSERD_DATA_DIR", data.path())
        .spawn()
        .expect("start browserd");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = tokio::time::timeout(EVENT_WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read log") {
            if line.contains("browserd listening") {
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("grpc="))
                    .expect("grpc= in the listening line");
                return addr.to_owned();
            }
        }
        panic!("browserd exited before listening");
    })
    .await
    .expect("browserd logs its bound address");
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let mut client = SessionServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let session = client
        .create_session(pb::CreateSessionRequest::default())
        .await
        .expect("create")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(status_of(&session), pb::SessionStatus::Live);
    let profiles = data.path().join("profiles");
    assert!(!browser_processes(&profiles).is_empty());

    let pid = child.id().expect("pid") as i32;
    // SAFETY: signalling the child this test spawned.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(EVENT_WAIT, child.wait())
        .await
        .expect("browserd exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(browser_processes(&profiles), Vec::<i32>::new());
    assert_eq!(entries(&profiles), Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_browser_is_one_clear_sentence() {
    let data = tempfile::tempdir().expect("temp dir");
    let output = browserd()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cdp-listen",
            "127.0.0.1:0",
        ])
        .args(["--chrome-path", "/nonexistent/chrome"])
        .env("BROWSERD_DATA_DIR", data.path())
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
