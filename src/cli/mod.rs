//! `browserd sessions|contexts|projects|keys|nodes …`: a gRPC client of a running
//! browserd for operators and scripts. Tables for people by default; with
//! `--json`, one JSON document per result (one per line for `watch`), with
//! the field names and value formats of the protobuf JSON mapping that
//! grpcurl prints. Every command reaches the server through `connect`,
//! which adds the API key to each call. Only `keys create` with a data dir
//! or database URL skips the server (see `admin`), to make the first key.

use std::path::PathBuf;
use std::time::Duration;

mod admin;
mod command;
mod connect;
mod contexts;
mod format;
mod output;

use clap::{Args, Subcommand, ValueEnum};

use crate::pb;
use crate::pb::session_service_client::SessionServiceClient;
use crate::wire::proto::pb_duration;
pub use admin::{KeysArgs, NodesArgs, ProjectsArgs, keys, nodes, projects};
pub use command::{Cli, Command};
pub use connect::ClientArgs;
use connect::connect;
pub use contexts::{ContextsArgs, contexts};
use output::Output;

#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: SessionsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Start a session and print it (LIVE, with its connect URL).
    Create(CreateArgs),
    /// Print one session.
    Get { session_id: String },
    /// List sessions, newest first.
    List(ListArgs),
    /// Release one session (idempotent) and print it.
    Release { session_id: String },
    /// Release every PENDING or LIVE session matching --metadata.
    ReleaseAll {
        /// Only sessions with this label (repeatable: all must match).
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = label)]
        metadata: Vec<(String, String)>,
        /// Only this project's sessions (default: every project the key
        /// sees).
        #[arg(long)]
        project: Option<String>,
    },
    /// Set a session's total lifetime, counted from its creation.
    Extend {
        session_id: String,
        /// The new total timeout, e.g. `30m`.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Print a live session's open pages, with live view links (one for
    /// every page, one per page): URLs of browserd's web console that show
    /// the page as it changes, carry no API key, and stop working at their
    /// expiry, on RevokeLiveViewLink, or when the session ends.
    Live {
        session_id: String,
        /// Links that also forward mouse, wheel and keyboard input (default:
        /// view only).
        #[arg(long)]
        control: bool,
        /// How long the links work, e.g. `10m` (default, and at most: until
        /// the session expires).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Print lifecycle events as they happen, until interrupted.
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Hard lifetime, e.g. `10m` (default: the server's).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Release after this long with no CDP traffic from any client.
    #[arg(long, value_parser = humantime::parse_duration)]
    inactivity_timeout: Option<Duration>,
    /// Keep the session when its last CDP client disconnects.
    #[arg(long)]
    keep_alive: bool,
    /// A label (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = label)]
    metadata: Vec<(String, String)>,
    /// Every new page's viewport, e.g. `1920x1080`.
    #[arg(long, value_name = "WIDTHxHEIGHT", value_parser = viewport)]
    viewport: Option<pb::Viewport>,
    #[arg(long)]
    user_agent: Option<String>,
    /// `http://`, `https://`, `socks4://` or `socks5://` proxy for the browser.
    #[arg(long)]
    proxy_url: Option<String>,
    /// Retrying with the same key returns the first session.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Start from this context's saved state (see `browserd contexts`).
    #[arg(long, value_name = "CONTEXT_ID")]
    context: Option<String>,
    /// Save the session's state back to --context when it ends normally.
    #[arg(long, requires = "context")]
    persist: bool,
    /// Only destinations matching one of these (repeatable): an address,
    /// a CIDR range or a domain, with an optional :port. Narrows the
    /// server's egress policy; never widens it.
    #[arg(long = "egress-allow", value_name = "RULE")]
    egress_allow: Vec<String>,
    /// Never this destination (repeatable), written as for --egress-allow.
    #[arg(long = "egress-deny", value_name = "RULE")]
    egress_deny: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these statuses (repeatable).
    #[arg(long = "status", value_enum)]
    statuses: Vec<Status>,
    /// Only sessions with this label (repeatable: all must match).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = label)]
    metadata: Vec<(String, String)>,
    /// Sessions per request; every page is fetched.
    #[arg(long, default_value_t = 100)]
    page_size: i32,
    /// Only this project's sessions (default: every project the key sees).
    #[arg(long)]
    project: Option<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Replay stored events after this sequence first (0: from the start).
    #[arg(long)]
    after_sequence: Option<u64>,
    /// Only these sessions (repeatable).
    #[arg(long = "session")]
    session_ids: Vec<String>,
    /// Only events into these statuses (repeatable).
    #[arg(long = "status", value_enum)]
    statuses: Vec<Status>,
    /// Only sessions with this label (repeatable: all must match).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = label)]
    metadata: Vec<(String, String)>,
    /// Only this project's sessions (default: every project the key sees).
    #[arg(long)]
    project: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Status {
    Pending,
    Live,
    Released,
    Failed,
}

impl From<Status> for pb::SessionStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Pending => Self::Pending,
            Status::Live => Self::Live,
            Status::Released => Self::Released,
            Status::Failed => Self::Failed,
        }
    }
}

