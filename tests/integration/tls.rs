//! TLS on both listeners, with certificates made here for 127.0.0.1: gRPC
//! through a real tonic client that trusts the test CA (and no other
//! client), mutual TLS, the relay as `wss://` with `https://` discovery,
//! certificate files browserd must refuse, and the CLI with `--ca-cert`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use browserd::browser::cdp::CdpClient;
use browserd::pb;
use browserd::pb::session_service_client::SessionServiceClient;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::binary::browserd;
use crate::on_both_backends;
use crate::support::*;

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("a CA certificate");
        Self {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for 127.0.0.1 and localhost, and its key, as PEM.
    fn issue(&self, purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "browserd test");
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// Every file a test hands browserd or a client, in a directory of its own:
/// `ca.pem` signed `server.pem`; `client-ca.pem` signed `client.pem`;
/// `ca.pem` also signed `stranger.pem`, a client certificate of the wrong
/// CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a directory for certificates");
        let ca = Ca::new("browserd test CA");
        let client_ca = Ca::new("browserd test client CA");
        let write = |name: &str, pem: &str| {
            std::fs::write(dir.path().join(name), pem).expect("write a PEM file");
        };
        write("ca.pem", &ca.cert.pem());
        write("client-ca.pem", &client_ca.cert.pem());
        for (name, ca, purpose) in [
            ("server", &ca, ExtendedKeyUsagePurpose::ServerAuth),
            ("client", &client_ca, ExtendedKeyUsagePurpose::ClientAuth),
            ("stranger", &ca, ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let (cert, key) = ca.issue(purpose);
            write(&format!("{name}.pem"), &cert);
            write(&format!("{name}.key"), &key);
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read a PEM file")
    }

    /// The server's certificate; with `mutual`, clients need one of
    /// `client-ca.pem`.
    fn serve(&self, mutual: bool) -> impl FnOnce(&mut browserd::config::Config) + use<> {
        let (cert, key) = (self.path("server.pem"), self.path("server.key"));
        let client_ca = mutual.then(|| self.path("client-ca.pem"));
        move |config| {
            config.tls_cert = Some(cert);
            config.tls_key = Some(key);
            config.tls_client_ca = client_ca;
        }
    }

    /// A gRPC client's TLS: trusting `ca.pem`, presenting `identity`.
    fn client(&self, identity: Option<&str>) -> ClientTlsConfig {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.read("ca.pem")));
        match identity {
            Some(name) => tls.identity(Identity::from_pem(
                self.read(&format!("{name}.pem")),
                self.read(&format!("{name}.key")),
            )),
            None => tls,
        }
    }

    /// A relay client's TLS, trusting the CA in `ca` (a file of this Pki).
    fn relay_client(&self, ca: &str) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        let pem = self.read(ca);
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("a PEM certificate")).expect("a CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// The outcome of one RPC over a channel made with `tls` (`None`: plain
/// text) to `addr`: the channel's own error if it cannot even connect.
async fn list_over(addr: std::net::SocketAddr, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{addr}")).expect("endpoint");
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).expect("client TLS config");
    }
    let channel = tokio::time::timeout(EVENT_WAIT, endpoint.connect())
        .await
        .expect("connecting ends")
        .map_err(|e| format!("connect: {e:?}"))?;
    let request = pb::ListSessionsRequest::default();
    tokio::time::timeout(
        EVENT_WAIT,
        SessionServiceClient::new(channel).list_sessions(request),
    )
    .await
    .expect("the RPC ends")
    .map(drop)
    .map_err(|status| format!("rpc: {status:?}"))
}

/// `host:port` of a connect_url.
fn relay_addr(connect_url: &str) -> String {
    connect_url
        .strip_prefix("wss://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("a wss:// connect_url: {connect_url}"))
        .to_owned()
}

/// A TLS connection to the relay over `stream`, trusting `connector`'s CA.
async fn relay_tls<S>(
    connector: &tokio_rustls::TlsConnector,
    stream: S,
) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("an IP name");
    tokio::time::timeout(EVENT_WAIT, connector.connect(name, stream))
        .await
        .expect("the TLS handshake ends")
}

/// browserd's CDP client over `wss://`, from a socket made as user `uid`
/// (browserd's own when `None`).
async fn wss_client(pki: &Pki, connect_url: &str, uid: Option<u32>) -> CdpClient {
    let stream = relay_socket(connect_url, uid);
    let tls = relay_tls(&pki.relay_client("ca.pem"), stream)
        .await
        .expect("a TLS session with the relay");
    CdpClient::connect_on(tls, connect_url, &tokio_util::task::TaskTracker::new())
        .await
        .expect("a WebSocket through the relay over TLS")
}

