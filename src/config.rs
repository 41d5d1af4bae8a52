//! `browserd serve`'s flags and `BROWSERD_*` environment, parsed and
//! checked once at start. Every flag has an environment twin; flags win.
//! The command line as a whole (`Cli`, `Command`) is the CLI module's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::domain::egress::Rule;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// gRPC address; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "BROWSERD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// CDP relay address that connect_url points at.
    #[arg(long, env = "BROWSERD_CDP_LISTEN", default_value = "127.0.0.1:50052")]
    pub cdp_listen: SocketAddr,
    /// Base of connect_url as clients must reach it (e.g. behind NAT or in
    /// a container): `ws://host:port` (`wss://` with TLS). Default: the
    /// relay's bound address, `wss://` when --tls-cert is given.
    #[arg(long, env = "BROWSERD_CDP_PUBLIC_URL")]
    pub cdp_public_url: Option<String>,
    /// Where browser profiles and the default SQLite database live.
    #[arg(long, env = "BROWSERD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The key that signs every connect_url's token: at least 32 bytes,
    /// the same file on every node of a cluster. Made (32 random bytes,
    /// mode 0600) on first start when missing. Default: `<data dir>/secret`.
    #[arg(long, env = "BROWSERD_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…`. Default: SQLite in the data dir.
    #[arg(long, env = "BROWSERD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Chrome or Chromium binary. Default: /usr/bin/chromium, then
    /// chromium, chromium-browser, google-chrome, chrome on PATH.
    #[arg(long, env = "BROWSERD_CHROME_PATH")]
    pub chrome_path: Option<PathBuf>,
    /// How browsers are kept from the host and from each other: `jail`
    /// runs each in a bubblewrap jail that sees only the system and its own
    /// profile, never as root; browserd refuses to start if it cannot make
    /// one. `none` runs them as plain children of browserd: every session's
    /// client can then read and write whatever browserd's user can.
    #[arg(long, env = "BROWSERD_ISOLATION", value_enum, default_value_t = Isolation::Jail)]
    pub isolation: Isolation,
    /// bubblewrap binary for `--isolation jail`. Default: `bwrap` on PATH.
    #[arg(long, env = "BROWSERD_BWRAP_PATH")]
    pub bwrap_path: Option<PathBuf>,
    /// Where browsers may connect. `public` (the default): each browser
    /// runs in a network namespace of its own whose only way out is
    /// browserd's egress proxy, which reaches public unicast addresses
    /// only: never loopback, the private ranges, link-local (cloud
    /// metadata), CGNAT, multicast or this host's own addresses, unless
    /// --egress-allow names them. `open`: browsers share the host's
    /// network, as any process of browserd's user does; logged as a
    /// warning.
    #[arg(long, env = "BROWSERD_EGRESS", value_enum, default_value_t = Egress::Public)]
    pub egress: Egress,
    /// A destination every session may reach although the policy refuses
    /// it: an address (`127.0.0.1:3000`, `[::1]:8080`), a CIDR range
    /// (`10.1.0.0/16`) or a domain and its subdomains (`intranet.example`),
    /// each with an optional port. Repeatable; comma-separated in the
    /// environment. browserd's own listeners stay closed to pages whatever
    /// it says.
    #[arg(long = "egress-allow", env = "BROWSERD_EGRESS_ALLOW", value_delimiter = ',', value_parser = parse_rule)]
    pub egress_allow: Vec<Rule>,
    /// A destination no session may reach, written as for --egress-allow;
    /// it wins over --egress-allow.
    #[arg(long = "egress-deny", env = "BROWSERD_EGRESS_DENY", value_delimiter = ',', value_parser = parse_rule)]
    pub egress_deny: Vec<Rule>,
    /// Most sessions with a browser at once (each idle browser takes about
    /// 150-400 MiB).
    #[arg(long, env = "BROWSERD_MAX_SESSIONS", default_value_t = 16)]
    pub max_sessions: usize,
    /// Session timeout when CreateSession gives none.
    #[arg(long, env = "BROWSERD_DEFAULT_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub default_timeout: Duration,
    /// Longest timeout a session may have or be extended to.
    #[arg(long, env = "BROWSERD_MAX_TIMEOUT", default_value = "24h", value_parser = humantime::parse_duration)]
    pub max_timeout: Duration,
    /// How long a browser may take to answer CDP before its session fails.
    #[arg(long, env = "BROWSERD_LAUNCH_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub launch_timeout: Duration,
    /// A session no CDP client has connected to within this time is
    /// released (END_REASON_INACTIVITY), as Browserbase does. 0 disables.
    #[arg(long, env = "BROWSERD_CONNECT_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Browsers kept launched and ready, so sessions with default options
    /// start without waiting for Chromium. They count against
    /// --max-sessions. 0 disables.
    #[arg(long, env = "BROWSERD_WARM_POOL", default_value_t = 2)]
    pub warm_pool: usize,
    /// Events a WatchSessions subscriber may fall behind before its stream
    /// ends with ABORTED (it resumes with after_sequence). Each buffered
    /// event is shared by all subscribers.
    #[arg(long, env = "BROWSERD_WATCH_BUFFER", default_value_t = 4096)]
    pub watch_buffer: usize,
    /// How long ended sessions and their events are kept; older history is
    /// pruned, and WatchSessions cannot resume from before it. 0: forever.
    #[arg(long, env = "BROWSERD_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// This node's name on the sessions it owns, unique in a cluster: a
    /// second process under the same name fences the first. Default: the
    /// host name.
    #[arg(long, env = "BROWSERD_NODE_ID")]
    pub node_id: Option<String>,
    /// The gRPC URL other nodes of a cluster reach this node at, to forward
    /// calls on its sessions (`http://host:port`, `https://` with TLS).
    /// Default: the gRPC listener's address, with the host name in place
    /// of an unspecified address (0.0.0.0).
    #[arg(long, env = "BROWSERD_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// How long a node's lease lasts without a heartbeat (renewed every
    /// quarter of it). Once it lapses, another node takes the node over and
    /// ends its sessions with END_REASON_NODE_LOST: a shorter lease finds a
    /// lost node sooner, and judges a stalled one lost sooner.
    #[arg(long, env = "BROWSERD_LEASE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// On SIGTERM or SIGINT, how long to stop taking sessions and let this
    /// node's sessions end on their own before releasing the rest
    /// (END_REASON_SHUTDOWN). 0: release them at once.
    #[arg(long, env = "BROWSERD_DRAIN_TIMEOUT", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// PEM CA certificate(s) that other nodes' gRPC certificates chain to,
    /// for forwarding to `https://` nodes; default: the system's roots.
    /// With --tls-client-ca, this node presents --tls-cert to them.
    #[arg(long, env = "BROWSERD_CLUSTER_CA_CERT")]
    pub cluster_ca_cert: Option<PathBuf>,
    /// Largest WebSocket message (and frame) the CDP relay accepts from a
    /// client or a browser, in bytes (`KiB`, `MiB`, `GiB` suffixes work). A
    /// base64 full-page screenshot of a tall page plus a 20 MB evaluate
    /// result must fit; a client that announces more is closed with 1009.
    #[arg(long, env = "BROWSERD_CDP_MAX_MESSAGE_SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub cdp_max_message_size: usize,
    /// How long a relay client has to send a complete HTTP request head
    /// (WebSocket handshake or discovery request) before it is dropped.
    #[arg(long, env = "BROWSERD_CDP_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub cdp_handshake_timeout: Duration,
    /// Most relay connections open at once, handshakes included; more are
    /// answered 503. Each relayed client holds two descriptors.
    #[arg(long, env = "BROWSERD_CDP_MAX_CONNECTIONS", default_value_t = 512)]
    pub cdp_max_connections: usize,
    /// Most relay connections to one session at once; more are answered 429.
    #[arg(
        long,
        env = "BROWSERD_CDP_MAX_CONNECTIONS_PER_SESSION",
        default_value_t = 32
    )]
    pub cdp_max_connections_per_session: usize,
    /// Whether a relay client on this host whose socket belongs to
    /// browserd's own user may upload and download by host path (browserd
    /// copies the files in and out for it: such a client can read and write
    /// everything browserd can anyway). Every other client sends contents.
    /// Turn off when a proxy running as browserd's user forwards remote
    /// clients to the relay: they would look local.
    #[arg(long, env = "BROWSERD_CDP_OWN_USER_PATHS", default_value_t = true, action = clap::ArgAction::Set)]
    pub cdp_own_user_paths: bool,
    /// `keys`: every call needs an API key, except on a loopback address
    /// while no key exists yet (the server then runs open and says so); a
    /// non-loopback address with no key refuses to start. `none`: calls
    /// without a key are the default project's admin, wherever browserd
    /// listens.
    #[arg(long, env = "BROWSERD_AUTH", value_enum, default_value_t = Auth::Keys)]
    pub auth: Auth,
    /// Largest browser state a session may save to its context, compressed
    /// and encrypted (`KiB`, `MiB`, `GiB`). A bigger save fails
    /// (EVENT_KIND_CONTEXT_SAVE_FAILED) and the context keeps its version.
    #[arg(long, env = "BROWSERD_CONTEXT_MAX_SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub context_max_size: usize,
    /// PEM certificate chain (leaf first): serves gRPC over TLS and the
    /// relay as `wss://`/`https://`. Needs --tls-key.
    #[arg(long, env = "BROWSERD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "BROWSERD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: gRPC clients must present a certificate signed
    /// by one (mutual TLS). The relay does not ask for one: its clients
    /// (Playwright, Puppeteer) cannot easily present one, and each
    /// connect_url carries its own signed token. Needs --tls-cert.
    #[arg(long, env = "BROWSERD_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

