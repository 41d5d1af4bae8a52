//! How `browserd sessions|contexts|projects|keys` prints results: tables and
//! key-value blocks for people, or the protobuf JSON mapping (as grpcurl
//! prints it, shaped by [`crate::wire::json`]) for scripts.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::CliError;
use super::format::{dash, duration, labels, quota, reason_name, size, status_name, time, yes_no};
use crate::pb;
use crate::wire::json::{
    context_json, event_json, key_json, node_json, project_json, session_json,
};

pub(super) struct Output {
    pub json: bool,
}

impl Output {
    pub fn session(&self, session: Option<pb::Session>) -> Result<(), CliError> {
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
        row("project", session.project.clone());
        row("node", dash(&session.node_id));
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
        if let Some(egress) = &session.egress {
            let rules = |verb: &str, list: &[String]| {
                (!list.is_empty()).then(|| format!("{verb} {}", list.join(", ")))
            };
            let said: Vec<String> = [rules("allow", &egress.allow), rules("deny", &egress.deny)]
                .into_iter()
                .flatten()
                .collect();
            row("egress", said.join("; "));
        }
        if let Some(usage) = &session.egress_usage {
            row(
                "traffic",
                format!(
                    "{} sent, {} received, {} requests, {} refused",
                    size(usage.bytes_sent),
                    size(usage.bytes_received),
                    usage.requests,
                    usage.refused
                ),
            );
        }
        if let Some(context) = &session.context {
            let persist = if context.persist { " (persist)" } else { "" };
            row("context", format!("{}{persist}", context.context_id));
        }
        if !session.connect_url.is_empty() {
            row("connect url", session.connect_url.clone());
        }
        print(text.trim_end())
    }

    pub fn sessions(&self, sessions: &[pb::Session]) -> Result<(), CliError> {
        if self.json {
            let all: Vec<Value> = sessions.iter().map(session_json).collect();
            return print(&json!({ "sessions": all }).to_string());
        }
        let rows = sessions.iter().map(|s| {
            vec![
                s.id.clone(),
                s.project.clone(),
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
                "PROJECT",
                "STATUS",
                "END REASON",
                "CREATED",
                "ENDS/ENDED",
                "METADATA",
            ],
            rows,
        ))
    }

