//! The network wall around every browser. A jailed browser runs in a
//! network namespace of its own whose only way out is its egress proxy
//! ([`EgressProxy`]), which connects where the [`Policy`] allows:
//! public addresses by default, never browserd's host, its loopback or
//! its private network unless the operator says so, and never browserd's
//! own listeners. The namespace itself is the browser module's; this one
//! knows nothing of browsers or sessions, only of connections.

mod policy;
mod proxy;
mod upstream;
mod usage;

pub use policy::{Policy, Refusal, Verdict};
pub use proxy::{EgressProxy, PeerCheck, Placement};
pub use upstream::Upstream;
