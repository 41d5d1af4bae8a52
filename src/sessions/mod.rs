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
//! Events are not published by the engine: the event tail publishes what
//! every node committed, in sequence order ([`crate::events`]).
//!
//! In a cluster ([`crate::cluster`]) each session belongs to the node that
//! runs its browser; the engine acts only on its own, and says which node
//! owns any other (`Error::Elsewhere`) so the API forwards the call there.
//!
//! One file per question:
//! - `engine`: the engine's state, its locks and the commit path;
//! - `create`: CreateSession, step by step;
//! - `supervise`: what ends a live session on its own, and ExtendSession;
//! - `ending`: release, release-all, shutdown, restart reconciliation;
//! - `nodes`: this node in a cluster: its lease, takeovers of lost nodes,
//!   fencing, drain, placement;
//! - `contexts`: restoring a session's context and saving it back;
//! - `queries`: get, list, live details, WatchSessions;
//! - `pool`: the warm pool and its refill;
//! - `retention`: pruning of ended sessions and old events;
//! - `routes`: the relay's view of live sessions;
//! - [`viewers`]: live view links (make, revoke, open) and the viewer
//!   events;
//! - [`presence`]: CDP client presence.
//!
//! Its types, page tokens, request bounds and errors are the domain's
//! ([`crate::domain`]).

mod contexts;
mod create;
mod ending;
mod engine;
mod nodes;
mod pool;
pub mod presence;
mod queries;
mod retention;
mod routes;
mod supervise;
pub mod viewers;

pub use create::CreateRequest;
pub use engine::{Engine, EngineConfig};
pub use nodes::Target;
pub use routes::Route;