    pub fn released(&self, ids: &[String]) -> Result<(), CliError> {
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

    /// A live session's pages and the live view links made for them:
    /// `all` shows every page, `pages[i]` page `details.pages[i]` alone.
    pub fn live(
        &self,
        details: &pb::GetLiveDetailsResponse,
        all: &pb::CreateLiveViewLinkResponse,
        pages: &[pb::CreateLiveViewLinkResponse],
        control: bool,
    ) -> Result<(), CliError> {
        if self.json {
            let link = |l: &pb::CreateLiveViewLinkResponse| {
                json!({
                    "url": l.url,
                    "linkId": l.link_id,
                    "expiresAt": l.expires_at.as_ref().map(ToString::to_string),
                    "control": control,
                })
            };
            let shown: Vec<Value> = details
                .pages
                .iter()
                .zip(pages)
                .map(|(p, l)| {
                    json!({ "targetId": p.target_id, "url": p.url, "title": p.title, "liveView": link(l) })
                })
                .collect();
            return print(
                &json!({ "pages": shown, "connectUrl": details.connect_url, "liveView": link(all) })
                    .to_string(),
            );
        }
        let rows = details
            .pages
            .iter()
            .zip(pages)
            .map(|(p, l)| vec![p.target_id.clone(), p.title.clone(), l.url.clone()]);
        let table = table(&["TARGET", "TITLE", "LIVE VIEW"], rows);
        let mode = if control { "control" } else { "view only" };
        print(&format!(
            "connect url  {}\nlive view    {}\n             every page, {mode}, until {} (link {}; revoke with RevokeLiveViewLink)\n\n{table}",
            details.connect_url,
            all.url,
            time(all.expires_at.as_ref()),
            all.link_id,
        ))
    }

    pub fn event(&self, event: &pb::SessionEvent) -> Result<(), CliError> {
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
        if event.kind == pb::EventKind::ViewerJoined as i32 {
            line.push_str(" (viewer joined)");
        }
        if event.kind == pb::EventKind::ViewerLeft as i32 {
            line.push_str(" (viewer left)");
        }
        if event.kind == pb::EventKind::Extended as i32 {
            let expires = event.session.as_ref().and_then(|s| s.expires_at.as_ref());
            let _ = write!(line, " (extended, expires {})", time(expires));
        }
        let save = event.context_save.clone().unwrap_or_default();
        if event.kind == pb::EventKind::ContextSaved as i32 {
            let _ = write!(
                line,
                " (context {} saved: version {}, {})",
                save.context_id,
                save.version,
                size(save.size_bytes),
            );
        }
        if event.kind == pb::EventKind::ContextSaveFailed as i32 {
            let _ = write!(
                line,
                " (context {} not saved, stays at version {}: {})",
                save.context_id, save.version, save.error,
            );
        }
        if event.end_reason != 0 {
            let _ = write!(line, " ({})", reason_name(event.end_reason));
        }
        if !event.actor.is_empty() {
            let _ = write!(line, " by {}", event.actor);
        }
        print(&line)
    }

    pub fn context(&self, context: Option<pb::Context>) -> Result<(), CliError> {
        let context = context.unwrap_or_default();
        if self.json {
            return print(&context_json(&context).to_string());
        }
        let mut rows = vec![
            ("id", context.id.clone()),
            ("name", context.name.clone()),
            ("project", context.project.clone()),
            ("metadata", labels(&context.metadata)),
            ("version", context.version.to_string()),
            ("size", size(context.size_bytes)),
            ("created", time(context.created_at.as_ref())),
            ("updated", time(context.updated_at.as_ref())),
            ("saved by", dash(&context.saved_by_session_id)),
            ("writer", dash(&context.writer_session_id)),
        ];
        if !context.last_save_error.is_empty() {
            rows.push(("last save error", context.last_save_error.clone()));
        }
        print(&block(&rows))
    }

    pub fn contexts(&self, contexts: &[pb::Context]) -> Result<(), CliError> {
        if self.json {
            let all: Vec<Value> = contexts.iter().map(context_json).collect();
            return print(&json!({ "contexts": all }).to_string());
        }
        let rows = contexts.iter().map(|c| {
            vec![
                c.id.clone(),
                c.name.clone(),
                c.project.clone(),
                c.version.to_string(),
                size(c.size_bytes),
                time(c.updated_at.as_ref()),
                dash(&c.writer_session_id),
            ]
        });
        print(&table(
            &[
                "ID", "NAME", "PROJECT", "VERSION", "SIZE", "UPDATED", "WRITER",
            ],
            rows,
        ))
    }

    /// DeleteContextResponse is empty: `{}` as grpcurl prints it.
    pub fn deleted_context(&self, id: &str) -> Result<(), CliError> {
        if self.json {
            return print("{}");
        }
        print(&format!("deleted context {id}"))
    }

    pub fn project(&self, project: Option<pb::Project>) -> Result<(), CliError> {
        let project = project.unwrap_or_default();
        if self.json {
            return print(&project_json(&project).to_string());
        }
        print(&block(&[
            ("name", project.name.clone()),
            ("max sessions", quota(project.max_sessions)),
            ("created", time(project.created_at.as_ref())),
        ]))
    }

    pub fn projects(&self, projects: &[pb::Project]) -> Result<(), CliError> {
        if self.json {
            let all: Vec<Value> = projects.iter().map(project_json).collect();
            return print(&json!({ "projects": all }).to_string());
        }
        let rows = projects.iter().map(|p| {
            vec![
                p.name.clone(),
                quota(p.max_sessions),
                time(p.created_at.as_ref()),
            ]
        });
        print(&table(&["NAME", "MAX SESSIONS", "CREATED"], rows))
    }

    pub fn nodes(&self, nodes: &[pb::Node]) -> Result<(), CliError> {
        if self.json {
            let all: Vec<Value> = nodes.iter().map(node_json).collect();
            return print(&json!({ "nodes": all }).to_string());
        }
        let rows = nodes.iter().map(|n| {
            let state = match (n.lost, n.draining) {
                (true, _) => "lost",
                (false, true) => "draining",
                (false, false) => "serving",
            };
            vec![
                n.id.clone(),
                n.grpc_url.clone(),
                format!("{}/{}", n.live_sessions, n.capacity),
                n.warm_browsers.to_string(),
                duration(n.lease_age.as_ref()),
                state.to_owned(),
            ]
        });
        print(&table(
            &["ID", "ADDRESS", "SESSIONS", "WARM", "LEASE AGE", "STATE"],
            rows,
        ))
    }

    /// A new key: the key alone on stdout, so `KEY=$(browserd keys create
    /// …)` captures it, and what it is on stderr.
    pub fn created_key(&self, created: &pb::CreateApiKeyResponse) -> Result<(), CliError> {
        let record = created.api_key.clone().unwrap_or_default();
        eprintln!(
            "created API key {} for project {} (admin: {}); shown once: store it now",
            record.id,
            record.project,
            yes_no(record.admin),
        );
        if self.json {
            let response = json!({ "apiKey": key_json(&record), "key": created.key });
            return print(&response.to_string());
        }
        print(&created.key)
    }

    pub fn key(&self, key: Option<pb::ApiKey>) -> Result<(), CliError> {
        let key = key.unwrap_or_default();
        if self.json {
            return print(&key_json(&key).to_string());
        }
        print(&block(&[
            ("id", key.id.clone()),
            ("project", key.project.clone()),
            ("admin", yes_no(key.admin)),
            ("description", dash(&key.description)),
            ("created", time(key.created_at.as_ref())),
            ("revoked", time(key.revoked_at.as_ref())),
        ]))
    }

    pub fn keys(&self, keys: &[pb::ApiKey]) -> Result<(), CliError> {
        if self.json {
            let all: Vec<Value> = keys.iter().map(key_json).collect();
            return print(&json!({ "apiKeys": all }).to_string());
        }
        let rows = keys.iter().map(|k| {
            vec![
                k.id.clone(),
                k.project.clone(),
                yes_no(k.admin),
                time(k.created_at.as_ref()),
                time(k.revoked_at.as_ref()),
                dash(&k.description),
            ]
        });
        print(&table(
            &[
                "ID",
                "PROJECT",
                "ADMIN",
                "CREATED",
                "REVOKED",
                "DESCRIPTION",
            ],
            rows,
        ))
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

/// Labelled lines, for one record.
fn block(rows: &[(&str, String)]) -> String {
    let mut text = String::new();
    for (label, value) in rows {
        let _ = writeln!(text, "{label:<16}{value}");
    }
    text.trim_end().to_owned()
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
