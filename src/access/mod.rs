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

use crate::domain::access::{
    ApiKey, Caller, DESCRIPTION_MAX_BYTES, KEY_RESOURCE, PROJECT_RESOURCE, Project, project_name,
};
use crate::domain::session::Actor;
use crate::domain::{Error, Result, now_ms, validate};
use crate::store::Store;

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
            .revoke_api_key(id, now_ms())
            .await?
            .ok_or_else(|| Error::UnknownResource {
                kind: KEY_RESOURCE,
                name: id.to_owned(),
            })
    }
}

/// Creates a project (also used without a server, by `browserd keys
/// create`).
pub async fn create_project(store: &Store, name: &str, max_sessions: u32) -> Result<Project> {
    let name = project_name("name", name)?;
    store
        .create_project(&name, quota(max_sessions), now_ms())
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
        created_at: now_ms(),
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