/// `--auth`: see [`Config::auth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Auth {
    Keys,
    None,
}

/// `--egress`: see [`Config::egress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Egress {
    Public,
    Open,
}

fn parse_rule(text: &str) -> Result<Rule, String> {
    Rule::parse(text).map_err(|why| format!("{text:?} {why}"))
}

/// `--isolation`: see [`Config::isolation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    Jail,
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--max-sessions must be at least 1")]
    NoSessions,
    #[error("--default-timeout ({default}) must be positive and at most --max-timeout ({max})")]
    DefaultTimeout { default: String, max: String },
    #[error("--launch-timeout must be positive")]
    LaunchTimeout,
    #[error("--watch-buffer must be at least 1")]
    NoWatchBuffer,
    #[error("--cdp-max-message-size must be at least 64KiB")]
    CdpMessageSize,
    #[error("--cdp-handshake-timeout must be positive")]
    CdpHandshakeTimeout,
    #[error(
        "--cdp-max-connections and --cdp-max-connections-per-session must be at least 1, and the per-session cap at most the total"
    )]
    CdpConnections,
    #[error("--tls-cert and --tls-key go together: give both or neither")]
    TlsPair,
    #[error("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS first")]
    TlsClientCa,
    #[error("--lease must be at least 1s: it is renewed every quarter of it")]
    Lease,
    #[error("--advertise-url {0:?} must be an http:// or https:// URL")]
    AdvertiseUrl(String),
}

