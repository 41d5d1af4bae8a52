//! The network wall: a session's page reaches public addresses, and
//! nothing of browserd's host or network unless the operator allows it.
//! Every attack runs first with `--egress open`, where pages share the
//! host's network (what every browserd did before the wall), and must be
//! seen to hit; then with the default policy, where it must not. Traffic
//! goes only to loopback and to a test host in a network namespace this
//! test makes itself; the private, link-local and metadata ranges at
//! large are covered by the policy's unit tests, never by connecting.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use browserd::browser::cdp::CdpClient;
use browserd::config::Egress;
use browserd::pb;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::isolation::{blank_page, evaluate};
use crate::on_both_backends;
use crate::support::*;
use crate::trust::Unprivileged;

/// An HTTP service that counts every connection it accepts, and the
/// pages it serves (what is not the browser's own favicon request),
/// answering each with a small page titled `title`.
struct Counter {
    port: u16,
    hits: Arc<AtomicUsize>,
    pages: Arc<AtomicUsize>,
}

impl Counter {
    /// On every address of this host (IPv4 and IPv6), as a local service
    /// that binds `0.0.0.0`/`::` is.
    async fn start(title: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("[::]:0")
            .await
            .expect("bind the counter");
        let port = listener.local_addr().expect("addr").port();
        Self::serve(listener, title, port)
    }

    fn serve(listener: tokio::net::TcpListener, title: &'static str, port: u16) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let pages = Arc::new(AtomicUsize::new(0));
        let (counted, served) = (hits.clone(), pages.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let served = served.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    let line = String::from_utf8_lossy(&buf[..n]);
                    if !line.lines().next().unwrap_or_default().contains("favicon") {
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                    let body = format!(
                        "<html><head><title>{title}</title></head><body>{}</body></html>",
                        "x".repeat(1000)
                    );
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        Self { port, hits, pages }
    }

    /// Connections of any kind: what an attack must not make.
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn pages(&self) -> usize {
        self.pages.load(Ordering::SeqCst)
    }
}

/// A host with a private address: a network namespace this test makes,
/// joined to the host by a veth pair, with a [`Counter`] on port 80.
struct PrivateHost {
    name: String,
    address: Ipv4Addr,
    counter: Counter,
}

impl PrivateHost {
    async fn start() -> Self {
        // Unique per test process: nextest runs each test in its own.
        let tag = format!("{:05x}", std::process::id() % 0xfffff);
        let name = format!("bd-egress-{tag}");
        let (outer, inner) = (format!("bdo{tag}"), format!("bdi{tag}"));
        let octet = (std::process::id() % 250) as u8 + 1;
        let (host_side, address) = (
            format!("10.231.{octet}.1/30"),
            Ipv4Addr::new(10, 231, octet, 2),
        );
        let _ = ip(&["netns", "del", &name]);
        let _ = ip(&["link", "del", &outer]);
        for args in [
            vec!["netns", "add", &name],
            vec![
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ],
            vec!["link", "set", &inner, "netns", &name],
            vec!["addr", "add", &host_side, "dev", &outer],
            vec!["link", "set", &outer, "up"],
            vec!["-n", &name, "link", "set", "lo", "up"],
            vec!["-n", &name, "link", "set", &inner, "up"],
        ] {
            ip(&args).expect("make the private test host");
        }
        let inner_address = format!("{address}/30");
        ip(&["-n", &name, "addr", "add", &inner_address, "dev", &inner]).expect("address");
        let listener = listen_in(&name, SocketAddr::from((address, 80)));
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let counter = Counter::serve(listener, "private host", 80);
        Self {
            name,
            address,
            counter,
        }
    }
}

impl Drop for PrivateHost {
    fn drop(&mut self) {
        // The veth pair goes with the namespace.
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A listener made inside the named namespace, on a thread that goes
/// with it: the socket stays there, served from this runtime.
fn listen_in(name: &str, address: SocketAddr) -> std::net::TcpListener {
    let path = format!("/var/run/netns/{name}");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let ns = std::fs::File::open(&path).expect("the namespace");
        // SAFETY: setns on this thread only, which ends here.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let listener = std::net::TcpListener::bind(address).expect("bind in the namespace");
        listener.set_nonblocking(true).expect("nonblocking");
        listener
    })
    .join()
    .expect("the namespace thread")
}

/// Every way a page or its client makes the browser connect, aimed at
/// `url` (and `ws` for a WebSocket). Each has settled when this returns.
async fn attack(client: &CdpClient, page: &str, url: &str, ws: &str) {
    let script = format!(
        r#"(async () => {{
            const url = {url:?}, ws = {ws:?};
            const out = [];
            try {{ await fetch(url, {{mode: "no-cors", method: "POST", body: "x"}}); out.push("fetch ok"); }}
            catch (e) {{ out.push("fetch " + e); }}
            out.push(await new Promise(done => {{
                const img = new Image();
                img.onload = () => done("img load");
                img.onerror = () => done("img error");
                img.src = url + "?img";
            }}));
            out.push(await new Promise(done => {{
                let socket;
                try {{ socket = new WebSocket(ws); }} catch (e) {{ return done("ws " + e); }}
                socket.onopen = () => {{ socket.close(); done("ws open"); }};
                socket.onerror = () => done("ws error");
            }}));
            return out.join("; ");
        }})()"#
    );
    evaluate(client, page, &script).await;
    // A navigation of its own page, and a new page the client opens.
    let target = blank_page(client, None).await;
    client
        .call_in(&target, "Page.navigate", json!({"url": url}), EVENT_WAIT)
        .await
        .expect("Page.navigate answers");
    let opened = client
        .create_target(url, None, EVENT_WAIT)
        .await
        .expect("Target.createTarget");
    let opened = client.attach(&opened, EVENT_WAIT).await.expect("attached");
    eventually("the new page settles", async || {
        let state = evaluate(client, &opened, "document.readyState").await;
        state == "complete"
    })
    .await;
}

