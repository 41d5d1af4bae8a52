//! What a session's browser can see of browserd: not its environment, and
//! not its data directory or database, which only browserd's user reads.
//! And what a session's client can do with everything CDP offers: read and
//! write no file outside its own browser, never run code as root. Each
//! attack is first shown to work with `--isolation none`, so a test that
//! sees nothing in the jail is known to be able to see.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use browserd::browser::cdp::CdpClient;
use browserd::browser::process_table;
use browserd::config::Isolation;
use browserd::pb;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

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

/// A file session A's client must not read, and text only it contains.
struct Secret {
    what: &'static str,
    path: PathBuf,
    marker: String,
}

/// The ways a CDP client reads a file by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// `Page.navigate` to `file://`.
    FileUrl,
    /// `Page.navigate` to `view-source:file://`.
    ViewSource,
    /// `DOM.setFileInputFiles` on an `<input type=file>` of A's own page,
    /// then a `FileReader`: any file, whatever its type.
    FileInput,
}

/// A fresh `about:blank` page of `client`'s browser, attached.
pub(crate) async fn blank_page(client: &CdpClient, context: Option<&str>) -> String {
    let target = client
        .create_target("about:blank", context, EVENT_WAIT)
        .await
        .expect("a page");
    client.attach(&target, EVENT_WAIT).await.expect("attached")
}

pub(crate) async fn evaluate(client: &CdpClient, page: &str, expression: &str) -> Value {
    let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
    let evaluated = client
        .call_in(page, "Runtime.evaluate", params, EVENT_WAIT)
        .await
        .expect("Runtime.evaluate");
    evaluated["result"]["value"].clone()
}

/// What A's client gets to see of `path` through `read`: the page's text,
/// the file's content, or the error it got instead.
pub(crate) async fn read_file(client: &CdpClient, read: Read, path: &Path) -> String {
    let page = blank_page(client, None).await;
    match read {
        Read::FileUrl | Read::ViewSource => {
            let prefix = if read == Read::ViewSource {
                "view-source:"
            } else {
                ""
            };
            let url = format!("{prefix}file://{}", path.display());
            let navigated = client
                .call_in(&page, "Page.navigate", json!({"url": url}), EVENT_WAIT)
                .await
                .expect("Page.navigate answers");
            if let Some(error) = navigated["errorText"].as_str() {
                return error.to_owned();
            }
            // The document is committed; its text is there once it has
            // loaded (a poll of the page's own state, bounded).
            eventually(&format!("{url} loads"), async || {
                let state = evaluate(client, &page, "document.readyState").await;
                if state == "complete" {
                    Ok(())
                } else {
                    Err(state)
                }
            })
            .await;
            let text = evaluate(client, &page, "document.documentElement.innerText").await;
            text.as_str().unwrap_or_default().to_owned()
        }
        Read::FileInput => {
            evaluate(
                client,
                &page,
                "document.body.innerHTML = '<input type=file id=f>'",
            )
            .await;
            let root = client
                .call_in(&page, "DOM.getDocument", json!({}), EVENT_WAIT)
                .await
                .expect("DOM.getDocument");
            let input = client
                .call_in(
                    &page,
                    "DOM.querySelector",
                    json!({"nodeId": root["root"]["nodeId"], "selector": "#f"}),
                    EVENT_WAIT,
                )
                .await
                .expect("DOM.querySelector");
            let set = client
                .call_in(
                    &page,
                    "DOM.setFileInputFiles",
                    json!({"nodeId": input["nodeId"], "files": [path]}),
                    EVENT_WAIT,
                )
                .await;
            if let Err(refused) = set {
                return refused.to_string();
            }
            let text = evaluate(
                client,
                &page,
                "new Promise(done => {
                    const file = document.getElementById('f').files[0];
                    if (!file) return done('no file');
                    const reader = new FileReader();
                    reader.onload = () => done(reader.result);
                    reader.onerror = () => done('error: ' + reader.error);
                    reader.readAsText(file);
                })",
            )
            .await;
            text.as_str().unwrap_or_default().to_owned()
        }
    }
}

