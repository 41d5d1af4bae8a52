//! The bytes on a browser's pipe: NUL-terminated messages each way, the
//! size limit on what it sends, and the descriptors a new browser gets.
//! Whose each message is, is [`super`]'s.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;

/// Bytes read from the browser at a time.
const READ_CHUNK: usize = 64 * 1024;
/// What is kept of a message over the size limit while the rest is
/// discarded: enough to find its `sessionId`, which Chromium writes last.
const OVERSIZED_TAIL: usize = 256;

pub(super) async fn write(
    mut to_browser: pipe::Sender,
    mut queued: mpsc::Receiver<Vec<u8>>,
    closed: CancellationToken,
) {
    loop {
        let mut message = tokio::select! {
            message = queued.recv() => match message {
                Some(message) => message,
                None => return,
            },
            () = closed.cancelled() => return,
        };
        message.push(0);
        if to_browser.write_all(&message).await.is_err() {
            return;
        }
    }
}

pub(super) async fn read(
    mut from_browser: pipe::Receiver,
    shared: Arc<Shared>,
    max_message_size: usize,
) {
    let mut buffer: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    // Set while the rest of an oversized message is skipped: its tail.
    let mut skipping: Option<Vec<u8>> = None;
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let read = match from_browser.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let mut data = &chunk[..read];
        while !data.is_empty() {
            let end = data.iter().position(|&b| b == 0);
            let (part, rest) = match end {
                Some(end) => (&data[..end], &data[end + 1..]),
                None => (data, &[][..]),
            };
            data = rest;
            if let Some(tail) = &mut skipping {
                tail.extend_from_slice(part);
                let keep = tail.len().saturating_sub(OVERSIZED_TAIL);
                tail.drain(..keep);
            } else if buffer.len() + part.len() > max_message_size {
                let mut tail = std::mem::take(&mut buffer);
                tail.extend_from_slice(part);
                let keep = tail.len().saturating_sub(OVERSIZED_TAIL);
                tail.drain(..keep);
                skipping = Some(tail);
            } else {
                buffer.extend_from_slice(part);
            }
            if end.is_none() {
                continue;
            }
            if let Some(tail) = skipping.take() {
                shared.dispatch_oversized(&tail).await;
                continue;
            }
            let message = std::mem::replace(&mut buffer, Vec::with_capacity(READ_CHUNK));
            match String::from_utf8(message) {
                Ok(text) => shared.dispatch(text).await,
                Err(_) => tracing::debug!("the browser sent a message that is not UTF-8"),
            }
        }
    }
    shared.close();
}

/// The browser's ends of a new pipe pair (its fd 3 reads, its fd 4 writes)
/// and browserd's.
pub struct Ends {
    pub browser_reads: OwnedFd,
    pub browser_writes: OwnedFd,
    pub to_browser: pipe::Sender,
    pub from_browser: pipe::Receiver,
}

impl Ends {
    pub fn new() -> std::io::Result<Self> {
        let (to_browser, browser_reader) = pipe::pipe()?;
        let (browser_writer, from_browser) = pipe::pipe()?;
        Ok(Self {
            browser_reads: browser_reader.into_blocking_fd()?,
            browser_writes: browser_writer.into_blocking_fd()?,
            to_browser,
            from_browser,
        })
    }
}