/// A page of the tests' own site, from which the attacks run: fetches
/// from it are same-site with nothing, and loopback to loopback for the
/// browser's private network checks.
async fn attacker(client: &CdpClient) -> String {
    let site = serve_page("attacker").await;
    let page = blank_page(client, None).await;
    client
        .call_in(
            &page,
            "Page.navigate",
            json!({"url": format!("http://{site}/")}),
            EVENT_WAIT,
        )
        .await
        .expect("navigate");
    eventually("the attacker's page loads", async || {
        evaluate(client, &page, "document.title").await == "attacker"
    })
    .await;
    page
}

/// The addresses a page may try for a service on this host's port
/// `port`: every spelling of loopback, the unspecified address, and a
/// name that resolves to loopback.
fn spellings(port: u16) -> Vec<String> {
    [
        "127.0.0.1",
        "127.1",
        "[::1]",
        "localhost",
        "0.0.0.0",
        "2130706433",
    ]
    .iter()
    .map(|host| format!("{host}:{port}"))
    .collect()
}

/// Where an attack aims besides the loopback service.
struct Targets<'a> {
    private: &'a PrivateHost,
    relay_port: u16,
    grpc_port: u16,
}

/// Every attack on every target: a loopback service, browserd's own
/// relay (its console and discovery) and gRPC port, and a private host.
/// Returns the loopback service's and the private host's hits.
async fn attack_everything(
    client: &CdpClient,
    service: &Counter,
    to: &Targets<'_>,
) -> (usize, usize) {
    let (private, relay_port) = (to.private, to.relay_port);
    let page = attacker(client).await;
    let mut targets: Vec<String> = spellings(service.port)
        .into_iter()
        .map(|at| format!("{at}/"))
        .collect();
    targets.push(format!("127.0.0.1:{relay_port}/console/api/sessions"));
    targets.push(format!("127.0.0.1:{relay_port}/json/version"));
    targets.push(format!("127.0.0.1:{}/", to.grpc_port));
    targets.push(format!("{}:80/", private.address));
    for target in targets {
        attack(
            client,
            &page,
            &format!("http://{target}"),
            &format!("ws://{target}"),
        )
        .await;
    }
    (service.hits(), private.counter.hits())
}

