//! The lifecycle engine: the only writer of session status.
//!
//! Handlers, timers, the CDP relay and the browser supervisor never change a
//! status themselves; they call the engine. Two mechanisms make "each
//! session ends exactly once, with exactly one event" hold under races:
//! - on this node, every session has a slot whose async mutex is held for
//!   the whole of a transition (including the browser's launch and its
//!   teardown), so a release racing a timeout or a crash runs strictly after
//!   it and finds the session ended;
//! - in the database, a transition is a compare-and-set on the status read
//!   in the same transaction, and its event is inserted in that transaction.
//!
//! Events are published after commit while `commit_order` is held, so live
//! subscribers see them in sequence order.
//!
//! One file per question:
//! - `engine`: the engine's state, its locks and the commit path;
//! - `create`: CreateSession, step by step;
//! - `supervise`: what ends a live session on its own, and ExtendSession;
//! - `ending`: release, release-all, shutdown, restart reconciliation;
//! - `contexts`: restoring a session's context and saving it back;
//! - `queries`: get, list, live details, WatchSessions;
//! - `pool`: the warm pool and its refill;
//! - `retention`: pruning of ended sessions and old events;
//! - `routes`: the relay's view of live sessions;
//! - `page_token`: ListSessions' page tokens;
//! - [`viewers`]: live view links (make, revoke, open) and the viewer
//!   events;
//! - [`model`], [`validate`], [`presence`], [`error`]: the domain types,
//!   request bounds, CDP client presence and the engine's errors.

mod contexts;
mod create;
mod ending;
mod engine;
pub mod error;
pub mod model;
pub(crate) mod page_token;
mod pool;
pub mod presence;
mod queries;
mod retention;
mod routes;
mod supervise;
pub(crate) mod validate;
pub mod viewers;

pub use create::CreateRequest;
pub(crate) use engine::now_ms;
pub use engine::{Engine, EngineConfig};
pub use error::{Error, Result};
pub use routes::Route;

/// ListSessions page size when the caller gives none, and the most it gets.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
pub const MAX_PAGE_SIZE: u64 = 1000;
