//! What a session's own page gets for being a process of browserd's on
//! browserd's host: nothing. A page can open connections to browserd's
//! listeners (its client hands it the connect_url, or it finds the relay's
//! port), and it is made by one of browserd's browsers: the relay must not
//! take it for a client of browserd's own user (files by path), the
//! console must not take it for a local caller on an open server, and
//! when browserd runs unprivileged, as the Docker image does, the browser
//! must not have browserd's uid, or every file browserd can read (its
//! secret, its database) is the page's. Each attack runs as root (in
//! process) and unprivileged (the binary as a user the test makes, with
//! subordinate ids), on both backends.
//!
//! The egress wall keeps pages from browserd's listeners in the first
//! place (`egress.rs`); these servers run with `--egress open`, where
//! pages share the host's network, to prove the layer behind the wall.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use browserd::browser::cdp::CdpClient;
use browserd::harness::ChildServer;
use browserd::pb;
use browserd::pb::session_service_client::SessionServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::isolation::{Read, blank_page, download_into, evaluate, read_file};
use crate::on_both_backends;
use crate::support::*;

/// The user browserd runs as in the unprivileged tests: an ordinary user,
/// which `useradd` gives subordinate ids (`/etc/subuid`, `/etc/subgid`).
const USER: &str = "browserd-test";
/// A user without subordinate ids: browserd must refuse to jail as it.
pub(crate) const USER_WITHOUT_IDS: &str = "browserd-test-noids";

/// The uid and gid of `name`, made first if missing (`--system` users get
/// no subordinate ids). Tests run as processes of their own, and
/// `useradd` refuses while another holds the password file's lock: one
/// test at a time looks and makes, under a lock of the tests' own.
fn test_user(name: &str, system: bool) -> (u32, u32) {
    use std::os::fd::AsRawFd;
    let lock = std::fs::File::create(std::env::temp_dir().join("browserd-test-users.lock"))
        .expect("the test users' lock");
    // SAFETY: flock on a descriptor this function owns; the lock goes with
    // the file when it is dropped at the end of this function.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let lookup = || {
        let out = std::process::Command::new("id")
            .args(["-u", name])
            .output()
            .ok()?;
        let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        let out = std::process::Command::new("id")
            .args(["-g", name])
            .output()
            .ok()?;
        let gid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        Some((uid, gid))
    };
    if let Some(ids) = lookup() {
        return ids;
    }
    let mut useradd = std::process::Command::new("useradd");
    useradd.args([
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "--user-group",
    ]);
    if system {
        useradd.arg("--system");
    }
    let made = useradd.arg(name).status().expect("run useradd");
    lookup().unwrap_or_else(|| panic!("useradd {name} failed: {made}"))
}

/// `browserd serve` as `user`, unprivileged, with its own data directory.
pub(crate) struct Unprivileged {
    server: ChildServer,
    uid: u32,
    /// Holds the binary's copy and the data directory.
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    database: TestDatabase,
}

impl Unprivileged {
    /// A copy of the binary anyone may run (the build's directory may be
    /// private to root) in a directory that `user` may enter, and the
    /// data directory, the user's own.
    pub(crate) fn prepare(
        user: &str,
        system: bool,
    ) -> (u32, u32, tempfile::TempDir, PathBuf, PathBuf) {
        let (uid, gid) = test_user(user, system);
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let binary = dir.path().join("browserd");
        std::fs::copy(env!("CARGO_BIN_EXE_browserd"), &binary).expect("copy the binary");
        let data_dir = dir.path().join("data");
        std::fs::create_dir(&data_dir).expect("data dir");
        std::os::unix::fs::chown(&data_dir, Some(uid), Some(gid)).expect("chown");
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        (uid, gid, dir, binary, data_dir)
    }

    pub(crate) fn command(
        binary: &Path,
        uid: u32,
        gid: u32,
        data_dir: &Path,
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("setpriv");
        command
            .args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--init-groups".to_owned(),
                "--".to_owned(),
            ])
            .arg(binary)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--cdp-listen",
                "127.0.0.1:0",
                "--warm-pool",
                "0",
                "--node-id",
                "unprivileged",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("BROWSERD_DATABASE_URL")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "info")
            .kill_on_drop(true);
        command
    }

    async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &["--egress", "open"]).await
    }

    /// The same with `args` added to `serve`'s.
    pub(crate) async fn start_with(backend: Backend, args: &[&str]) -> Self {
        let (uid, gid, dir, binary, data_dir) = Self::prepare(USER, false);
        let database = TestDatabase::new(backend, &data_dir).await;
        let mut command = Self::command(&binary, uid, gid, &data_dir);
        command.arg("--database-url").arg(&database.url).args(args);
        let server = ChildServer::spawn(command).await;
        Self {
            server,
            uid,
            _dir: dir,
            data_dir,
            database,
        }
    }

    pub(crate) fn client(&self) -> SessionServiceClient<Channel> {
        self.server.client.clone()
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
        self.database.remove().await;
    }
}