async fn grpc_is_served_only_over_tls_to_clients_that_trust_its_ca(backend: Backend) {
    let pki = Pki::new();
    let mut app = spawn_tls_app(backend, pki.client(None), pki.serve(false)).await;
    let session = app
        .create(pb::CreateSessionRequest {
            keep_alive: true,
            ..Default::default()
        })
        .await;
    assert_eq!(status_of(&session), pb::SessionStatus::Live);
    assert!(
        session.connect_url.starts_with("wss://"),
        "{}",
        session.connect_url
    );
    assert_eq!(app.get(&session.id).await.connect_url, session.connect_url);

    // The system's roots do not hold the test CA.
    let untrusting = ClientTlsConfig::new().with_native_roots();
    let refused = list_over(app.addr, Some(untrusting)).await;
    let error = refused.expect_err("a client that does not trust the CA is refused");
    assert!(error.contains("UnknownIssuer"), "{error}");
    list_over(app.addr, None)
        .await
        .expect_err("plain-text gRPC to the TLS port fails");
    // Neither hurt the server.
    list_over(app.addr, Some(pki.client(None)))
        .await
        .expect("a trusting client is served");
    app.release(&session.id).await;
    app.stop().await;
}

async fn mutual_tls_admits_only_certificates_of_the_client_ca(backend: Backend) {
    let pki = Pki::new();
    let mut app = spawn_tls_app(backend, pki.client(Some("client")), pki.serve(true)).await;
    list_over(app.addr, Some(pki.client(Some("client"))))
        .await
        .expect("a client with a certificate of the client CA is served");
    for (identity, what) in [
        (None, "a client without a certificate"),
        (Some("stranger"), "a certificate of another CA"),
    ] {
        let refused = list_over(app.addr, Some(pki.client(identity))).await;
        assert!(refused.is_err(), "{what} must be refused");
    }

    // The relay asks for no client certificate: its token is the key.
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let client = wss_client(&pki, &session.connect_url, None).await;
    round_trip(&client).await;
    client.close().await;
    app.release(&session.id).await;
    app.stop().await;
}

/// A whole HTTP response to `GET path`, over `stream`; the relay closes
/// every HTTP connection after its answer.
async fn get<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, addr: &str, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send a request");
    let mut raw = Vec::new();
    tokio::time::timeout(EVENT_WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("the relay answers and closes")
        .expect("read the response");
    String::from_utf8_lossy(&raw).into_owned()
}

async fn the_relay_serves_wss_and_https_discovery(backend: Backend) {
    let pki = Pki::new();
    let handshake_timeout = Duration::from_secs(2);
    let mut app = spawn_tls_app(backend, pki.client(None), |config| {
        pki.serve(false)(config);
        config.cdp_handshake_timeout = handshake_timeout;
    })
    .await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let url = session.connect_url.clone();
    let addr = relay_addr(&url);
    let client = wss_client(&pki, &url, None).await;
    round_trip(&client).await;

    // Discovery over https:// hands out wss:// too, as Playwright's
    // connect_over_cdp("https://…") needs.
    let path = url.strip_prefix(&format!("wss://{addr}")).expect("a path");
    let (socket, query) = path.split_once('?').expect("a token");
    let stream = TcpStream::connect(&addr)
        .await
        .expect("connect to the relay");
    let tls = relay_tls(&pki.relay_client("ca.pem"), stream)
        .await
        .expect("a TLS session with the relay");
    let response = get(tls, &addr, &format!("{socket}/json/version?{query}")).await;
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    let version: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(version["webSocketDebuggerUrl"], json!(url));

    // A client that does not trust the CA, plain ws://, plain http://: no
    // session, and nothing else is hurt.
    let stream = TcpStream::connect(&addr)
        .await
        .expect("connect to the relay");
    let error = relay_tls(&pki.relay_client("client-ca.pem"), stream)
        .await
        .expect_err("a client that does not trust the CA fails the handshake");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    let plain = url.replacen("wss://", "ws://", 1);
    let outcome = tokio::time::timeout(
        EVENT_WAIT,
        CdpClient::connect(&plain, &tokio_util::task::TaskTracker::new()),
    )
    .await
    .expect("a plain-text WebSocket ends");
    assert!(outcome.is_err(), "plain ws:// must not reach the session");
    let stream = TcpStream::connect(&addr)
        .await
        .expect("connect to the relay");
    let response = get(stream, &addr, &format!("{socket}/json/version?{query}")).await;
    assert!(!response.contains("webSocketDebuggerUrl"), "{response}");

    // A client that never starts its handshake is dropped after
    // --cdp-handshake-timeout.
    let mut silent = TcpStream::connect(&addr)
        .await
        .expect("connect to the relay");
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(EVENT_WAIT, silent.read(&mut buf))
        .await
        .expect("the relay drops a client that sends nothing");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= handshake_timeout - Duration::from_millis(100));

    round_trip(&client).await;
    let again = wss_client(&pki, &url, None).await;
    round_trip(&again).await;
    again.close().await;
    client.close().await;
    app.release(&session.id).await;
    app.stop().await;
}

