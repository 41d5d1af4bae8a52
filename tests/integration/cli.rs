//! `browserd sessions …` against a real server, as an operator or a script
//! runs it: tables for people, JSON for scripts, gRPC errors on stderr.

use std::process::{Output, Stdio};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::binary::{browserd, serve_with};
use crate::support::*;

async fn cli(server: &str, args: &[&str]) -> Output {
    browserd()
        .args(["sessions", "--server", server])
        .args(args)
        .output()
        .await
        .expect("run browserd sessions")
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

#[tokio::test]
async fn every_command_against_a_real_server() {
    let data = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(Backend::Sqlite, data.path()).await;
    let mut served = serve_with(data.path(), &database.url, &[]).await;
    let server = served.addr.clone();

    let mut watch = browserd()
        .args([
            "sessions",
            "--server",
            &server,
            "watch",
            "--after-sequence",
            "0",
        ])
        .args(["--json", "--metadata", "team=cli"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start watch");
    let mut watched = BufReader::new(watch.stdout.take().expect("stdout")).lines();

    let created = json(
        &server,
        &["create", "--metadata", "team=cli", "--timeout", "10m"],
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["status"], "SESSION_STATUS_LIVE");
    assert_eq!(created["timeout"], "600s");
    assert_eq!(created["metadata"]["team"], "cli");
    assert!(
        created["connectUrl"]
            .as_str()
            .is_some_and(|url| url.starts_with("ws://") && url.contains(&id)),
        "{created}"
    );

    let shown = ok(&server, &["get", &id]).await;
    for expected in [id.as_str(), "LIVE", "team=cli", "10m", "ws://"] {
        assert!(shown.contains(expected), "{expected:?} in:\n{shown}");
    }
    let live = ok(&server, &["list", "--status", "live"]).await;
    assert!(live.starts_with("ID"), "a header row:\n{live}");
    assert!(live.contains(&id), "{live}");
    let released = ok(&server, &["list", "--status", "released"]).await;
    assert!(!released.contains(&id), "{released}");

    let extended = json(&server, &["extend", &id, "--timeout", "20m"]).await;
    assert_eq!(extended["timeout"], "1200s");
    let details = json(&server, &["live", &id]).await;
    assert!(details["pages"].is_array(), "{details}");
    // The token lasts until the session's expiry as read, so an extended
    // session hands out a new one.
    assert_eq!(details["connectUrl"], extended["connectUrl"]);
    assert_ne!(details["connectUrl"], created["connectUrl"]);

    let ended = ok(&server, &["release", &id]).await;
    assert!(
        ended.contains("RELEASED") && ended.contains("REQUESTED"),
        "{ended}"
    );
    let none = json(&server, &["release-all", "--metadata", "team=cli"]).await;
    assert_eq!(none["releasedIds"], Value::Array(vec![]));

    // The watcher saw the whole life, in order, as one JSON line per event.
    let mut seen = Vec::new();
    while seen
        .last()
        .map(|(status, _): &(String, String)| status.as_str())
        != Some("SESSION_STATUS_RELEASED")
    {
        let line = tokio::time::timeout(EVENT_WAIT, watched.next_line())
            .await
            .expect("an event line")
            .expect("read")
            .expect("watch still running");
        let event: Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(event["sessionId"], id.as_str());
        let field = |name: &str| event[name].as_str().expect(name).to_owned();
        seen.push((field("toStatus"), field("kind")));
    }
    let seen: Vec<(&str, &str)> = seen
        .iter()
        .map(|(status, kind)| (status.as_str(), kind.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("SESSION_STATUS_PENDING", "EVENT_KIND_STATUS_CHANGED"),
            ("SESSION_STATUS_LIVE", "EVENT_KIND_STATUS_CHANGED"),
            ("SESSION_STATUS_LIVE", "EVENT_KIND_EXTENDED"),
            ("SESSION_STATUS_RELEASED", "EVENT_KIND_STATUS_CHANGED"),
        ]
    );
    watch.kill().await.expect("stop watch");

    served.signal(libc::SIGTERM);
    assert!(served.exit_status().await.success());
    database.remove().await;
}

#[tokio::test]
async fn errors_name_the_code_and_the_field() {
    let data = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(Backend::Sqlite, data.path()).await;
    let mut served = serve_with(data.path(), &database.url, &[]).await;

    let bad = cli(&served.addr, &["get", "not-a-uuid"]).await;
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("session_id"),
        "{stderr}"
    );
    assert!(bad.stdout.is_empty());

    let missing = cli(
        &served.addr,
        &["release", &uuid::Uuid::new_v4().to_string()],
    )
    .await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));

    served.signal(libc::SIGTERM);
    assert!(served.exit_status().await.success());
    database.remove().await;

    // Nothing listens there any more.
    let down = cli(&served.addr, &["list"]).await;
    assert!(!down.status.success());
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains("cannot reach browserd at"), "{stderr}");
}
