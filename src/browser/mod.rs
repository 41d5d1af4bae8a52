//! Launching and removing Chromium. Owns browser processes, their profile
//! and temp directories and the one CDP pipe to each ([`pipe`]), which
//! browserd's own calls and every relayed client share; knows nothing of
//! sessions, statuses or the database. A persistent context's state goes
//! into a profile before its browser starts, and comes out of it after a
//! graceful close ([`Browser::save_state`]); what that state holds is
//! [`profile_state`]'s, and how it is sealed is `contexts`'.

#[cfg(feature = "test-support")]
pub mod cdp;
mod cdp_error;
mod handle;
pub mod jail;
mod launch;
mod netns;
mod options;
pub mod pipe;
pub mod process;
pub mod process_table;
pub mod profile_state;
mod sockets;
pub mod subids;
mod teardown;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::egress::{EgressProxy, Policy};

pub use cdp_error::CdpError;
pub use handle::{PageInfo, SaveError};
use jail::{Identity, Jail};
pub use launch::{LaunchError, find_chrome};
pub use netns::NetNs;
pub use options::LaunchOptions;
use pipe::Pipe;
use process::{Group, ProcessGroups};
pub use sockets::Sockets;
pub use teardown::{remove_leftover, temp_dir};

/// How long browserd waits for its own CDP calls (version, targets).
const CDP_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a browser's exit once its CDP socket has closed.
const EXIT_AFTER_CLOSE: Duration = Duration::from_millis(500);
/// How long a killed browser's process group may take to be reaped.
const KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Launcher {
    chrome: PathBuf,
    jail: Jail,
    launch_timeout: Duration,
    /// The largest CDP message carried either way.
    max_message_size: usize,
    groups: ProcessGroups,
    tracker: TaskTracker,
    /// Where browsers may connect; unless open, each gets a network
    /// namespace whose only way out is its egress proxy.
    egress: Arc<Policy>,
}

/// A running browser. Dropping it does not stop it: call [`Browser::destroy`].
pub struct Browser {
    group: Group,
    pipe: Pipe,
    version: String,
    user_data_dir: PathBuf,
    /// The uid the browser runs as, held until it is dropped.
    _identity: Option<Identity>,
    /// Everything it sends past its own namespace (walled), or through
    /// its authenticating proxy (open); stopped with the browser.
    egress: Option<EgressProxy>,
    /// Its network namespace, held while it lives.
    _netns: Option<NetNs>,
}
