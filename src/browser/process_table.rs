//! browserd's one reader of the OS process table (`/proc`), shared by
//! teardown, the reaper, the relay, the tests and the bench: a fix to how
//! a field is parsed is a fix everywhere. Besides processes it reads who
//! owns a local TCP socket (`/proc/net/tcp{,6}`), which is how the relay
//! tells a client of browserd's own user, and who holds one (a browser's
//! process, or not).
//!
//! It only reads. Whether to kill or reap what it finds is its callers'
//! decision, made on what it reports about each process.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z` (a zombie, exited and not yet reaped), …
    pub state: char,
    pub ppid: i32,
    /// The process group: a browser leads its own, and its helpers (the
    /// network service among them) stay in it.
    pub pgrp: i32,
    /// The executable's name, cut to 15 bytes by the kernel.
    pub comm: String,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

/// Every process id in the table.
pub fn pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// `None` once the process is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so
    // it ends at the last `)`.
    let (head, rest) = line.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are the 14th and 15th fields of the whole line.
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        comm,
        cpu_ticks: ticks(11)? + ticks(12)?,
    })
}

/// The command line's arguments; empty for a zombie or a kernel thread.
pub fn args(pid: i32) -> Vec<Vec<u8>> {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    cmdline
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Running processes with an argument that contains `dir`. Profile
/// directories are named by session UUID, so a match is that session's
/// browser or one of its helpers. (A zombie's command line is empty: it
/// never matches.)
pub fn mentioning(dir: &Path) -> Vec<i32> {
    let needle = dir.as_os_str().as_encoded_bytes();
    pids()
        .into_iter()
        .filter(|&pid| {
            args(pid)
                .iter()
                .any(|arg| arg.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Browser processes themselves, not their helpers (which carry
/// `--type=`) nor the jail around them (bwrap, whose command line ends
/// with the browser's), whose profile (`--user-data-dir`) starts with `dir`.
pub fn browser_mains(dir: &Path) -> BTreeSet<i32> {
    let prefix = format!("--user-data-dir={}", dir.display()).into_bytes();
    let mains: BTreeSet<i32> = pids()
        .into_iter()
        .filter(|&pid| {
            let args = args(pid);
            args.iter().any(|a| a.starts_with(&prefix))
                && !args.iter().any(|a| a.starts_with(b"--type="))
                && stat(pid).is_some_and(|s| s.comm != "bwrap")
        })
        .collect();
    // A child the browser has forked but not yet exec'd still shows the
    // browser's command line: it is no second browser.
    mains
        .iter()
        .copied()
        .filter(|&pid| !stat(pid).is_some_and(|s| mains.contains(&s.ppid)))
        .collect()
}

/// The uid each process runs as (its effective uid, the owner of its
/// `/proc` entry), for every process in the table.
pub fn uids() -> BTreeSet<u32> {
    use std::os::unix::fs::MetadataExt;
    pids()
        .into_iter()
        .filter_map(|pid| Some(std::fs::metadata(format!("/proc/{pid}")).ok()?.uid()))
        .collect()
}

/// User plus system CPU time of a process, all its threads.
pub fn cpu_time(pid: i32) -> Option<Duration> {
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = stat(pid)?.cpu_ticks;
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// A `kB` figure of one of a process's memory files, e.g. `("status",
/// "VmRSS")` or `("smaps_rollup", "Pss")`.
pub fn memory_kib(pid: i32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

/// The uid owning the TCP socket of this network namespace whose own
/// address is `local` and whose peer is `remote`: for a connection accepted
/// from a process on this host, `socket_owner(peer, own_address)` is the
/// uid that made the client's socket. `None` when no such socket is here
/// (a client on another host, or one gone meanwhile).
pub fn socket_owner(local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    tcp_socket(local, remote).map(|row| row.uid)
}

/// Whether a TCP socket is one of browserd's browsers', as far as
/// browserd can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A process of one of browserd's browsers holds it: a process of a
    /// group in `groups`, or of the pid namespace of one (a jailed
    /// browser's helpers, crash handlers that leave its group included).
    Browser,
    /// No browser's process holds it.
    Other,
    /// Not known: the socket is gone, or a browser's descriptors could not
    /// be read. Callers treat it as [`Holder::Browser`].
    Unknown,
}

/// Whose is the local end of the TCP connection from `peer` to `local`
/// (as the side that accepted it sees them): a browser's, when a process
/// of one of the browsers whose process groups are `groups` holds it. A
/// browser's processes are browserd's own (its uid, or ids in its user
/// namespace), so their descriptors are always readable to it; another
/// user's processes, which may not be, are no browser's. This reads every
/// browser process's descriptor table: callers ask once per connection,
/// and only when the answer grants something.
pub fn tcp_peer_holder(peer: SocketAddr, local: SocketAddr, groups: &[i32]) -> Holder {
    let Some(row) = tcp_socket(peer, local) else {
        return Holder::Unknown;
    };
    let link = format!("socket:[{}]", row.inode);
    let own_ns = std::fs::read_link("/proc/self/ns/pid").ok();
    let all = pids();
    let pid_ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let in_groups = |pid: i32| stat(pid).is_some_and(|s| groups.contains(&s.pgrp));
    // The pid namespaces the browsers' jails made.
    let jails: BTreeSet<_> = all
        .iter()
        .filter(|&&pid| in_groups(pid))
        .filter_map(|&pid| pid_ns(pid))
        .filter(|ns| Some(ns) != own_ns.as_ref())
        .collect();
    for pid in all {
        let browser = in_groups(pid) || pid_ns(pid).is_some_and(|ns| jails.contains(&ns));
        if !browser {
            continue;
        }
        match holds_checked(pid, &link) {
            Ok(true) => return Holder::Browser,
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return Holder::Unknown,
        }
    }
    Holder::Other
}

/// Whether `pid` has a descriptor linking to `link`; `NotFound` once the
/// process is gone, another error when its descriptors cannot be read.
fn holds_checked(pid: i32, link: &str) -> std::io::Result<bool> {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        if std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == link) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What browserd reads of a row of `/proc/net/tcp{,6}`.
struct TcpSocket {
    uid: u32,
    inode: u64,
}

/// The TCP socket whose own address is `local` and whose peer is `remote`.
fn tcp_socket(local: SocketAddr, remote: SocketAddr) -> Option<TcpSocket> {
    let wanted = (canonical(local), canonical(remote));
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .into_iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                let fields: Vec<&str> = line.split_whitespace().collect();
                let found = (
                    parse_socket_addr(fields.get(1)?)?,
                    parse_socket_addr(fields.get(2)?)?,
                );
                (found == wanted).then(|| {
                    Some(TcpSocket {
                        uid: fields.get(7)?.parse().ok()?,
                        inode: fields.get(9)?.parse().ok()?,
                    })
                })?
            })
        })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the address
/// as the kernel prints it, in 32-bit words of host byte order.
fn parse_socket_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(canonical(SocketAddr::new(ip, port)))
}

/// An IPv4 peer of an IPv6 socket shows as `::ffff:a.b.c.d` there and as
/// `a.b.c.d` in its own table.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_owner_of_a_local_connection() {
        for host in ["127.0.0.1", "[::1]"] {
            let listener = std::net::TcpListener::bind(format!("{host}:0")).expect("bind");
            let client = std::net::TcpStream::connect(listener.local_addr().expect("addr"))
                .expect("connect");
            let (_, peer) = listener.accept().expect("accept");
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            assert_eq!(
                socket_owner(peer, listener.local_addr().expect("addr")),
                Some(me)
            );
            assert_eq!(client.local_addr().expect("addr"), peer);
            let elsewhere = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), peer.port());
            assert_eq!(
                socket_owner(elsewhere, listener.local_addr().expect("addr")),
                None
            );
        }
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        assert!(pids().contains(&me));
        let stat = stat(me).expect("own stat");
        assert_eq!(stat.ppid, std::os::unix::process::parent_id() as i32);
        assert!(matches!(stat.state, 'R' | 'S'), "{stat:?}");
        assert!(!args(me).is_empty());
        assert!(memory_kib(me, "status", "VmRSS").is_some_and(|kib| kib > 0));
        assert!(cpu_time(me).is_some());
        // SAFETY: getpgrp has no preconditions.
        assert_eq!(stat.pgrp, unsafe { libc::getpgrp() });
    }

    #[test]
    fn finds_the_group_that_holds_a_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("address");
        let _client = std::net::TcpStream::connect(local).expect("connect");
        let (_accepted, peer) = listener.accept().expect("accept");
        // SAFETY: getpgrp has no preconditions.
        let mine = unsafe { libc::getpgrp() };
        assert_eq!(tcp_peer_holder(peer, local, &[mine]), Holder::Browser);
        // This process is in browserd's own pid namespace: of no group
        // named, it is no browser.
        assert_eq!(tcp_peer_holder(peer, local, &[mine + 1]), Holder::Other);
        assert_eq!(tcp_peer_holder(peer, local, &[]), Holder::Other);
        // A connection that does not exist is no one's known.
        let elsewhere = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), peer.port());
        assert_eq!(tcp_peer_holder(elsewhere, local, &[mine]), Holder::Unknown);
    }

    #[test]
    fn parses_the_kernels_socket_addresses() {
        let v4 = u32::from_ne_bytes([127, 0, 0, 1]);
        assert_eq!(
            parse_socket_addr(&format!("{v4:08X}:1F90")),
            Some("127.0.0.1:8080".parse().expect("literal"))
        );
        let mapped: String = [0u32, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), v4]
            .iter()
            .map(|w| format!("{w:08X}"))
            .collect();
        assert_eq!(
            parse_socket_addr(&format!("{mapped}:0050")),
            Some("127.0.0.1:80".parse().expect("literal"))
        );
        assert_eq!(parse_socket_addr("zz:1"), None);
    }
}
