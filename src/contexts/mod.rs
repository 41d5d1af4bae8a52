//! Persistent contexts' browser state as bytes: what a browser's profile
//! holds of a logged-in user ([`snapshot`]: collected after a graceful
//! close, restored into a fresh profile before the next launch), and the
//! sealing that keeps those bytes secret and bound to their context at rest
//! ([`seal`]). Knows nothing of the database, sessions or leases, and
//! starts no browser: `browser` calls into it.

pub mod seal;
pub mod snapshot;

pub use seal::SealKey;
pub use snapshot::{BrowserState, SnapshotError, collect, open, restore_files, seal};