/// Why a client command failed; `main` prints it and exits nonzero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach browserd at {server}: {reason}")]
    Connect { server: String, reason: String },
    #[error("--server {server}: {reason}")]
    Server { server: String, reason: String },
    #[error("cannot read {flag} {path}: {source}")]
    ReadFile {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{:?}: {}{}", .0.code(), .0.message(), hint(.0))]
    Rpc(#[from] tonic::Status),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The key itself is never shown: it may be a real one with a typo.
    #[error(
        "--api-key (or BROWSERD_API_KEY) must be printable ASCII with no spaces, as browserd keys are (the value is not shown)"
    )]
    ApiKey,
    #[error(transparent)]
    Offline(#[from] crate::StartError),
    #[error("{0}")]
    Access(#[from] crate::domain::Error),
}

/// What to try after a refusal whose fix is on the command line.
fn hint(status: &tonic::Status) -> &'static str {
    match status.code() {
        tonic::Code::Unauthenticated => "\nhint: pass --api-key or set BROWSERD_API_KEY",
        _ => "",
    }
}

pub async fn run(args: SessionsArgs) -> Result<(), CliError> {
    let SessionsArgs { client, command } = args;
    let out = Output { json: client.json };
    let mut client = SessionServiceClient::new(connect(&client).await?);
    match command {
        SessionsCommand::Create(args) => {
            let request = pb::CreateSessionRequest {
                timeout: args.timeout.map(pb_duration),
                inactivity_timeout: args.inactivity_timeout.map(pb_duration),
                keep_alive: args.keep_alive,
                metadata: args.metadata.into_iter().collect(),
                viewport: args.viewport,
                user_agent: args.user_agent.unwrap_or_default(),
                proxy_url: args.proxy_url.unwrap_or_default(),
                idempotency_key: args.idempotency_key.unwrap_or_default(),
                context: args.context.map(|context_id| pb::SessionContext {
                    context_id,
                    persist: args.persist,
                }),
                egress: (!args.egress_allow.is_empty() || !args.egress_deny.is_empty()).then_some(
                    pb::EgressRules {
                        allow: args.egress_allow,
                        deny: args.egress_deny,
                    },
                ),
            };
            let session = client.create_session(request).await?.into_inner().session;
            out.session(session)
        }
        SessionsCommand::Get { session_id } => {
            let request = pb::GetSessionRequest { session_id };
            out.session(client.get_session(request).await?.into_inner().session)
        }
        SessionsCommand::List(args) => {
            let mut sessions = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = pb::ListSessionsRequest {
                    statuses: args
                        .statuses
                        .iter()
                        .map(|s| pb::SessionStatus::from(*s) as i32)
                        .collect(),
                    metadata: args.metadata.iter().cloned().collect(),
                    page_size: args.page_size,
                    page_token,
                    project: args.project.clone().unwrap_or_default(),
                };
                let page = client.list_sessions(request).await?.into_inner();
                sessions.extend(page.sessions);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            out.sessions(&sessions)
        }
        SessionsCommand::Release { session_id } => {
            let request = pb::ReleaseSessionRequest { session_id };
            out.session(client.release_session(request).await?.into_inner().session)
        }
        SessionsCommand::ReleaseAll { metadata, project } => {
            let request = pb::ReleaseAllSessionsRequest {
                metadata: metadata.into_iter().collect(),
                project: project.unwrap_or_default(),
            };
            let ids = client
                .release_all_sessions(request)
                .await?
                .into_inner()
                .released_ids;
            out.released(&ids)
        }
        SessionsCommand::Extend {
            session_id,
            timeout,
        } => {
            let request = pb::ExtendSessionRequest {
                session_id,
                timeout: Some(pb_duration(timeout)),
            };
            out.session(client.extend_session(request).await?.into_inner().session)
        }
        SessionsCommand::Live {
            session_id,
            control,
            ttl,
        } => {
            let request = pb::GetLiveDetailsRequest {
                session_id: session_id.clone(),
            };
            let details = client.get_live_details(request).await?.into_inner();
            let link = |target_id: String| pb::CreateLiveViewLinkRequest {
                session_id: session_id.clone(),
                target_id,
                control,
                ttl: ttl.map(pb_duration),
            };
            let all = client
                .create_live_view_link(link(String::new()))
                .await?
                .into_inner();
            let mut pages = Vec::new();
            for page in &details.pages {
                let made = client
                    .create_live_view_link(link(page.target_id.clone()))
                    .await?
                    .into_inner();
                pages.push(made);
            }
            out.live(&details, &all, &pages, control)
        }
        SessionsCommand::Watch(args) => {
            let request = pb::WatchSessionsRequest {
                session_ids: args.session_ids,
                statuses: args
                    .statuses
                    .into_iter()
                    .map(|s| pb::SessionStatus::from(s) as i32)
                    .collect(),
                metadata: args.metadata.into_iter().collect(),
                after_sequence: args.after_sequence,
                kinds: Vec::new(),
                project: args.project.unwrap_or_default(),
            };
            let mut events = client.watch_sessions(request).await?.into_inner();
            while let Some(response) = events.message().await? {
                if let Some(event) = response.event {
                    out.event(&event)?;
                }
            }
            Ok(())
        }
    }
}

fn label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn viewport(s: &str) -> Result<pb::Viewport, String> {
    let parse = || {
        let (w, h) = s.split_once(['x', 'X'])?;
        Some(pb::Viewport {
            width: w.trim().parse().ok()?,
            height: h.trim().parse().ok()?,
        })
    };
    parse().ok_or_else(|| format!("expected WIDTHxHEIGHT, e.g. 1280x720, got {s:?}"))
}