/// A file input's upload by host path, through `client`: the error
/// message when the relay refuses it.
async fn upload_by_path(client: &CdpClient, file: &Path) -> Result<(), String> {
    let target = client
        .create_target("about:blank", None, EVENT_WAIT)
        .await
        .expect("a page");
    let page = client.attach(&target, EVENT_WAIT).await.expect("attached");
    let expression =
        "document.body.innerHTML = '<input type=file>'; document.querySelector('input')";
    let input = client
        .call_in(
            &page,
            "Runtime.evaluate",
            json!({"expression": expression}),
            EVENT_WAIT,
        )
        .await
        .expect("an input");
    let params = json!({"files": [file], "objectId": input["result"]["objectId"]});
    match client
        .call_in(&page, "DOM.setFileInputFiles", params, EVENT_WAIT)
        .await
    {
        Ok(_) => Ok(()),
        Err(browserd::browser::CdpError::Refused { message, .. }) => Err(message),
        Err(e) => panic!("DOM.setFileInputFiles: {e}"),
    }
}

/// The relay tells a client of browserd's own user by its TCP socket; TLS
/// on top must not hide it.
async fn over_tls_the_relay_still_tells_its_own_users_clients(backend: Backend) {
    let pki = Pki::new();
    let mut app = spawn_tls_app(backend, pki.client(None), pki.serve(false)).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let host = tempfile::tempdir().expect("the client's files");
    let file = host.path().join("report.txt");
    std::fs::write(&file, "by path").expect("a file");

    let own = wss_client(&pki, &session.connect_url, None).await;
    upload_by_path(&own, &file)
        .await
        .expect("browserd's own user uploads by path over TLS");
    let foreign = wss_client(&pki, &session.connect_url, Some(FOREIGN_UID)).await;
    let refused = upload_by_path(&foreign, &file)
        .await
        .expect_err("another user's client names no host path");
    assert!(refused.contains("by contents"), "{refused}");
    own.close().await;
    foreign.close().await;
    app.release(&session.id).await;
    app.stop().await;
}

