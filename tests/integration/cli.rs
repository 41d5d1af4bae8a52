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
    // With live view links: every page's, and one per page.
    let all = details["liveView"]["url"].as_str().unwrap_or_default();
    assert!(all.contains("/console/live#"), "{details}");
    assert_eq!(details["liveView"]["control"], false);
    let page = &details["pages"][0]["liveView"];
    assert!(
        page["url"]
            .as_str()
            .unwrap_or_default()
            .contains("/console/live#"),
        "{details}"
    );
    let control = ok(&server, &["live", &id, "--control", "--ttl", "1m"]).await;
    assert!(control.contains("every page, control"), "{control}");

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

/// A client of one server, with one API key or none.
struct Client<'a> {
    server: &'a str,
    key: Option<&'a str>,
}

impl Client<'_> {
    /// `browserd <command> --server … [--api-key …] <args…>`.
    async fn run(&self, command: &str, args: &[&str]) -> Output {
        let mut cli = browserd();
        cli.args([command, "--server", self.server]);
        if let Some(key) = self.key {
            cli.args(["--api-key", key]);
        }
        cli.args(args).output().await.expect("run browserd")
    }

    /// Runs a command that must succeed; returns its stdout.
    async fn ok(&self, command: &str, args: &[&str]) -> String {
        let output = self.run(command, args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{command} {args:?} failed: {stderr}"
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    async fn json(&self, command: &str, args: &[&str]) -> Value {
        let out = self.ok(command, &[args, &["--json"]].concat()).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// Runs a command that must fail with exit 1 and print no result;
    /// returns its stderr.
    async fn fails(&self, command: &str, args: &[&str]) -> String {
        let output = self.run(command, args).await;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.code(),
            Some(1),
            "{command} {args:?}: {stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "{command} {args:?} printed a result"
        );
        stderr
    }
}

/// The first admin key, made offline in the database before the server
/// ever starts, as a deployment that listens beyond loopback must.
async fn offline_first_key_then_every_call_needs_it(backend: Backend) {
    let data = tempfile::tempdir().expect("temp dir");
    // Not there yet: `keys create` makes it, private, as `serve` would.
    let state = data.path().join("state");
    let database = TestDatabase::new(backend, &state).await;
    let mut create = browserd();
    create.args(["keys", "create", "--project", "default", "--admin"]);
    match backend {
        // The default SQLite file of the data dir, found as `serve` finds it.
        Backend::Sqlite => create.arg("--data-dir").arg(&state),
        Backend::Postgres => create.env("BROWSERD_DATABASE_URL", &database.url),
    };
    let created = create.output().await.expect("run keys create");
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(created.status.success(), "{stderr}");
    let key = String::from_utf8(created.stdout).expect("utf-8");
    let key = key.strip_suffix('\n').expect("one line");
    assert!(
        key.starts_with("browserd_") && !key.contains(char::is_whitespace),
        "stdout is the key alone: {key:?}"
    );
    assert!(
        stderr.contains("admin: yes") && stderr.contains("shown once"),
        "{stderr}"
    );
    assert!(!stderr.contains(key), "the key goes to stdout only");
    if backend == Backend::Sqlite {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).expect("data dir").permissions();
        assert_eq!(mode.mode() & 0o777, 0o700);
    }

    let mut served = serve_with(&state, &database.url, &[]).await;
    let server = served.addr.as_str();
    let admin = Client {
        server,
        key: Some(key),
    };
    let listed = admin.ok("sessions", &["list"]).await;
    assert!(listed.starts_with("ID"), "{listed}");
    let from_env = browserd()
        .args(["sessions", "--server", server, "list"])
        .env("BROWSERD_API_KEY", key)
        .output()
        .await
        .expect("run sessions list");
    assert!(from_env.status.success(), "BROWSERD_API_KEY is read");

    let anonymous = Client { server, key: None };
    let refused = anonymous.fails("sessions", &["list"]).await;
    assert!(
        refused.contains("Unauthenticated") && refused.contains("--api-key"),
        "the code and a hint: {refused}"
    );
    let garbled = Client {
        server,
        key: Some("browserd_clé"),
    };
    let refused = garbled.fails("sessions", &["list"]).await;
    assert!(
        refused.contains("--api-key") && !refused.contains("clé"),
        "named, never shown: {refused}"
    );

    served.signal(libc::SIGTERM);
    assert!(served.exit_status().await.success());
    database.remove().await;
}