/// The network interfaces of process `pid`'s namespace.
fn interfaces(pid: i32) -> Vec<String> {
    let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).expect("net/dev");
    dev.lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(|name| name.trim().to_owned())
        .collect()
}

fn relay_port(connect_url: &str) -> u16 {
    connect_url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|authority| authority.parse::<SocketAddr>().ok())
        .expect("a ws:// connect_url")
        .port()
}

async fn a_page_reaches_nothing_of_the_host_or_its_network(backend: Backend) {
    let service = Counter::start("local service").await;
    let private = PrivateHost::start().await;

    // Open: the attacks are real, and the test sees them land.
    let mut open = spawn_app_with(backend, |c| c.egress = Egress::Open).await;
    let session = open.create(pb::CreateSessionRequest::default()).await;
    let client = cdp_client(&session.connect_url).await;
    let targets = Targets {
        private: &private,
        relay_port: relay_port(&session.connect_url),
        grpc_port: open.addr.port(),
    };
    let (hits, private_hits) = attack_everything(&client, &service, &targets).await;
    assert!(hits > 0, "the attacks reach a loopback service when open");
    assert!(private_hits > 0, "and the private host");
    let browser = browser_main_pid(&open.profiles_dir(), &session.id);
    assert_ne!(
        interfaces(browser),
        ["lo"],
        "open, the browser has the host's network"
    );
    open.release(&session.id).await;
    open.stop().await;
    let before = (service.hits(), private.counter.hits());

    // Walled, the default.
    let mut app = spawn_app(backend).await;
    let other = app
        .create(pb::CreateSessionRequest {
            keep_alive: true,
            ..Default::default()
        })
        .await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let client = cdp_client(&session.connect_url).await;
    let targets = Targets {
        private: &private,
        relay_port: relay_port(&session.connect_url),
        grpc_port: app.addr.port(),
    };
    let after = attack_everything(&client, &service, &targets).await;
    assert_eq!(
        after, before,
        "nothing reached the host or the private host"
    );
    // Nor can anything that is not a proxy request (WebRTC and other UDP,
    // QUIC, DNS): the browser's namespace has its loopback and no route.
    let browser = browser_main_pid(&app.profiles_dir(), &session.id);
    assert_eq!(interfaces(browser), ["lo"]);
    let routes = std::fs::read_to_string(format!("/proc/{browser}/net/route")).expect("routes");
    assert_eq!(routes.lines().count(), 1, "only the header: {routes}");
    let other_now = app.get(&other.id).await;
    assert_eq!(status_of(&other_now), pb::SessionStatus::Live);
    assert_eq!(other_now.expires_at, other.expires_at);
    // Every attempt was the proxy's to refuse, and was counted.
    let usage = app.get(&session.id).await.egress_usage.expect("usage");
    assert!(usage.refused >= 9, "{usage:?}");
    app.release(&other.id).await;
    app.release(&session.id).await;
    app.stop().await;
}