/// Where a test's server runs: in this process as root, or unprivileged.
enum Deployment {
    Root(TestApp),
    Unprivileged(Unprivileged),
}

impl Deployment {
    async fn start(backend: Backend, unprivileged: bool) -> Self {
        if unprivileged {
            Self::Unprivileged(Unprivileged::start(backend).await)
        } else {
            Self::Root(spawn_app_with(backend, |c| c.egress = browserd::config::Egress::Open).await)
        }
    }

    fn client(&self) -> SessionServiceClient<Channel> {
        match self {
            Self::Root(app) => app.client.clone(),
            Self::Unprivileged(served) => served.client(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        match self {
            Self::Root(app) => app.data_dir.path().to_owned(),
            Self::Unprivileged(served) => served.data_dir.clone(),
        }
    }

    /// The uid browserd's own files have.
    fn uid(&self) -> u32 {
        match self {
            Self::Root(_) => 0,
            Self::Unprivileged(served) => served.uid,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Root(_) => "as root",
            Self::Unprivileged(_) => "unprivileged",
        }
    }

    async fn stop(self) {
        match self {
            Self::Root(app) => app.stop().await,
            Self::Unprivileged(served) => served.stop().await,
        }
    }
}

async fn live_session(client: &mut SessionServiceClient<Channel>) -> pb::Session {
    create_on(
        client,
        pb::CreateSessionRequest {
            keep_alive: true,
            ..Default::default()
        },
    )
    .await
}

/// What a page runs to drive its own browser through the relay, as any
/// page whose client gave it the connect_url can: `openRelay(url)` gives
/// `call(method, params, sessionId)` and `event(predicate)`;
/// `ownPage(relay)` attaches to the page itself (found by its title).
const RELAY_JS: &str = r#"
async function openRelay(url) {
  const ws = new WebSocket(url);
  await new Promise((ok, fail) => {
    ws.onopen = ok;
    ws.onerror = () => fail(new Error('the relay refused the page'));
  });
  let next = 0;
  const replies = new Map();
  const listeners = [];
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.id !== undefined && replies.has(msg.id)) {
      replies.get(msg.id)(msg);
      replies.delete(msg.id);
      return;
    }
    for (const listener of listeners) listener(msg);
  };
  return {
    call: (method, params, sessionId) => new Promise(done => {
      const id = ++next;
      replies.set(id, done);
      ws.send(JSON.stringify({id, method, params: params || {}, sessionId}));
    }),
    event: (wanted) => new Promise(done => listeners.push(m => { if (wanted(m)) done(m); })),
  };
}
async function ownPage(relay) {
  const targets = await relay.call('Target.getTargets');
  const me = targets.result.targetInfos.find(t => t.type === 'page' && t.title === document.title);
  const attached = await relay.call('Target.attachToTarget', {targetId: me.targetId, flatten: true});
  return attached.result.sessionId;
}
"#;

/// A page of `client`'s browser with a file input, titled uniquely so
/// that it finds itself among the targets.
async fn attacker_page(client: &CdpClient) -> String {
    let page = blank_page(client, None).await;
    let title = format!("attacker-{}", uuid::Uuid::new_v4().simple());
    evaluate(
        client,
        &page,
        &format!("document.title = '{title}'; document.body.innerHTML = '<input type=file id=f>'"),
    )
    .await;
    page
}

/// The page's own relay connection sets `path` into its file input and
/// reads it: `read: <hex>` or why not.
async fn page_uploads(client: &CdpClient, page: &str, connect_url: &str, path: &Path) -> String {
    let script = format!(
        "(async () => {{ {RELAY_JS}
          const relay = await openRelay({url});
          const sid = await ownPage(relay);
          const doc = await relay.call('DOM.getDocument', {{}}, sid);
          const input = await relay.call('DOM.querySelector', {{nodeId: doc.result.root.nodeId, selector: '#f'}}, sid);
          const set = await relay.call('DOM.setFileInputFiles', {{nodeId: input.result.nodeId, files: [{path}]}}, sid);
          if (set.error) return 'refused: ' + set.error.message;
          const file = document.getElementById('f').files[0];
          if (!file) return 'no file';
          const bytes = new Uint8Array(await file.arrayBuffer());
          return 'read: ' + Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('');
        }})()",
        url = json!(connect_url),
        path = json!(path),
    );
    evaluate_text(client, page, &script).await
}