/// `browserd sessions` run as a user would, against a server that wants a
/// client certificate.
async fn the_cli_reaches_a_tls_server_with_its_ca_cert(backend: Backend) {
    let pki = Pki::new();
    let app = spawn_tls_app(backend, pki.client(Some("client")), pki.serve(true)).await;
    let path = |name: &str| pki.path(name).display().to_string();
    let identity = [
        "--client-cert",
        &path("client.pem"),
        "--client-key",
        &path("client.key"),
    ];
    let https = format!("https://{}", app.addr);
    let bare = app.addr.to_string();
    let run = |server: &str, flags: &[&str], env: &[(&str, String)]| {
        let mut command = browserd();
        command
            .args(["sessions", "--server", server])
            .args(flags)
            .args(["list", "--json"])
            .envs(env.iter().map(|(k, v)| (k, v.clone())))
            .stdout(std::process::Stdio::piped());
        async move { command.output().await.expect("run browserd sessions") }
    };

    let ca = [("BROWSERD_CA_CERT", path("ca.pem"))];
    for (server, env) in [(&https, &ca[..]), (&bare, &ca[..])] {
        let listed = run(server, &identity, env).await;
        let stderr = String::from_utf8_lossy(&listed.stderr);
        assert!(listed.status.success(), "{server}: {stderr}");
        let sessions: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
        assert!(sessions.is_object() || sessions.is_array(), "{sessions}");
    }

    let ca_flag = ["--ca-cert", &path("ca.pem")];
    let without_identity = run(&https, &ca_flag, &[]).await;
    assert!(!without_identity.status.success());
    let untrusting = run(&https, &identity, &[]).await;
    assert!(!untrusting.status.success());
    let stderr = String::from_utf8_lossy(&untrusting.stderr);
    assert!(
        stderr.contains("cannot reach browserd") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    let plain = run(&format!("http://{bare}"), &ca_flag, &[]).await;
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(
        !plain.status.success() && stderr.contains("https://"),
        "{stderr}"
    );
    app.stop().await;
}

on_both_backends!(
    grpc_is_served_only_over_tls_to_clients_that_trust_its_ca,
    mutual_tls_admits_only_certificates_of_the_client_ca,
    the_relay_serves_wss_and_https_discovery,
    over_tls_the_relay_still_tells_its_own_users_clients,
    the_cli_reaches_a_tls_server_with_its_ca_cert,
);

/// Starts browserd with `tune` on fresh listeners; the error `run` stops
/// with, which must come before it serves anything.
async fn start_error(tune: impl FnOnce(&mut browserd::config::Config)) -> String {
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = browserd::harness::config(data.path(), None);
    tune(&mut config);
    start_and_stop(config)
        .await
        .expect_err("browserd must refuse to start")
        .to_string()
}

#[tokio::test]
async fn bad_certificate_files_stop_browserd_naming_them() {
    let pki = Pki::new();
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("a file");
    let missing = pki.path("missing.pem");
    let cases: [(&str, &Path, &Path, Option<&Path>); 5] = [
        ("missing cert", &missing, &pki.path("server.key"), None),
        ("garbage cert", &garbage, &pki.path("server.key"), None),
        ("garbage key", &pki.path("server.pem"), &garbage, None),
        (
            "another certificate's key",
            &pki.path("server.pem"),
            &pki.path("client.key"),
            None,
        ),
        (
            "garbage client CA",
            &pki.path("server.pem"),
            &pki.path("server.key"),
            Some(&garbage),
        ),
    ];
    for (what, cert, key, client_ca) in cases {
        let error = start_error(|config| {
            config.tls_cert = Some(cert.to_owned());
            config.tls_key = Some(key.to_owned());
            config.tls_client_ca = client_ca.map(Path::to_owned);
        })
        .await;
        let named = client_ca.unwrap_or(if cert == pki.path("server.pem") {
            key
        } else {
            cert
        });
        assert!(
            error.contains(&named.display().to_string()),
            "{what}: the error must name {}: {error}",
            named.display()
        );
    }
}

/// Nodes of a cluster forward calls to each other over TLS, checking each
/// other's certificate against --cluster-ca-cert: a node that does not
/// trust that CA cannot be fooled into forwarding, and says which node it
/// could not reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_forward_to_each_other_over_tls_and_check_certificates() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(Backend::Postgres, dir.path()).await;
    let secret = dir.path().join("secret");
    let node = |id: &str, trusted: bool| {
        let data = dir.path().join(id);
        let mut config = browserd::harness::config(&data, Some(database.url.clone()));
        pki.serve(false)(&mut config);
        config.node_id = Some(id.to_owned());
        config.secret_file = Some(secret.clone());
        config.cluster_ca_cert = trusted.then(|| pki.path("ca.pem"));
        config
    };
    let a = browserd::harness::Server::start_tls(node("tls-a", true), pki.client(None)).await;
    let b = browserd::harness::Server::start_tls(node("tls-b", true), pki.client(None)).await;
    let c = browserd::harness::Server::start_tls(node("tls-c", false), pki.client(None)).await;

    let session = create_on(&mut a.client.clone(), pb::CreateSessionRequest::default()).await;
    assert_eq!(session.node_id, "tls-a");
    let release = pb::ReleaseSessionRequest {
        session_id: session.id.clone(),
    };
    // C checks A's certificate against the system's roots: refused.
    let refused = refusal(c.client.clone().release_session(release.clone()).await);
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("tls-a") && refused.message().contains("certificate"),
        "{refused:?}"
    );
    assert_eq!(
        status_of(&get_on(&mut a.client.clone(), &session.id).await),
        pb::SessionStatus::Live
    );
    // B trusts the cluster's CA: the release reaches A.
    let released = b
        .client
        .clone()
        .release_session(release)
        .await
        .expect("ReleaseSession forwarded over TLS")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(status_of(&released), pb::SessionStatus::Released);
    for server in [c, b, a] {
        server.stop().await;
    }
    database.remove().await;
}