impl Config {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.max_sessions == 0 {
            return Err(ConfigError::NoSessions);
        }
        if self.default_timeout.is_zero() || self.default_timeout > self.max_timeout {
            return Err(ConfigError::DefaultTimeout {
                default: humantime::format_duration(self.default_timeout).to_string(),
                max: humantime::format_duration(self.max_timeout).to_string(),
            });
        }
        if self.launch_timeout.is_zero() {
            return Err(ConfigError::LaunchTimeout);
        }
        if self.watch_buffer == 0 {
            return Err(ConfigError::NoWatchBuffer);
        }
        if self.cdp_max_message_size < MIN_CDP_MESSAGE_SIZE {
            return Err(ConfigError::CdpMessageSize);
        }
        if self.cdp_handshake_timeout.is_zero() {
            return Err(ConfigError::CdpHandshakeTimeout);
        }
        if self.cdp_max_connections_per_session == 0
            || self.cdp_max_connections_per_session > self.cdp_max_connections
        {
            return Err(ConfigError::CdpConnections);
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::TlsPair);
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(ConfigError::TlsClientCa);
        }
        if self.lease < std::time::Duration::from_secs(1) {
            return Err(ConfigError::Lease);
        }
        if let Some(url) = &self.advertise_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::AdvertiseUrl(url.clone()));
        }
        Ok(())
    }

    /// The configured database, or SQLite at `<data dir>/browserd.db`.
    pub fn database_url(&self, data_dir: &std::path::Path) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| default_database_url(data_dir))
    }

    /// The configured secret file, or `<data dir>/secret`.
    pub fn secret_file(&self, data_dir: &std::path::Path) -> PathBuf {
        self.secret_file
            .clone()
            .unwrap_or_else(|| data_dir.join("secret"))
    }

    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(hostname)
    }

    /// `--advertise-url`, or the URL of `grpc`, the bound gRPC listener.
    pub fn advertise_url(&self, grpc: SocketAddr) -> String {
        if let Some(url) = &self.advertise_url {
            return url.trim_end_matches('/').to_owned();
        }
        let scheme = if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        if grpc.ip().is_unspecified() {
            format!("{scheme}://{}:{}", hostname(), grpc.port())
        } else {
            format!("{scheme}://{grpc}")
        }
    }
}