/// Projects and keys through AdminService, and what sessions show of them.
async fn projects_and_keys_through_a_running_server(backend: Backend) {
    let data = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data.path()).await;
    let mut served = serve_with(data.path(), &database.url, &[]).await;
    let server = served.addr.as_str();

    // Open on loopback with no key: the first key is made anonymously,
    // and from then on every call needs one.
    let anonymous = Client { server, key: None };
    let admin_key = anonymous
        .ok("keys", &["create", "--project", "default", "--admin"])
        .await;
    let admin = Client {
        server,
        key: Some(admin_key.trim()),
    };
    let refused = anonymous.fails("projects", &["list"]).await;
    assert!(refused.contains("Unauthenticated"), "{refused}");

    let shown = admin
        .ok("projects", &["create", "team", "--max-sessions", "2"])
        .await;
    assert!(shown.contains("team") && shown.contains('2'), "{shown}");
    let project = admin
        .json("projects", &["update", "team", "--max-sessions", "0"])
        .await;
    assert_eq!(project["maxSessions"], 0, "{project}");
    let listed = admin.ok("projects", &["list"]).await;
    assert!(listed.starts_with("NAME"), "{listed}");
    assert!(
        listed.contains("default") && listed.contains("team"),
        "{listed}"
    );

    let created = admin
        .json(
            "keys",
            &["create", "--project", "team", "--description", "ci runner"],
        )
        .await;
    let team_key = created["key"].as_str().expect("key").to_owned();
    let team_id = created["apiKey"]["id"]
        .as_str()
        .expect("apiKey.id")
        .to_owned();
    assert!(team_key.contains(&team_id), "{created}");
    assert_eq!(created["apiKey"]["project"], "team");
    assert_eq!(created["apiKey"]["admin"], false);
    let team = Client {
        server,
        key: Some(&team_key),
    };

    let keys = admin.ok("keys", &["list"]).await;
    assert!(keys.starts_with("ID"), "{keys}");
    assert!(
        keys.contains(&team_id) && keys.contains("ci runner"),
        "{keys}"
    );
    assert!(!keys.contains(&team_key), "a key is shown once only");
    let team_keys = admin.json("keys", &["list", "--project", "team"]).await;
    assert_eq!(
        team_keys["apiKeys"].as_array().map(Vec::len),
        Some(1),
        "{team_keys}"
    );

    // The nodes, for admins only; a drain shows, and is undone.
    let nodes = admin.ok("nodes", &[]).await;
    assert!(nodes.starts_with("ID"), "{nodes}");
    assert!(
        nodes.contains("binary-test") && nodes.contains("serving"),
        "{nodes}"
    );
    let refused = team.fails("nodes", &["list"]).await;
    assert!(refused.contains("PermissionDenied"), "{refused}");
    let drained = admin.ok("nodes", &["drain", "binary-test"]).await;
    assert!(drained.contains("draining"), "{drained}");
    let undone = admin
        .json("nodes", &["drain", "binary-test", "--undo"])
        .await;
    assert_eq!(undone["nodes"][0]["draining"], false, "{undone}");
    let unknown = admin.fails("nodes", &["drain", "no-such-node"]).await;
    assert!(unknown.contains("NotFound"), "{unknown}");

    // The team's session shows its project, and its events their actor.
    let mut watch = browserd()
        .args([
            "sessions",
            "--server",
            server,
            "--api-key",
            admin_key.trim(),
        ])
        .args([
            "watch",
            "--after-sequence",
            "0",
            "--project",
            "team",
            "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start watch");
    let mut watched = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let session = team.json("sessions", &["create"]).await;
    let id = session["id"].as_str().expect("id").to_owned();
    assert_eq!(session["project"], "team");
    let shown = admin.ok("sessions", &["get", &id]).await;
    assert!(shown.contains("project         team"), "{shown}");
    let listed = admin.ok("sessions", &["list", "--project", "team"]).await;
    assert!(
        listed.contains("PROJECT") && listed.contains(&id),
        "{listed}"
    );
    let others = admin
        .ok("sessions", &["list", "--project", "default"])
        .await;
    assert!(!others.contains(&id), "--project filters: {others}");
    loop {
        let line = tokio::time::timeout(EVENT_WAIT, watched.next_line())
            .await
            .expect("an event line")
            .expect("read")
            .expect("watch still running");
        let event: Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(event["sessionId"], id.as_str(), "only the team's: {event}");
        assert_eq!(event["actor"], format!("key/{team_id}"), "{event}");
        assert_eq!(event["session"]["project"], "team", "{event}");
        if event["toStatus"] == "SESSION_STATUS_LIVE" {
            break;
        }
    }
    watch.kill().await.expect("stop watch");
    let mut table = browserd()
        .args([
            "sessions",
            "--server",
            server,
            "--api-key",
            admin_key.trim(),
        ])
        .args(["watch", "--after-sequence", "0", "--session", &id])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start watch");
    let first = BufReader::new(table.stdout.take().expect("stdout"))
        .lines()
        .next_line()
        .await
        .expect("read")
        .expect("an event line");
    assert!(first.ends_with(&format!("by key/{team_id}")), "{first}");
    table.kill().await.expect("stop watch");

    let released = admin
        .json("sessions", &["release-all", "--project", "team"])
        .await;
    assert_eq!(released["releasedIds"], serde_json::json!([id]));

    let revoked = admin.ok("keys", &["revoke", &team_id]).await;
    assert!(revoked.contains(&team_id), "{revoked}");
    let refused = team.fails("sessions", &["list"]).await;
    assert!(refused.contains("Unauthenticated"), "{refused}");
    assert!(
        !refused.contains(&team_key),
        "the key is never printed: {refused}"
    );

    served.signal(libc::SIGTERM);
    assert!(served.exit_status().await.success());
    database.remove().await;
}

crate::on_both_backends!(
    offline_first_key_then_every_call_needs_it,
    projects_and_keys_through_a_running_server,
);
