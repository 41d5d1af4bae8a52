//! Who may do what: projects, API keys, and the caller of each RPC.
//!
//! Every session belongs to a project. A call carries an API key
//! (`authorization: Bearer browserd_…`), checked against the database on
//! every call, so a revocation holds at once on every node; the key makes
//! the call a [`Caller`]: its project, whether it is an admin key, and the
//! actor its changes are recorded under. A server running open (on
//! loopback while no key exists, or `--auth none`) also takes calls
//! without a key, as the default project's admin.
//!
//! This module decides who the caller is; the engine decides what that
//! caller may see (see [`Caller::sees`]).

pub mod keys;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::sessions::model::Actor;
use crate::sessions::{Error, Result, validate};
use crate::store::Store;

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

/// Whether calls without a key are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Never (keys existed at start).
    No,
    /// While no key exists (loopback, and none existed at start): checked
    /// in the database on such a call until one does, wherever and however
    /// it was made (this node, another, `browserd keys create`); from then
    /// on, never.
    UntilAKeyExists,
    /// Always (`--auth none`).
    Yes,
}

/// Checks callers' keys, and manages projects and keys.
pub struct Access {
    store: Store,
    open: Open,
    /// Set once a key has been seen to exist: calls without one are
    /// refused from then on, for good (a revoked last key does not reopen
    /// the server).
    keys_seen: AtomicBool,
}

impl Access {
    pub fn new(store: Store, open: Open) -> Arc<Self> {
        Arc::new(Self {
            store,
            open,
            keys_seen: AtomicBool::new(open == Open::No),
        })
    }

    /// Whether a call without a key is refused now.
    async fn key_required(&self) -> bool {
        match self.open {
            Open::No => true,
            Open::Yes => false,
            Open::UntilAKeyExists if self.keys_seen.load(Ordering::Relaxed) => true,
            Open::UntilAKeyExists => {
                // On a database error, the state last known: no key yet.
                let exists = self.store.any_api_key().await.unwrap_or(false);
                if exists && !self.keys_seen.swap(true, Ordering::Relaxed) {
                    tracing::warn!("an API key exists: from now on every call needs one");
                }
                exists
            }
        }
    }

    /// Whether this server runs open only until a key exists (it was
    /// started on loopback with none), rather than with `--auth none`.
    pub fn open_until_a_key_exists(&self) -> bool {
        self.open == Open::UntilAKeyExists
    }

    /// The caller of a request with `authorization` metadata `header`.
    pub async fn caller(&self, header: Option<&[u8]>) -> Result<Caller> {
        let Some(header) = header else {
            return if self.key_required().await {
                Err(Error::Unauthenticated(
                    "this server needs an API key: send metadata `authorization: Bearer browserd_…`"
                        .into(),
                ))
            } else {
                Ok(Caller::anonymous())
            };
        };
        let unknown = || Error::Unauthenticated("unknown or revoked API key".into());
        let key = std::str::from_utf8(header)
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Error::Unauthenticated("the authorization metadata must be `Bearer <key>`".into())
            })?;
        let presented = keys::Presented::parse(key.trim()).ok_or_else(unknown)?;
        let (record, hash) = self
            .store
            .api_key(presented.id)
            .await?
            .ok_or_else(unknown)?;
        if record.revoked_at.is_some() || !presented.matches(&hash) {
            return Err(unknown());
        }
        Ok(Caller {
            project: record.project,
            admin: record.admin,
            actor: Actor::Key(record.id),
        })
    }

    /// Refuses a caller that is not an admin.
    pub fn admin(caller: &Caller) -> Result<()> {
        if caller.admin {
            Ok(())
        } else {
            Err(Error::PermissionDenied(
                "managing projects and keys needs an admin key".into(),
            ))
        }
    }

    pub async fn create_project(&self, name: &str, max_sessions: u32) -> Result<Project> {
        create_project(&self.store, name, max_sessions).await
    }

    pub async fn projects(&self) -> Result<Vec<Project>> {
        Ok(self.store.projects().await?)
    }

    pub async fn update_project(&self, name: &str, max_sessions: u32) -> Result<Project> {
        let name = project_name("name", name)?;
        self.store
            .set_project_quota(&name, quota(max_sessions))
            .await?
            .ok_or_else(|| Error::UnknownResource {
                kind: PROJECT_RESOURCE,
                name,
            })
    }

    /// Creates a key (on a server open until a key exists, that closes
    /// it).
    pub async fn create_key(
        &self,
        project: &str,
        admin: bool,
        description: String,
    ) -> Result<(ApiKey, String)> {
        create_key(&self.store, project, admin, description).await
    }

    pub async fn keys(&self, project: &str) -> Result<Vec<ApiKey>> {
        let project = if project.is_empty() {
            None
        } else {
            Some(project_name("project", project)?)
        };
        Ok(self.store.api_keys(project.as_deref()).await?)
    }

    pub async fn revoke_key(&self, id: &str) -> Result<ApiKey> {
        if !keys::is_key_id(id) {
            return Err(Error::invalid("id", "an API key id is 16 hex digits"));
        }
        self.store
            .revoke_api_key(id, crate::sessions::now_ms())
            .await?
            .ok_or_else(|| Error::UnknownResource {
                kind: KEY_RESOURCE,
                name: id.to_owned(),
            })
    }
}

/// `google.rpc.ResourceInfo.resource_type` of a project and of a key.
pub const PROJECT_RESOURCE: &str = "browserd.v1.Project";
pub const KEY_RESOURCE: &str = "browserd.v1.ApiKey";

/// Creates a project (also used without a server, by `browserd keys
/// create`).
pub async fn create_project(store: &Store, name: &str, max_sessions: u32) -> Result<Project> {
    let name = project_name("name", name)?;
    store
        .create_project(&name, quota(max_sessions), crate::sessions::now_ms())
        .await?
        .ok_or(Error::AlreadyExists {
            kind: PROJECT_RESOURCE,
            name,
        })
}

/// Creates a key for an existing project: its record and the key, which
/// is shown once.
pub async fn create_key(
    store: &Store,
    project: &str,
    admin: bool,
    description: String,
) -> Result<(ApiKey, String)> {
    let project = project_name("project", project)?;
    let description = validate::text("description", description, DESCRIPTION_MAX_BYTES)?;
    let (id, key, hash) = keys::generate();
    let record = ApiKey {
        id,
        project,
        admin,
        description,
        created_at: crate::sessions::now_ms(),
        revoked_at: None,
    };
    if !store.insert_api_key(&record, &hash).await? {
        return Err(Error::UnknownResource {
            kind: PROJECT_RESOURCE,
            name: record.project,
        });
    }
    Ok((record, key))
}

fn quota(max_sessions: u32) -> Option<u32> {
    (max_sessions > 0).then_some(max_sessions)
}

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
                crate::sessions::error::untrusted(name)
            ),
        ))
    }
}