/// SQLite at `<data dir>/browserd.db`, where `serve` keeps its database
/// when given no --database-url.
pub fn default_database_url(data_dir: &std::path::Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("browserd.db").display()
    )
}

/// Below this, ordinary CDP answers (a page's DOM, a small screenshot) no
/// longer fit, and the relay would only break its clients.
const MIN_CDP_MESSAGE_SIZE: usize = 64 * 1024;

/// A byte count: `1048576`, `64KiB`, `256MiB`, `1GiB` (also `K`, `M`, `G`,
/// all binary multiples).
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        other => return Err(format!("unknown unit {other:?}: use KiB, MiB or GiB")),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 256MiB"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s} is too large"))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if rc == 0 && !name.is_empty() => name.to_owned(),
        _ => "local".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Config, ConfigError, parse_size};

    /// `serve`'s flags alone, as `browserd serve` takes them.
    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: Config,
    }

    fn serve(args: &[&str]) -> Config {
        let argv = ["browserd"].iter().chain(args);
        Serve::try_parse_from(argv).expect("flags parse").config
    }

    #[test]
    fn relay_limits_default_to_safe_values_and_are_checked() {
        let defaults = serve(&[]);
        assert!(defaults.check().is_ok());
        assert_eq!(defaults.cdp_max_message_size, 256 << 20);
        assert_eq!(defaults.cdp_handshake_timeout.as_secs(), 10);
        assert!(defaults.cdp_own_user_paths);
        assert!(!serve(&["--cdp-own-user-paths", "false"]).cdp_own_user_paths);
        for bad in [
            &["--cdp-max-message-size", "1KiB"][..],
            &["--cdp-handshake-timeout", "0s"],
            &["--cdp-max-connections", "0"],
            &[
                "--cdp-max-connections",
                "4",
                "--cdp-max-connections-per-session",
                "8",
            ],
        ] {
            assert!(
                matches!(
                    serve(bad).check(),
                    Err(ConfigError::CdpMessageSize
                        | ConfigError::CdpHandshakeTimeout
                        | ConfigError::CdpConnections)
                ),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn tls_files_come_as_a_pair_and_mutual_tls_needs_them() {
        assert!(
            serve(&["--tls-cert", "c.pem", "--tls-key", "k.pem"])
                .check()
                .is_ok()
        );
        let mutual = ["--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", "ca"];
        assert!(serve(&mutual).check().is_ok());
        for half in [&["--tls-cert", "c.pem"][..], &["--tls-key", "k.pem"]] {
            assert!(matches!(serve(half).check(), Err(ConfigError::TlsPair)));
        }
        assert!(matches!(
            serve(&["--tls-client-ca", "ca.pem"]).check(),
            Err(ConfigError::TlsClientCa)
        ));
    }

    #[test]
    fn sizes_take_binary_suffixes_and_refuse_the_rest() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        for bad in ["", "MiB", "12 parsecs", "-1", "1.5MiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