/// The page's own relay connection points downloads at `dir` and
/// downloads `name`: the download's final state.
async fn page_downloads(
    client: &CdpClient,
    page: &str,
    connect_url: &str,
    dir: &Path,
    name: &str,
) -> String {
    let script = format!(
        "(async () => {{ {RELAY_JS}
          const relay = await openRelay({url});
          const set = await relay.call('Browser.setDownloadBehavior', {{behavior: 'allow', downloadPath: {dir}, eventsEnabled: true}});
          if (set.error) return 'refused: ' + set.error.message;
          const done = relay.event(m => m.method === 'Browser.downloadProgress' && m.params.state !== 'inProgress');
          const a = document.createElement('a');
          a.href = 'data:text/plain,written-by-a-page';
          a.download = {name};
          document.body.append(a);
          a.click();
          return (await done).params.state;
        }})()",
        url = json!(connect_url),
        dir = json!(dir),
        name = json!(name),
    );
    evaluate_text(client, page, &script).await
}

/// What a script in `page` answered, as text.
async fn evaluate_text(client: &CdpClient, page: &str, script: &str) -> String {
    evaluate(client, page, script)
        .await
        .as_str()
        .unwrap_or("no answer")
        .to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Session A's page opens its own connection to the relay with A's
/// connect_url and names browserd's files: the server secret (with which
/// it could forge a token for B), the database. It must get none of them,
/// and its downloads must not land in the data directory; B's profile is
/// untouched. Unprivileged, on the old code, the page read the secret: its
/// browser had browserd's uid, so the relay took the page's socket for a
/// client of browserd's own user.
async fn a_page_s_own_relay_connection_gets_no_path_trust(backend: Backend) {
    for unprivileged in [false, true] {
        let deployment = Deployment::start(backend, unprivileged).await;
        let how = deployment.name();
        let mut grpc = deployment.client();
        let a = live_session(&mut grpc).await;
        let b = live_session(&mut grpc).await;
        let data_dir = deployment.data_dir();
        let secret_file = data_dir.join("secret");
        let secret = std::fs::read(&secret_file).expect("the server secret");
        let client = foreign_cdp_client(&a.connect_url).await;
        let page = attacker_page(&client).await;

        let mut targets = vec![secret_file.clone()];
        if backend == Backend::Sqlite {
            targets.push(data_dir.join("browserd.db"));
        }
        for path in &targets {
            let got = page_uploads(&client, &page, &a.connect_url, path).await;
            assert!(
                got.starts_with("refused: "),
                "{how}: A's page set {} into its input: {got:.80}",
                path.display()
            );
            assert!(
                !got.contains(&hex(&secret)),
                "{how}: the page read the secret"
            );
        }

        let name = format!("escaped-{}.txt", uuid::Uuid::new_v4().simple());
        let state = page_downloads(&client, &page, &a.connect_url, &data_dir, &name).await;
        assert_eq!(
            state, "completed",
            "{how}: the page's download itself works"
        );
        assert!(
            !data_dir.join(&name).exists(),
            "{how}: A's page wrote {name} into the data directory"
        );
        let b_now = get_on(&mut grpc, &b.id).await;
        assert_eq!(status_of(&b_now), pb::SessionStatus::Live, "{how}");
        deployment.stop().await;
    }
}

/// A file browserd's user keeps under a directory the jail binds, as the
/// cluster guide (docs/cluster.md) keeps `--secret-file /etc/browserd/secret`,
/// readable by that user alone: A's page cannot read it by navigation.
/// Unprivileged, on the old code, it could (same uid, and all of `/etc`
/// bound); as root it never could.
async fn a_page_reads_no_file_of_browserd_s_user(backend: Backend) {
    for unprivileged in [false, true] {
        let deployment = Deployment::start(backend, unprivileged).await;
        let how = deployment.name();
        let uid = deployment.uid();
        let mut grpc = deployment.client();
        let a = live_session(&mut grpc).await;
        let mut planted = Vec::new();
        for root in ["/etc", "/opt"] {
            let dir =
                Path::new(root).join(format!("browserd-test-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir(&dir).expect("a directory of browserd's");
            let file = dir.join("secret");
            let marker = format!("secret-of-browserd-{}", uuid::Uuid::new_v4().simple());
            std::fs::write(&file, &marker).expect("plant");
            for path in [&dir, &file] {
                std::os::unix::fs::chown(path, Some(uid), Some(uid)).expect("chown");
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            planted.push((dir, file, marker));
        }
        let client = foreign_cdp_client(&a.connect_url).await;
        for (_, file, marker) in &planted {
            for read in [Read::FileUrl, Read::ViewSource] {
                let seen = read_file(&client, read, file).await;
                assert!(
                    !seen.contains(marker.as_str()),
                    "{how}: {read:?} read {} ({} bytes of it)",
                    file.display(),
                    seen.len()
                );
            }
        }
        // What the jail still binds of /etc works: the page resolves and
        // renders with fonts, and reads what anyone may.
        let seen = read_file(&client, Read::FileUrl, Path::new("/etc/passwd")).await;
        assert!(seen.contains("root:"), "{how}: /etc/passwd: {seen:.80}");
        for (dir, _, _) in planted {
            std::fs::remove_dir_all(dir).expect("clean up");
        }
        deployment.stop().await;
    }
}

/// On an open server (loopback, no key yet), A's page goes to the relay's
/// own origin, where its requests carry the console's Host and Origin, and
/// tries every console route against B: on the old code it listed B,
/// minted a control link for B and released B. Now every route answers
/// 401 or 403, the live view socket does not open, and B stays LIVE with
/// its expiry unchanged.
async fn a_page_cannot_use_the_console_of_an_open_server(backend: Backend) {
    for unprivileged in [false, true] {
        let deployment = Deployment::start(backend, unprivileged).await;
        let how = deployment.name();
        let mut grpc = deployment.client();
        let a = live_session(&mut grpc).await;
        let b = live_session(&mut grpc).await;
        let relay = crate::console::relay_addr(&a.connect_url);
        let client = foreign_cdp_client(&a.connect_url).await;
        let page = blank_page(&client, None).await;
        client
            .call_in(
                &page,
                "Page.navigate",
                json!({"url": format!("http://{relay}/console")}),
                EVENT_WAIT,
            )
            .await
            .expect("Page.navigate answers");
        let origin = evaluate(&client, &page, "location.origin").await;
        assert_eq!(
            origin,
            json!(format!("http://{relay}")),
            "{how}: on the console's origin"
        );
        let script = format!(
            "(async () => {{
              const b = {b};
              const status = async (path, init) => {{
                try {{ return (await fetch(path, init)).status; }} catch (e) {{ return 'error: ' + e; }}
              }};
              const post = (body) => ({{method: 'POST', headers: {{'content-type': 'application/json'}}, body: JSON.stringify(body)}});
              const out = {{}};
              out.page = await status('/console');
              out.script = await status('/console/console.js');
              out.whoami = await status('/console/api/whoami');
              out.list = await status('/console/api/sessions');
              out.get = await status('/console/api/sessions/' + b);
              out.extend = await status('/console/api/sessions/' + b + '/extend', post({{timeout_seconds: 86000}}));
              out.live = await status('/console/api/sessions/' + b + '/live', post({{control: true}}));
              const stop = new AbortController();
              out.events = await status('/console/api/events', {{signal: stop.signal}});
              stop.abort();
              out.socket = await new Promise(done => {{
                const ws = new WebSocket('ws://' + location.host + '/console/api/live?key=x');
                ws.onopen = () => done('open');
                ws.onerror = () => done('refused');
              }});
              out.release = await status('/console/api/sessions/' + b + '/release', {{method: 'POST'}});
              return out;
            }})()",
            b = json!(b.id),
        );
        let answers = evaluate(&client, &page, &script).await;
        let Value::Object(answers) = answers else {
            panic!("{how}: the page's requests: {answers}")
        };
        for (route, status) in &answers {
            match status {
                Value::Number(n) => assert!(
                    n.as_u64() == Some(401) || n.as_u64() == Some(403),
                    "{how}: the page's {route} got {status}"
                ),
                other => assert_eq!(other, "refused", "{how}: {route}"),
            }
        }
        assert_eq!(
            answers.len(),
            10,
            "{how}: every route was tried: {answers:?}"
        );
        let b_now = get_on(&mut grpc, &b.id).await;
        assert_eq!(
            status_of(&b_now),
            pb::SessionStatus::Live,
            "{how}: B was released"
        );
        assert_eq!(b_now.expires_at, b.expires_at, "{how}: B was extended");
        // The console still answers its own users on this host.
        let (status, _) =
            crate::console::api(&relay, "GET", "/console/api/sessions", None, None).await;
        assert_eq!(status, 200, "{how}: a local caller's console");
        deployment.stop().await;
    }
}

/// Unprivileged, a client of browserd's own user on the host (Playwright
/// `set_input_files(path)`) still names files by path, and a file that
/// user owns reaches the page; and each browser runs as an id of its own,
/// neither browserd's nor another browser's.
async fn unprivileged_browserd_keeps_path_trust_for_its_own_user(backend: Backend) {
    let served = Unprivileged::start(backend).await;
    let mut grpc = served.client();
    let a = live_session(&mut grpc).await;
    let b = live_session(&mut grpc).await;
    let upload = served
        .data_dir
        .parent()
        .expect("the test's dir")
        .join("upload.txt");
    std::fs::write(&upload, "the own user's upload").expect("an upload");
    std::os::unix::fs::chown(&upload, Some(served.uid), None).expect("chown");
    let stream = relay_socket(&a.connect_url, Some(served.uid));
    let client = CdpClient::connect_on(
        stream,
        &a.connect_url,
        &tokio_util::task::TaskTracker::new(),
    )
    .await
    .expect("connect as browserd's user");
    let seen = read_file(&client, Read::FileInput, &upload).await;
    assert_eq!(seen, "the own user's upload");
    // And its downloads land where it asked (Playwright's `save_as`).
    let downloads = served
        .data_dir
        .parent()
        .expect("the test's dir")
        .join("downloads");
    std::fs::create_dir(&downloads).expect("a downloads directory");
    std::os::unix::fs::chown(&downloads, Some(served.uid), None).expect("chown");
    download_into(&client, &downloads, "saved.txt").await;
    let saved = downloads.join("saved.txt");
    eventually(
        "the download copied out to the client's directory",
        async || std::fs::read_to_string(&saved).ok() == Some("written by session A".to_owned()),
    )
    .await;

    let profiles = served.data_dir.join("profiles");
    let owner = |id: &str| {
        std::fs::metadata(profiles.join(id))
            .expect("the session's profile")
            .uid()
    };
    let (owner_a, owner_b) = (owner(&a.id), owner(&b.id));
    assert_ne!(owner_a, served.uid, "A's browser has browserd's uid");
    assert_ne!(owner_a, owner_b, "two browsers share a uid");
    for pid in browser_processes(&profiles) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "bwrap" {
            continue; // the jail's builder, browserd's root of its namespace
        }
        let uid = std::fs::metadata(format!("/proc/{pid}"))
            .map(|m| m.uid())
            .unwrap_or(owner_a);
        assert!(
            uid == owner_a || uid == owner_b,
            "browser process {pid} runs as {uid}, not as its session's id"
        );
    }
    served.stop().await;
}