/// `--egress-allow` opens a destination for every session, a session's
/// own allow list narrows it again, a refusal says what would allow it,
/// and what went through is counted, live and in the end.
async fn allowed_destinations_are_reached_and_sessions_narrow_them(backend: Backend) {
    let service = Counter::start("local service").await;
    let private = PrivateHost::start().await;
    let refused_port = Counter::start("never").await;
    let rules = [
        format!("127.0.0.1:{}", service.port),
        format!("localhost:{}", service.port),
        private.address.to_string(),
    ];
    let mut app = spawn_app_with(backend, |c| {
        for rule in &rules {
            c.egress_allow.push(rule.parse().expect("a rule"));
        }
    })
    .await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let client = cdp_client(&session.connect_url).await;
    let page = blank_page(&client, None).await;
    for (url, title) in [
        (
            format!("http://127.0.0.1:{}/", service.port),
            "local service",
        ),
        (
            format!("http://localhost:{}/", service.port),
            "local service",
        ),
        (format!("http://{}/", private.address), "private host"),
    ] {
        assert_eq!(title_after(&client, &page, &url).await, title, "{url}");
    }
    assert_eq!(service.pages(), 2);
    assert_eq!(private.counter.pages(), 1);
    // Live usage: three pages of over a kilobyte each came in.
    let live = app.get(&session.id).await.egress_usage.expect("usage");
    assert!(
        live.bytes_received > 3000 && live.bytes_sent > 0,
        "{live:?}"
    );
    assert!(live.requests >= 3, "{live:?}");

    // A refusal names the destination, the rule and the flag.
    let url = format!("http://127.0.0.1:{}/", refused_port.port);
    assert_eq!(
        title_after(&client, &page, &url).await,
        "Refused by browserd"
    );
    let text = evaluate(&client, &page, "document.body.innerText").await;
    let text = text.as_str().expect("text");
    for said in [
        format!("127.0.0.1:{}", refused_port.port),
        "loopback".to_owned(),
        format!("--egress-allow 127.0.0.1:{}", refused_port.port),
    ] {
        assert!(text.contains(&said), "{said:?} not in {text:?}");
    }
    assert_eq!(refused_port.hits(), 0);

    // A session confined to the domain `localhost`: 127.0.0.1 by its
    // address is refused, though the server allows it, and so is the
    // private host it denies; localhost itself is reached.
    let narrow = app
        .create(pb::CreateSessionRequest {
            egress: Some(pb::EgressRules {
                allow: vec!["localhost".into()],
                deny: vec![private.address.to_string()],
            }),
            ..Default::default()
        })
        .await;
    assert_eq!(
        narrow.egress.as_ref().map(|e| e.allow.clone()),
        Some(vec!["localhost".to_owned()])
    );
    let narrow_client = cdp_client(&narrow.connect_url).await;
    let narrow_page = blank_page(&narrow_client, None).await;
    let before = service.pages();
    for url in [
        format!("http://127.0.0.1:{}/", service.port),
        format!("http://{}/", private.address),
    ] {
        assert_eq!(
            title_after(&narrow_client, &narrow_page, &url).await,
            "Refused by browserd",
            "{url}"
        );
    }
    let text = evaluate(&narrow_client, &narrow_page, "document.body.innerText").await;
    assert!(
        text.as_str().is_some_and(|t| t.contains("egress.deny")),
        "{text}"
    );
    let url = format!("http://localhost:{}/", service.port);
    assert_eq!(
        title_after(&narrow_client, &narrow_page, &url).await,
        "local service"
    );
    assert_eq!(service.pages(), before + 1);
    assert_eq!(private.counter.pages(), 1);

    // Final usage, stored with the end and in its event.
    let ended = app.release(&session.id).await;
    let stored = ended.egress_usage.expect("stored usage");
    assert!(stored.bytes_received >= live.bytes_received, "{stored:?}");
    assert!(stored.refused >= 1, "{stored:?}");
    assert_eq!(app.get(&session.id).await.egress_usage, Some(stored));
    let events = app.events_of(&session.id).await;
    let last = events
        .last()
        .and_then(|e| e.session.clone())
        .expect("an end");
    assert_eq!(last.egress_usage, Some(stored));
    app.release(&narrow.id).await;
    app.stop().await;
}

/// Rules that do not parse are refused, naming the rule's place, and
/// nothing is written.
async fn bad_egress_rules_are_refused_by_field(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let refused = app
        .client
        .create_session(pb::CreateSessionRequest {
            egress: Some(pb::EgressRules {
                allow: vec!["example.com".into(), "not a rule".into()],
                deny: vec![],
            }),
            ..Default::default()
        })
        .await;
    assert_invalid_argument(&refusal(refused), "egress.allow[1]");
    assert_eq!(app.newest_sequence().await, 0, "nothing was written");
    app.stop().await;
}

