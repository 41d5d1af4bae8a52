//! `browserd sessions …`: a gRPC client of a running browserd for
//! operators and scripts. Tables for people by default; with `--json`, one
//! JSON document per result (one per line for `watch`), with the field
//! names and value formats of the protobuf JSON mapping that grpcurl prints.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::api::convert::pb_duration;
use crate::pb;
use crate::pb::session_service_client::SessionServiceClient;

#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// browserd's gRPC address: `host:port` or an `http://` URL.
    #[arg(
        long,
        global = true,
        env = "BROWSERD_SERVER",
        default_value = "127.0.0.1:50051"
    )]
    pub server: String,
    /// Print JSON (protobuf JSON mapping) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
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
    },
    /// Set a session's total lifetime, counted from its creation.
    Extend {
        session_id: String,
        /// The new total timeout, e.g. `30m`.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Print a live session's open pages.
    Live { session_id: String },
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
    #[error("cannot reach browserd at {server}: {source}")]
    Connect {
        server: String,
        source: tonic::transport::Error,
    },
    #[error("{:?}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

pub async fn run(args: SessionsArgs) -> Result<(), CliError> {
    let SessionsArgs {
        server,
        json,
        command,
    } = args;
    let endpoint = if server.contains("://") {
        server.clone()
    } else {
        format!("http://{server}")
    };
    let channel = Channel::from_shared(endpoint)
        .map_err(|e| CliError::Rpc(tonic::Status::invalid_argument(format!("--server: {e}"))))?
        .connect()
        .await
        .map_err(|source| CliError::Connect { server, source })?;
    let mut client = SessionServiceClient::new(channel);
    let out = Output { json };
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
        SessionsCommand::ReleaseAll { metadata } => {
            let request = pb::ReleaseAllSessionsRequest {
                metadata: metadata.into_iter().collect(),
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
        SessionsCommand::Live { session_id } => {
            let request = pb::GetLiveDetailsRequest { session_id };
            out.live(&client.get_live_details(request).await?.into_inner())
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

struct Output {
    json: bool,
}

impl Output {
    fn session(&self, session: Option<pb::Session>) -> Result<(), CliError> {
        let session = session.unwrap_or_default();
        if self.json {
            return print(&session_json(&session).to_string());
        }
        let pad = |label: &str| format!("{label:<16}");
        let mut text = String::new();
        let mut row = |label: &str, value: String| {
            let _ = writeln!(text, "{}{value}", pad(label));
        };
        row("id", session.id.clone());
        row("status", status_name(session.status));
        if session.end_reason != 0 {
            row("end reason", reason_name(session.end_reason));
        }
        if !session.error.is_empty() {
            row("error", session.error.clone());
        }
        row("created", time(session.created_at.as_ref()));
        row("started", time(session.started_at.as_ref()));
        row("expires", time(session.expires_at.as_ref()));
        row("ended", time(session.ended_at.as_ref()));
        row("timeout", duration(session.timeout.as_ref()));
        if session.inactivity_timeout.is_some() {
            row("inactivity", duration(session.inactivity_timeout.as_ref()));
        }
        row(
            "keep alive",
            if session.keep_alive { "yes" } else { "no" }.into(),
        );
        row("usage", duration(session.usage.as_ref()));
        row("metadata", labels(&session.metadata));
        if let Some(pb::Viewport { width, height }) = session.viewport {
            row("viewport", format!("{width}x{height}"));
        }
        if !session.user_agent.is_empty() {
            row("user agent", session.user_agent.clone());
        }
        if !session.proxy_url.is_empty() {
            row("proxy", session.proxy_url.clone());
        }
        if !session.browser_version.is_empty() {
            row("browser", session.browser_version.clone());
        }
        if !session.connect_url.is_empty() {
            row("connect url", session.connect_url.clone());
        }
        print(text.trim_end())
    }

    fn sessions(&self, sessions: &[pb::Session]) -> Result<(), CliError> {
        if self.json {
            let all: Vec<Value> = sessions.iter().map(session_json).collect();
            return print(&json!({ "sessions": all }).to_string());
        }
        let rows = sessions.iter().map(|s| {
            vec![
                s.id.clone(),
                status_name(s.status),
                reason_name(s.end_reason),
                time(s.created_at.as_ref()),
                time(s.ended_at.as_ref().or(s.expires_at.as_ref())),
                labels(&s.metadata),
            ]
        });
        print(&table(
            &[
                "ID",
                "STATUS",
                "END REASON",
                "CREATED",
                "ENDS/ENDED",
                "METADATA",
            ],
            rows,
        ))
    }

    fn released(&self, ids: &[String]) -> Result<(), CliError> {
        if self.json {
            return print(&json!({ "releasedIds": ids }).to_string());
        }
        let mut text = format!("released {} session(s)", ids.len());
        for id in ids {
            text.push('\n');
            text.push_str(id);
        }
        print(&text)
    }

    fn live(&self, details: &pb::GetLiveDetailsResponse) -> Result<(), CliError> {
        if self.json {
            let pages: Vec<Value> = details
                .pages
                .iter()
                .map(|p| json!({ "targetId": p.target_id, "url": p.url, "title": p.title }))
                .collect();
            return print(
                &json!({ "pages": pages, "connectUrl": details.connect_url }).to_string(),
            );
        }
        let rows = details
            .pages
            .iter()
            .map(|p| vec![p.target_id.clone(), p.title.clone(), p.url.clone()]);
        let pages = table(&["TARGET", "TITLE", "URL"], rows);
        print(&format!("connect url  {}\n\n{pages}", details.connect_url))
    }

    fn event(&self, event: &pb::SessionEvent) -> Result<(), CliError> {
        if self.json {
            return print(&event_json(event).to_string());
        }
        let mut line = format!(
            "#{:<6} {}  {}  {} -> {}",
            event.sequence,
            time(event.occurred_at.as_ref()),
            event.session_id,
            status_name(event.from_status),
            status_name(event.to_status),
        );
        if event.end_reason != 0 {
            let _ = write!(line, " ({})", reason_name(event.end_reason));
        }
        print(&line)
    }
}

/// Writes a line to stdout, flushing it so `watch` output reaches pipes
/// as it happens. A closed pipe (`| head`) ends the command quietly.
fn print(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        done => Ok(done?),
    }
}

fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| (*h).to_owned()).collect())
        .chain(rows)
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.trim_end().to_owned()
}

fn session_json(s: &pb::Session) -> Value {
    json!({
        "id": s.id,
        "status": pb::SessionStatus::try_from(s.status).map_or("", |v| v.as_str_name()),
        "endReason": pb::EndReason::try_from(s.end_reason).map_or("", |v| v.as_str_name()),
        "error": s.error,
        "createdAt": s.created_at.as_ref().map(ToString::to_string),
        "startedAt": s.started_at.as_ref().map(ToString::to_string),
        "endedAt": s.ended_at.as_ref().map(ToString::to_string),
        "expiresAt": s.expires_at.as_ref().map(ToString::to_string),
        "timeout": s.timeout.as_ref().map(ToString::to_string),
        "inactivityTimeout": s.inactivity_timeout.as_ref().map(ToString::to_string),
        "keepAlive": s.keep_alive,
        "metadata": s.metadata,
        "viewport": s.viewport.as_ref().map(|v| json!({ "width": v.width, "height": v.height })),
        "userAgent": s.user_agent,
        "proxyUrl": s.proxy_url,
        "connectUrl": s.connect_url,
        "browserVersion": s.browser_version,
        "usage": s.usage.as_ref().map(ToString::to_string),
    })
}

fn event_json(e: &pb::SessionEvent) -> Value {
    json!({
        // uint64 is a string in the protobuf JSON mapping.
        "sequence": e.sequence.to_string(),
        "occurredAt": e.occurred_at.as_ref().map(ToString::to_string),
        "sessionId": e.session_id,
        "fromStatus": pb::SessionStatus::try_from(e.from_status).map_or("", |v| v.as_str_name()),
        "toStatus": pb::SessionStatus::try_from(e.to_status).map_or("", |v| v.as_str_name()),
        "endReason": pb::EndReason::try_from(e.end_reason).map_or("", |v| v.as_str_name()),
        "session": e.session.as_ref().map(session_json),
    })
}

fn status_name(status: i32) -> String {
    pb::SessionStatus::try_from(status).map_or_else(
        |_| status.to_string(),
        |s| {
            s.as_str_name()
                .trim_start_matches("SESSION_STATUS_")
                .to_owned()
        },
    )
}

fn reason_name(reason: i32) -> String {
    match pb::EndReason::try_from(reason) {
        Ok(pb::EndReason::Unspecified) => "-".to_owned(),
        Ok(r) => r.as_str_name().trim_start_matches("END_REASON_").to_owned(),
        Err(_) => reason.to_string(),
    }
}

fn time(at: Option<&prost_types::Timestamp>) -> String {
    at.map_or_else(|| "-".to_owned(), ToString::to_string)
}

fn duration(d: Option<&prost_types::Duration>) -> String {
    d.and_then(|d| Duration::try_from(*d).ok()).map_or_else(
        || "-".to_owned(),
        |d| humantime::format_duration(d).to_string(),
    )
}

fn labels(metadata: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    if pairs.is_empty() {
        "-".to_owned()
    } else {
        pairs.join(",")
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