on_both_backends!(
    a_page_s_own_relay_connection_gets_no_path_trust,
    a_page_reads_no_file_of_browserd_s_user,
    a_page_cannot_use_the_console_of_an_open_server,
    unprivileged_browserd_keeps_path_trust_for_its_own_user,
);

/// Fail closed: unprivileged without subordinate ids, a jail would give
/// browsers browserd's own uid, so `serve` refuses, saying what to set up.
#[tokio::test]
async fn unprivileged_without_subordinate_ids_refuses_to_jail() {
    let (uid, gid, _dir, binary, data_dir) = Unprivileged::prepare(USER_WITHOUT_IDS, true);
    let output = tokio::time::timeout(
        EVENT_WAIT,
        Unprivileged::command(&binary, uid, gid, &data_dir).output(),
    )
    .await
    .expect("browserd refuses at once, rather than serving")
    .expect("run browserd");
    assert!(!output.status.success(), "browserd must refuse to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in ["/etc/subuid", "usermod --add-subuids", USER_WITHOUT_IDS] {
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
    }
}

/// Open mode is decided by every listener: a relay (and so a console)
/// beyond loopback with no key refuses to start, as gRPC beyond loopback
/// does.
#[tokio::test]
async fn a_relay_beyond_loopback_without_a_key_refuses_to_start() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = browserd::harness::config(data.path(), None);
    config.cdp_listen = "0.0.0.0:0".parse().expect("address");
    let refused = start_and_stop(config)
        .await
        .expect_err("browserd must refuse");
    let said = refused.to_string();
    assert!(
        said.contains("0.0.0.0")
            && said.contains("beyond loopback")
            && said.contains("keys create"),
        "{said}"
    );
}