/// A SOCKS5 proxy that wants `alice`/`s3cret`, and serves `target.test`
/// itself, recording what it was asked for.
struct Socks {
    addr: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

const SOCKS_PASSWORD: &str = "s3cret-socks";

impl Socks {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind((browserd::harness::PAGE_HOST, 0))
            .await
            .expect("bind the SOCKS proxy");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(socks_one(socket, log.clone()));
            }
        });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("log").clone()
    }
}

async fn socks_one(mut s: tokio::net::TcpStream, seen: Arc<std::sync::Mutex<Vec<String>>>) {
    let mut greeting = [0u8; 2];
    if s.read_exact(&mut greeting).await.is_err() {
        return;
    }
    let mut methods = vec![0u8; usize::from(greeting[1])];
    let _ = s.read_exact(&mut methods).await;
    if !methods.contains(&0x02) {
        let _ = s.write_all(&[0x05, 0xff]).await;
        return;
    }
    let _ = s.write_all(&[0x05, 0x02]).await;
    let mut version = [0u8; 2];
    if s.read_exact(&mut version).await.is_err() {
        return;
    }
    let mut user = vec![0u8; usize::from(version[1])];
    let _ = s.read_exact(&mut user).await;
    let mut len = [0u8; 1];
    let _ = s.read_exact(&mut len).await;
    let mut password = vec![0u8; usize::from(len[0])];
    let _ = s.read_exact(&mut password).await;
    if user != b"alice" || password != SOCKS_PASSWORD.as_bytes() {
        seen.lock().expect("log").push("bad credentials".into());
        let _ = s.write_all(&[0x01, 0x01]).await;
        return;
    }
    let _ = s.write_all(&[0x01, 0x00]).await;
    let mut request = [0u8; 4];
    if s.read_exact(&mut request).await.is_err() || request[3] != 0x03 {
        return;
    }
    let _ = s.read_exact(&mut len).await;
    let mut host = vec![0u8; usize::from(len[0])];
    let _ = s.read_exact(&mut host).await;
    let mut port = [0u8; 2];
    let _ = s.read_exact(&mut port).await;
    let target = format!(
        "{}:{}",
        String::from_utf8_lossy(&host),
        u16::from_be_bytes(port)
    );
    seen.lock().expect("log").push(target.clone());
    let _ = s
        .write_all(&[0x05, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0])
        .await;
    if target != "target.test:80" {
        return;
    }
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf).await;
    let body = "<title>through socks</title>";
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(response.as_bytes()).await;
}

