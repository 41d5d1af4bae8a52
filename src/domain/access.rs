//! Projects, API keys and callers as values: who a call's caller is,
//! what it may see, and the bounds on project names and key descriptions.
//! Checking a key against the database is `access`'s.

use std::time::SystemTime;

use super::error::{Error, Result, untrusted};
use super::session::Actor;

/// The project of sessions made without a key, and of those made before
/// projects existed. Created by the migration that introduced projects.
pub const DEFAULT_PROJECT: &str = "default";
/// Longest project name (a DNS label's).
const PROJECT_NAME_MAX: usize = 63;
/// Longest key description.
pub const DESCRIPTION_MAX_BYTES: usize = 256;

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub name: String,
    /// Most PENDING or LIVE sessions at once; `None`: no limit of its own.
    pub max_sessions: Option<u32>,
    pub created_at: SystemTime,
}

/// An API key's record; the key itself is never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub project: String,
    pub admin: bool,
    pub description: Option<String>,
    pub created_at: SystemTime,
    pub revoked_at: Option<SystemTime>,
}

/// Who is calling: decided once per RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The project its new sessions belong to.
    pub project: String,
    /// Sees and acts on every project, and may manage projects and keys.
    pub admin: bool,
    /// What its changes are recorded as.
    pub actor: Actor,
}

impl Caller {
    /// A call without a key on a server running open.
    pub fn anonymous() -> Self {
        Self {
            project: DEFAULT_PROJECT.to_owned(),
            admin: true,
            actor: Actor::Anonymous,
        }
    }

    /// Whether it may see (and act on) a session of `project`.
    pub fn sees(&self, project: &str) -> bool {
        self.admin || self.project == project
    }

    /// Whether it may connect to a session of `project`: connect URLs go
    /// to the session's own project only, admin keys included.
    pub fn owns(&self, project: &str) -> bool {
        self.project == project
    }

    /// The project filters a query runs with: the one asked for (if any)
    /// and, for a project key, its own. Two different names match nothing,
    /// which is what another project's name must get.
    pub fn scope(&self, field: &str, asked: &str) -> Result<Vec<String>> {
        let mut projects = Vec::new();
        if !asked.is_empty() {
            projects.push(project_name(field, asked)?);
        }
        if !self.admin {
            projects.push(self.project.clone());
        }
        Ok(projects)
    }
}

/// `google.rpc.ResourceInfo.resource_type` of a project and of a key.
pub const PROJECT_RESOURCE: &str = "browserd.v1.Project";
pub const KEY_RESOURCE: &str = "browserd.v1.ApiKey";

/// Checks a project name: 1 to 63 of `a-z`, `0-9`, `-`, starting and
/// ending with a letter or digit.
pub fn project_name(field: &str, name: &str) -> Result<String> {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let bytes = name.as_bytes();
    let ok = !name.is_empty()
        && name.len() <= PROJECT_NAME_MAX
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && edge(bytes.first())
        && edge(bytes.last());
    if ok {
        Ok(name.to_owned())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{:?} is not a project name: 1 to {PROJECT_NAME_MAX} lowercase letters, digits and hyphens, starting and ending with a letter or digit",
                untrusted(name)
            ),
        ))
    }
}
