//! What bounds the listener's use of descriptors and log: the total
//! connection cap and the accept loop's backoff (the relay caps each
//! session's connections itself).
//!
//! Every client is untrusted, and each one holds at least one descriptor
//! (two once relayed): without these, idle connections exhaust the
//! process's descriptors and sessions can no longer start browsers.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts the listener's open connections against the total cap.
#[derive(Debug)]
pub struct Connections {
    /// Accepted connections not yet closed, handshakes included.
    open: AtomicUsize,
    max: usize,
}

/// One accepted connection, counted until dropped.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
}

impl Connections {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// A slot for a newly accepted connection, or `None` at the total cap.
    pub fn open(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                connections: self.clone(),
            })
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Descriptors browserd needs besides relay connections (database,
/// listeners, each browser's pipes), a rough allowance for the warning.
const RESERVED_DESCRIPTORS: libc::rlim_t = 128;

/// Raises this process's soft descriptor limit to its hard limit, as Go's
/// runtime does: the soft default (often 1024) is far below what a relay
/// capped at --cdp-max-connections needs. Returns the new soft limit.
pub fn raise_descriptor_limit() -> io::Result<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                ..limit
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(io::Error::last_os_error());
            }
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

/// Warns when the caps allow more descriptors than the process may open:
/// the caps then no longer keep sessions from starting.
pub fn check_descriptor_budget(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let needed = 2 * max_connections as libc::rlim_t + RESERVED_DESCRIPTORS;
    if limit.rlim_cur < needed {
        tracing::warn!(
            descriptor_limit = limit.rlim_cur,
            needed,
            "--cdp-max-connections allows more relay connections (two descriptors each) than \
             this process may open: lower it or raise `ulimit -n`"
        );
    }
}

/// First pause after a failed accept; it doubles up to [`MAX_PAUSE`], as
/// hyper's accept loop does. Without it, a process out of descriptors
/// spins on `accept` at full CPU.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// At most one warning per this interval, counting the failures between.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The accept loop's state between failures.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    pause: Duration,
    last_report: Option<Instant>,
    unreported: u64,
}

impl AcceptBackoff {
    pub fn succeeded(&mut self) {
        self.pause = Duration::ZERO;
    }

    /// Records a failed accept and returns how long to wait before the
    /// next, logging a bounded number of warnings.
    pub fn failed(&mut self, error: &io::Error) -> Duration {
        self.failed_at(error, Instant::now())
    }

    fn failed_at(&mut self, error: &io::Error, now: Instant) -> Duration {
        if is_connection_error(error) {
            // That connection is gone; the listener is fine.
            tracing::debug!(error = %error, "cdp relay: a connection failed before accept");
            return Duration::ZERO;
        }
        self.pause = (self.pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
        self.unreported += 1;
        if self
            .last_report
            .is_none_or(|at| now.duration_since(at) >= REPORT_EVERY)
        {
            tracing::warn!(
                error = %error,
                failures = self.unreported,
                pause_ms = self.pause.as_millis() as u64,
                "cdp relay: accept failed; backing off"
            );
            self.unreported = 0;
            self.last_report = Some(now);
        }
        self.pause
    }

    /// Failures not yet reported in a warning.
    #[cfg(test)]
    fn unreported(&self) -> u64 {
        self.unreported
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_cap_counts_open_connections() {
        let connections = Connections::new(2);
        let a = connections.open().expect("first");
        let _b = connections.open().expect("second");
        assert!(connections.open().is_none(), "the cap is 2");
        drop(a);
        assert!(
            connections.open().is_some(),
            "a closed connection frees a slot"
        );
    }

    #[test]
    fn accept_failures_back_off_and_are_reported_at_a_bounded_rate() {
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let start = Instant::now();
        let pauses: Vec<Duration> = (0..10).map(|_| backoff.failed_at(&emfile, start)).collect();
        assert_eq!(pauses[0], FIRST_PAUSE);
        assert_eq!(pauses[1], FIRST_PAUSE * 2);
        assert_eq!(*pauses.last().unwrap(), MAX_PAUSE);
        // The first failure was reported, the nine after it within the
        // interval were not.
        assert_eq!(backoff.unreported(), 9);
        backoff.failed_at(&emfile, start + REPORT_EVERY);
        assert_eq!(backoff.unreported(), 0, "reported with its count");
        backoff.succeeded();
        assert_eq!(
            backoff.failed_at(&emfile, start + REPORT_EVERY),
            FIRST_PAUSE
        );
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(backoff.failed(&aborted), Duration::ZERO);
    }
}