async fn an_authenticated_socks5_upstream_works_and_its_password_is_never_echoed(backend: Backend) {
    let socks = Socks::start().await;
    let mut app = spawn_app(backend).await;
    let proxy_url = format!("socks5://alice:{SOCKS_PASSWORD}@{}", socks.addr);
    let session = app
        .create(pb::CreateSessionRequest {
            proxy_url: proxy_url.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        session.proxy_url,
        format!("socks5://alice:REDACTED@{}", socks.addr)
    );
    let client = cdp_client(&session.connect_url).await;
    let page = blank_page(&client, None).await;
    assert_eq!(
        title_after(&client, &page, "http://target.test/").await,
        "through socks"
    );
    // The name went to the proxy unresolved (with Chromium's own
    // background requests, which go where every request goes), and
    // nowhere shows the
    // password: not the session, its events, or the browser's arguments.
    assert!(
        socks.seen().contains(&"target.test:80".to_owned()),
        "{:?}",
        socks.seen()
    );
    let listed = format!("{:?}", app.list(pb::ListSessionsRequest::default()).await);
    let events = format!("{:?}", app.events_of(&session.id).await);
    for shown in [listed, events] {
        assert!(!shown.contains(SOCKS_PASSWORD), "{shown}");
    }
    let main = browser_main_pid(&app.profiles_dir(), &session.id);
    let args = browserd::browser::process_table::args(main);
    assert!(
        !args
            .iter()
            .any(|a| String::from_utf8_lossy(a).contains(SOCKS_PASSWORD)),
        "{args:?}"
    );
    let usage = app.release(&session.id).await.egress_usage.expect("usage");
    assert!(usage.bytes_received > 0, "{usage:?}");

    // A wrong password gets nothing through.
    let wrong = app
        .create(pb::CreateSessionRequest {
            proxy_url: format!("socks5://alice:wrong@{}", socks.addr),
            ..Default::default()
        })
        .await;
    let client = cdp_client(&wrong.connect_url).await;
    let page = blank_page(&client, None).await;
    assert_ne!(
        title_after(&client, &page, "http://target.test/").await,
        "through socks"
    );
    assert!(socks.seen().contains(&"bad credentials".to_owned()));
    app.release(&wrong.id).await;
    app.stop().await;
}

/// A page's title once a navigation to `url` has settled.
async fn title_after(client: &CdpClient, page: &str, url: &str) -> String {
    client
        .call_in(page, "Page.navigate", json!({"url": url}), EVENT_WAIT)
        .await
        .expect("Page.navigate answers");
    eventually("the navigation settles", async || {
        let state = evaluate(
            client,
            page,
            "[document.readyState, location.href, document.title]",
        )
        .await;
        let done = state[0] == "complete" && state[1] != "about:blank";
        done.then(|| state[2].as_str().unwrap_or_default().to_owned())
            .ok_or("still loading")
    })
    .await
}

/// Unprivileged (the Docker image's way), the same wall: browserd makes
/// the namespaces in its own user namespace.
async fn unprivileged_the_wall_holds_and_allowed_pages_load(backend: Backend) {
    let service = Counter::start("local service").await;
    let allowed = format!("127.0.0.1:{}", service.port);
    let page_host = browserd::harness::PAGE_HOST.to_string();
    let served = Unprivileged::start_with(
        backend,
        &["--egress-allow", &page_host, "--egress-allow", &allowed],
    )
    .await;
    let mut client = served.client();
    let session = create_on(&mut client, pb::CreateSessionRequest::default()).await;
    let cdp = cdp_client(&session.connect_url).await;
    let page = attacker(&cdp).await;
    let relay = relay_port(&session.connect_url);
    for target in [
        format!("[::1]:{}", service.port),
        format!("127.0.0.1:{relay}/console/api/sessions"),
    ] {
        attack(
            &cdp,
            &page,
            &format!("http://{target}"),
            &format!("ws://{target}"),
        )
        .await;
    }
    assert_eq!(service.hits(), 0, "only 127.0.0.1 was allowed");
    let url = format!("http://{allowed}/");
    assert_eq!(title_after(&cdp, &page, &url).await, "local service");
    assert_eq!(service.pages(), 1);
    served.stop().await;
}

/// Fail closed: where no network namespace can be made (unprivileged and
/// unjailed, so without a user namespace of its own), `serve` refuses
/// unless told `--egress open`.
#[tokio::test]
async fn without_a_network_namespace_serve_refuses_unless_open() {
    let (uid, gid, _dir, binary, data_dir) =
        Unprivileged::prepare(crate::trust::USER_WITHOUT_IDS, true);
    let mut command = Unprivileged::command(&binary, uid, gid, &data_dir);
    command.args(["--isolation", "none"]);
    let output = tokio::time::timeout(EVENT_WAIT, command.output())
        .await
        .expect("browserd refuses at once")
        .expect("run browserd");
    assert!(!output.status.success(), "browserd must refuse to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in ["network namespace", "--egress open"] {
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
    }
}

on_both_backends!(
    a_page_reaches_nothing_of_the_host_or_its_network,
    allowed_destinations_are_reached_and_sessions_narrow_them,
    bad_egress_rules_are_refused_by_field,
    an_authenticated_socks5_upstream_works_and_its_password_is_never_echoed,
    unprivileged_the_wall_holds_and_allowed_pages_load,
);
