//! A browser's own network namespace: a loopback interface and nothing
//! else, in which browserd holds one listening socket, its egress proxy.
//! A socket stays in the namespace it was made in, so browserd serves the
//! proxy from its own runtime while the browser, started inside the
//! namespace, has no route anywhere but that port: not the host's
//! loopback, not its network, not another session's namespace. What the
//! browser reaches beyond it is what the proxy's policy lets through.
//!
//! The namespace is made on a thread of its own that ends once the
//! listener exists (`unshare` moves only the calling thread), so no
//! thread of browserd's runtime ever runs in a browser's namespace.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The proxy's port inside every namespace: each is new and empty, so
/// one fixed port never collides.
pub const PROXY_PORT: u16 = 3128;

/// A browser's network namespace, held open while its browser lives.
pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// Makes a namespace with its loopback up and the proxy's listener
    /// bound in it (`127.0.0.1:PROXY_PORT`).
    pub async fn with_listener() -> io::Result<(NetNs, TcpListener)> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("browserd-netns".into())
            .spawn(move || {
                let _ = tx.send(make());
            })?;
        rx.await
            .map_err(|_| io::Error::other("the namespace thread died"))?
    }

    /// Whether namespaces can be made here at all (root, or root of
    /// browserd's own user namespace).
    pub async fn probe() -> io::Result<()> {
        Self::with_listener().await.map(drop)
    }

    /// The descriptor a child joins with `setns` before it execs.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

fn make() -> io::Result<(NetNs, TcpListener)> {
    // SAFETY: unshare on the calling thread, which exits after this.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    loopback_up()?;
    let path = c"/proc/thread-self/ns/net";
    // SAFETY: a valid C string; the result is checked.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just opened, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, PROXY_PORT)))?;
    listener.set_nonblocking(true)?;
    Ok((NetNs { fd }, listener))
}

/// `ip link set lo up`: a new namespace's loopback is down, and has no
/// 127.0.0.1 until it is up.
fn loopback_up() -> io::Result<()> {
    /// `struct ifreq` with its union read as `ifr_flags`.
    #[repr(C)]
    struct IfreqFlags {
        name: [libc::c_char; libc::IFNAMSIZ],
        flags: libc::c_short,
        _rest: [u8; 22],
    }
    // SAFETY: a datagram socket for the ioctl, closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just made, owned here.
    let socket = unsafe { OwnedFd::from_raw_fd(socket) };
    let mut request = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _rest: [0; 22],
    };
    for (to, from) in request.name.iter_mut().zip(b"lo") {
        *to = *from as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write an ifreq.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) != 0 {
            return Err(io::Error::last_os_error());
        }
        request.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Joins the namespace `fd` (in a child between fork and exec).
pub fn enter(fd: i32) -> io::Result<()> {
    // SAFETY: setns is async-signal-safe and changes only the caller.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
