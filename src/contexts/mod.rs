//! Persistent contexts: browser state saved by one session and restored
//! into later ones. [`Contexts`] is ContextService's logic (scoped to the
//! caller's project, as sessions are); the browser state as bytes is
//! [`snapshot`] (one compressed, sealed blob) and [`seal`] (what keeps
//! those bytes secret and bound to their context at rest). The types are
//! the domain's ([`crate::domain::context`]); what a state holds, and
//! reading it out of a profile and back, is the browser's
//! ([`crate::browser::profile_state`]). The engine saves and restores;
//! this module starts no browser.

pub mod seal;
pub mod snapshot;

pub use seal::SealKey;
pub use snapshot::SnapshotError;

/// `google.rpc.ResourceInfo.resource_type` of a context.
pub const CONTEXT_RESOURCE: &str = "browserd.v1.Context";

use crate::domain::access::Caller;
use crate::domain::context::Context;
use crate::domain::page_token::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, opaque, unopaque};
use crate::domain::session::{ContextId, Metadata};
use crate::domain::{Error, Result, now_ms, validate};
use crate::store::{ContextBusy, Store};

/// Longest context name.
pub const NAME_MAX_BYTES: usize = 128;

/// ContextService's operations, scoped to the caller's project as
/// sessions are: another project's context is NOT_FOUND.
#[derive(Clone)]
pub struct Contexts {
    store: Store,
}

impl Contexts {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub async fn create(
        &self,
        caller: &Caller,
        name: String,
        metadata: Metadata,
    ) -> Result<Context> {
        let name = validate::text("name", name, NAME_MAX_BYTES)?
            .ok_or_else(|| Error::invalid("name", "required"))?;
        validate::metadata("metadata", &metadata)?;
        let now = now_ms();
        let context = Context {
            id: ContextId::new(),
            name,
            project: caller.project.clone(),
            metadata,
            created_at: now,
            updated_at: now,
            version: 0,
            size_bytes: 0,
            saved_by: None,
            writer: None,
            last_save_error: None,
        };
        self.store
            .create_context(&context)
            .await?
            .ok_or_else(|| Error::AlreadyExists {
                kind: CONTEXT_RESOURCE,
                name: context.name.clone(),
            })
    }

    pub async fn get(&self, caller: &Caller, id: ContextId) -> Result<Context> {
        match self.store.context(id).await? {
            Some(context) if caller.sees(&context.project) => Ok(context),
            _ => Err(not_found(id)),
        }
    }

    /// One page of the contexts the caller sees, by project and name, and
    /// the next page's token.
    pub async fn list(
        &self,
        caller: &Caller,
        metadata: Metadata,
        project: &str,
        page_size: u64,
        page_token: &str,
    ) -> Result<(Vec<Context>, String)> {
        validate::metadata("metadata", &metadata)?;
        let projects = caller.scope("project", project)?;
        let after = decode_token(page_token)?;
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let contexts = self
            .store
            .contexts(&projects, &metadata, limit, after)
            .await?;
        let next = match contexts.last() {
            Some(last) if contexts.len() as u64 == limit => encode_token(&last.project, &last.name),
            _ => String::new(),
        };
        Ok((contexts, next))
    }

    /// Deletes a context no PENDING or LIVE session uses.
    pub async fn delete(&self, caller: &Caller, id: ContextId) -> Result<()> {
        match self.store.delete_context(id, |p| caller.sees(p)).await? {
            Ok(()) => Ok(()),
            Err(ContextBusy::Missing) => Err(not_found(id)),
            Err(ContextBusy::UsedBy(session)) => Err(Error::ContextBusy {
                context: id.to_string(),
                session: session.to_string(),
                what: "a context in use cannot be deleted; release the session first",
            }),
        }
    }
}

fn not_found(id: ContextId) -> Error {
    Error::UnknownResource {
        kind: CONTEXT_RESOURCE,
        name: id.to_string(),
    }
}

/// Page tokens: hex of `v1:<project>\n<name>`, where the next page
/// starts after (a project name has no newline, a context name no
/// control character).
fn encode_token(project: &str, name: &str) -> String {
    opaque(&format!("v1:{project}\n{name}"))
}

fn decode_token(token: &str) -> Result<Option<(String, String)>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("page_token", "not a token this server issued");
    let text = unopaque(token).ok_or_else(invalid)?;
    let (project, name) = text
        .strip_prefix("v1:")
        .and_then(|rest| rest.split_once('\n'))
        .ok_or_else(invalid)?;
    Ok(Some((project.to_owned(), name.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_what_they_did_not_issue() {
        let token = encode_token("team-a", "login: shop");
        assert_eq!(
            decode_token(&token).expect("valid"),
            Some(("team-a".into(), "login: shop".into()))
        );
        assert_eq!(decode_token("").expect("first page"), None);
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        for bad in [
            "zz".into(),
            "abc".into(),
            hex("v2:a\nb"),
            hex("v1:no separator"),
        ] {
            assert!(decode_token(&bad).is_err(), "{bad}");
        }
    }
}
