//! A client's connection as hyper drives it. It carries the connection's
//! slot of the total cap, so the slot lasts as long as the socket does,
//! through an upgrade to WebSocket too; and it comes back to the front
//! door when hyper lets go of it without having upgraded it.
//!
//! Until a complete request head has been read, what hyper writes is
//! dropped: its own answers to a bad head or a slow one have no body,
//! and the front door answers those itself, on the stream it gets back.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::ClientStream;
use super::limits::Slot;

pub(super) struct Conn {
    stream: Option<ClientStream>,
    slot: Option<Slot>,
    head_read: Arc<AtomicBool>,
    back: Option<oneshot::Sender<(ClientStream, Slot)>>,
}

/// The stream and slot of a connection hyper has let go of.
pub(super) type Returned = oneshot::Receiver<(ClientStream, Slot)>;

impl Conn {
    /// `head_read` is set by the service hyper calls with a complete head.
    pub(super) fn new(
        stream: ClientStream,
        slot: Slot,
        head_read: Arc<AtomicBool>,
    ) -> (Self, Returned) {
        let (back, returned) = oneshot::channel();
        let conn = Self {
            stream: Some(stream),
            slot: Some(slot),
            head_read,
            back: Some(back),
        };
        (conn, returned)
    }

    fn stream(&mut self) -> Pin<&mut ClientStream> {
        Pin::new(self.stream.as_mut().expect("a connection's stream"))
    }

    fn writes(&self) -> bool {
        self.head_read.load(Ordering::Acquire)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let (Some(back), Some(stream), Some(slot)) =
            (self.back.take(), self.stream.take(), self.slot.take())
        {
            // Nobody waits once the connection was upgraded: the socket
            // and its slot end here.
            let _ = back.send((stream, slot));
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.writes() {
            return Poll::Ready(Ok(buf.len()));
        }
        this.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.writes() {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        this.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.writes() {
            // The front door still answers on this stream.
            return Poll::Ready(Ok(()));
        }
        this.stream().poll_shutdown(cx)
    }
}