/// Plants `marker` in a new file at `path`, readable by its owner only.
pub(crate) fn plant(path: &Path, marker: &str) {
    std::fs::write(path, marker).expect("plant a secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// From session A's client (of another user than browserd's: a remote
/// client), every way of reading a file by path, against the database, the
/// data directory, another live session's profile and (when browserd is
/// root) /etc/shadow. Unjailed, navigating to them shows them; a file input
/// is refused by the relay either way (it names a host path); in the jail
/// nothing shows, and A's own files still do.
async fn a_client_reads_no_file_outside_its_browser(backend: Backend) {
    for isolation in [Isolation::None, Isolation::Jail] {
        let mut app = spawn_app_with(backend, |c| c.isolation = isolation).await;
        let a = app.create(pb::CreateSessionRequest::default()).await;
        let b = app.create(pb::CreateSessionRequest::default()).await;
        let data_dir = app.data_dir.path().to_owned();
        let (profile_a, profile_b) = (
            app.profiles_dir().join(&a.id),
            app.profiles_dir().join(&b.id),
        );
        let own = profile_a.join("upload.txt");
        // A file A's client put in A's own profile, as an upload would.
        std::fs::write(&own, "A's own upload").expect("A's own file");
        let mut secrets = vec![
            Secret {
                what: "a file in the data directory",
                path: data_dir.join("planted.txt"),
                marker: "data-dir secret".into(),
            },
            Secret {
                what: "another session's profile",
                path: profile_b.join("planted.txt"),
                marker: "session B's secret".into(),
            },
        ];
        for secret in &secrets {
            plant(&secret.path, &secret.marker);
        }
        if backend == Backend::Sqlite {
            for file in ["browserd.db", "browserd.db-wal"] {
                let path = data_dir.join(file);
                if path.exists() {
                    // The database's header, or the WAL's page images of it.
                    let marker = if file.ends_with("wal") {
                        "sessions"
                    } else {
                        "SQLite format 3"
                    };
                    secrets.push(Secret {
                        what: "the database",
                        path,
                        marker: marker.into(),
                    });
                }
            }
        }
        if is_root() {
            secrets.push(Secret {
                what: "a root-only host file",
                path: "/etc/shadow".into(),
                marker: "root:".into(),
            });
        }
        let client = foreign_cdp_client(&a.connect_url).await;
        for secret in &secrets {
            for read in [Read::FileUrl, Read::ViewSource, Read::FileInput] {
                let binary = secret.path.starts_with(&data_dir) && secret.what == "the database";
                if binary && read != Read::FileInput {
                    continue; // navigating to it downloads it: nothing to show
                }
                let seen = read_file(&client, read, &secret.path).await;
                let leaked = seen.contains(&secret.marker);
                match isolation {
                    Isolation::None if read != Read::FileInput => assert!(
                        leaked,
                        "unjailed, {read:?} must read {} ({}): the attack itself is broken; got {seen:?}",
                        secret.what,
                        secret.path.display()
                    ),
                    _ => assert!(
                        !leaked,
                        "{isolation:?}, {read:?} read {} ({})",
                        secret.what,
                        secret.path.display()
                    ),
                }
            }
        }
        let seen = read_file(&client, Read::FileUrl, &own).await;
        assert!(
            seen.contains("A's own upload"),
            "{isolation:?}: A's own files read: {seen:?}"
        );
        app.release(&a.id).await;
        app.release(&b.id).await;
        app.stop().await;
    }
}

/// Downloads `name` (a `data:` URL, as `<a download>` would) in a page of
/// a new browser context of `client` whose downloads go to `dir`.
pub(crate) async fn download_into(client: &CdpClient, dir: &Path, name: &str) {
    let context = client
        .call("Target.createBrowserContext", json!({}), EVENT_WAIT)
        .await
        .expect("a browser context");
    let context = context["browserContextId"].as_str().expect("a context id");
    client
        .call(
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": dir, "browserContextId": context}),
            EVENT_WAIT,
        )
        .await
        .expect("Browser.setDownloadBehavior");
    let page = blank_page(client, Some(context)).await;
    let click = format!(
        "const a = document.createElement('a');
         a.href = 'data:text/plain,written by session A';
         a.download = '{name}';
         document.body.appendChild(a);
         a.click();"
    );
    evaluate(client, &page, &click).await;
}

/// From session A's client (a remote one), downloads aimed at another live
/// session's profile and at the data directory never land there, jailed or
/// not: the relay sends every download into A's own profile, where A's own
/// downloads land.
async fn a_client_writes_no_file_outside_its_browser(backend: Backend) {
    for isolation in [Isolation::None, Isolation::Jail] {
        let mut app = spawn_app_with(backend, |c| c.isolation = isolation).await;
        let a = app.create(pb::CreateSessionRequest::default()).await;
        let b = app.create(pb::CreateSessionRequest::default()).await;
        let targets = [
            app.profiles_dir().join(&b.id),
            app.data_dir.path().to_owned(),
        ];
        let profile_a = app.profiles_dir().join(&a.id);
        let client = foreign_cdp_client(&a.connect_url).await;
        for dir in &targets {
            download_into(&client, dir, "pwned.txt").await;
        }
        // Started last, A's own download landing means the others are done.
        download_into(&client, &profile_a.join("downloads"), "mine.txt").await;
        let landed = |name: &str| {
            files_under(&profile_a)
                .iter()
                .filter(|path| path.file_name().is_some_and(|n| n == name))
                .count()
        };
        eventually("A's own download lands in A's profile", async || {
            landed("mine.txt") == 1
        })
        .await;
        eventually("the attack's downloads land in A's profile", async || {
            landed("pwned.txt") == 2
        })
        .await;
        for dir in &targets {
            let written = dir.join("pwned.txt");
            assert!(
                !written.exists(),
                "{isolation:?}, A wrote {}",
                written.display()
            );
        }
        app.release(&a.id).await;
        app.release(&b.id).await;
        app.stop().await;
    }
}

/// `(uid, effective uid)` and whether a seccomp filter is on, from
/// `/proc/<pid>/status`; `None` once the process is gone.
fn credentials(pid: i32) -> Option<(Vec<u32>, bool)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let uids = field("Uid:")
        .iter()
        .filter_map(|u| u.parse().ok())
        .collect();
    Some((uids, field("Seccomp:") == ["2"]))
}

/// Chromium processes of a session (the jail's own bwrap excluded) and
/// their uids.
fn chromium_uids(profile: &Path) -> Vec<(i32, Vec<u32>)> {
    process_table::mentioning(profile)
        .into_iter()
        .filter(|&pid| process_table::stat(pid).is_some_and(|s| s.comm != "bwrap"))
        .filter_map(|pid| Some((pid, credentials(pid)?.0)))
        .collect()
}

/// Every process of a jailed browser runs as a uid other than root's, one
/// per browser when browserd is root, and its renderers under Chromium's
/// own seccomp sandbox. Unjailed as root, they run as root: the check sees.
async fn browsers_never_run_as_root(backend: Backend) {
    if is_root() {
        let mut app = spawn_app_with(backend, |c| c.isolation = Isolation::None).await;
        let session = app.create(pb::CreateSessionRequest::default()).await;
        let uids = chromium_uids(&app.profiles_dir().join(&session.id));
        assert!(
            uids.iter().any(|(_, ids)| ids.contains(&0)),
            "unjailed, browserd's root is the browser's: {uids:?}"
        );
        app.release(&session.id).await;
        app.stop().await;
    }
    let mut app = spawn_app(backend).await;
    let a = app.create(pb::CreateSessionRequest::default()).await;
    let b = app.create(pb::CreateSessionRequest::default()).await;
    let mut owners = Vec::new();
    for session in [&a, &b] {
        let profile = app.profiles_dir().join(&session.id);
        // Renderers start a moment after the browser answers CDP.
        eventually("a sandboxed renderer runs", async || {
            process_table::mentioning(&profile).into_iter().any(|pid| {
                // Chromium rewrites its helpers' titles into one string.
                let renderer = process_table::args(pid)
                    .iter()
                    .any(|a| a.windows(15).any(|w| w == b"--type=renderer"));
                renderer && credentials(pid).is_some_and(|(_, seccomp)| seccomp)
            })
        })
        .await;
        let uids = chromium_uids(&profile);
        assert!(!uids.is_empty(), "the browser runs");
        for (pid, ids) in &uids {
            assert!(
                !ids.contains(&0),
                "process {pid} of the browser runs as root: {ids:?}"
            );
        }
        owners.push(uids[0].1[0]);
    }
    if is_root() {
        assert_ne!(owners[0], owners[1], "two browsers share a uid");
    }
    app.release(&a.id).await;
    app.release(&b.id).await;
    app.stop().await;
}

on_both_backends!(
    browsers_start_with_a_clean_environment,
    the_data_directory_is_private,
    a_client_reads_no_file_outside_its_browser,
    a_client_writes_no_file_outside_its_browser,
    browsers_never_run_as_root,
);

/// Fail closed: without a working bubblewrap, `browserd serve` refuses to
/// start, saying how to fix it or opt out; `--isolation none` is the
/// opt-out, and says what it costs.
#[tokio::test]
async fn serve_refuses_to_start_without_a_jail() {
    let data = tempfile::tempdir().expect("temp dir");
    for (bwrap, says) in [
        (
            "/nonexistent/bwrap",
            "--bwrap-path /nonexistent/bwrap is not a file",
        ),
        // A bwrap that cannot make a jail, as where user namespaces are off.
        ("/usr/bin/false", "could not make a jail"),
    ] {
        let output = crate::binary::serve_command(data.path())
            .args(["--bwrap-path", bwrap])
            .output()
            .await
            .expect("run browserd");
        assert!(
            !output.status.success(),
            "{bwrap}: browserd must refuse to start"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        for expected in [
            says,
            "apt-get install -y bubblewrap",
            "user namespaces",
            "--isolation none",
        ] {
            assert!(
                stderr.contains(expected),
                "{bwrap}: {expected:?} not in {stderr}"
            );
        }
    }
    let mut served = crate::binary::serve_command(data.path())
        .args(["--bwrap-path", "/nonexistent/bwrap", "--isolation", "none"])
        .spawn()
        .expect("start browserd");
    let stderr = served.stderr.take().expect("stderr is piped");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut warned = false;
    let listening = tokio::time::timeout(EVENT_WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read the log") {
            warned |= line.contains("WARN") && line.contains("--isolation none");
            if line.contains("browserd listening") {
                return true;
            }
        }
        false
    })
    .await
    .expect("browserd starts");
    assert!(listening, "browserd starts with --isolation none");
    assert!(warned, "the opt-out is logged as a warning at start");
    // SAFETY: signalling the child this test spawned.
    unsafe { libc::kill(served.id().expect("running") as i32, libc::SIGTERM) };
    let status = served.wait().await.expect("browserd exits");
    assert!(status.success(), "{status}");
}
