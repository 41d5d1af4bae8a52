//! What the engine does with a session's context: restore its latest
//! version before the browser launches, save the browser's state back when
//! a persisting session ends normally, and say why a context cannot be
//! used.

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use crate::browser::LaunchOptions;
use crate::domain::Error;
use crate::domain::session::{Actor, ContextId, Session, SessionId};
use crate::store::ContextBusy;

/// How long a persisting session's browser gets to close and hand over
/// its state; past it, the save fails and the context keeps its version.
const CONTEXT_SAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many bytes of state files a save reads per byte of
/// `--context-max-size`, before giving up (FileTooLarge).
const UNPACKED_PER_SEALED: usize = 4;

impl Engine {
    /// Puts the session's context's latest state into `options`, to be
    /// restored into the new profile; returns the version it is, which a
    /// persisting session saves after. Errors are the cause, for the
    /// session's record (LAUNCH_FAILED) and the caller.
    pub(super) async fn restore(
        &self,
        session: &Session,
        options: &mut LaunchOptions,
    ) -> Result<Option<u64>, String> {
        let Some(context) = session.context else {
            return Ok(None);
        };
        let snapshot = self
            .inner
            .store
            .snapshot(context.context_id)
            .await
            .map_err(|e| format!("cannot read context {}: {e}", context.context_id))?
            .ok_or_else(|| format!("context {} was deleted", context.context_id))?;
        if snapshot.version > 0 {
            let state = crate::contexts::snapshot::open(
                &snapshot.data,
                &self.inner.config.seal_key,
                &context.context_id.to_string(),
            )
            .map_err(|e| {
                format!(
                    "cannot open version {} of context {}: {e}",
                    snapshot.version, context.context_id
                )
            })?;
            options.restore = Some(Arc::new(state));
        }
        Ok(Some(snapshot.version))
    }

    /// Saves a normally ending session's browser state to its context as
    /// the version after `base`, or records why it could not (the context
    /// keeps its version). Its clients are gone and its supervision is
    /// stopped: the browser is closed here, gracefully, so its storage is
    /// flushed to disk before it is read.
    pub(super) async fn save_context(
        &self,
        id: SessionId,
        browser: &crate::browser::Browser,
        context: ContextId,
        base: u64,
        actor: &Actor,
    ) {
        let config = &self.inner.config;
        // Storage compresses (LevelDB less than a page's own data): the
        // files may take a few times the sealed limit, not more.
        let unpacked = config.context_max_size.saturating_mul(UNPACKED_PER_SEALED);
        let sealed = match browser.save_state(CONTEXT_SAVE_TIMEOUT, unpacked).await {
            Ok(state) => crate::contexts::snapshot::seal(
                &state,
                &config.seal_key,
                &context.to_string(),
                config.context_max_size,
            )
            .map(std::sync::Arc::new)
            .map_err(|e| e.to_string()),
            Err(crate::browser::SaveError::Collect(e))
                if e.kind() == std::io::ErrorKind::FileTooLarge =>
            {
                Err(format!(
                    "the browser state is over the limit of {} bytes (--context-max-size): its files alone take more than {unpacked} bytes",
                    config.context_max_size
                ))
            }
            Err(e) => Err(format!("cannot read the browser's state: {e}")),
        };
        let change = crate::store::Change::SaveContext {
            context_id: context,
            base,
            sealed,
            at: crate::domain::now_ms(),
            actor: actor.clone(),
        };
        if let Err(e) = self.commit(id, change).await {
            tracing::warn!(session.id = %id, context.id = %context, error = %e, "cannot store a context save; the context keeps its version");
        }
    }
}

pub(super) fn context_refusal(context: String, busy: ContextBusy) -> Error {
    match busy {
        ContextBusy::Missing => Error::UnknownResource {
            kind: crate::contexts::CONTEXT_RESOURCE,
            name: context,
        },
        ContextBusy::UsedBy(session) => Error::ContextBusy {
            context,
            session: session.to_string(),
            what: "it persists to it, and a context has one persisting session at a time; start without persist, or release that session first",
        },
    }
}
