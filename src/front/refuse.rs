//! The answers the front door gives on a connection hyper has not read a
//! request from (over the cap, a slow head, a head that is not HTTP), and
//! closing a connection so the client reads its answer first.

use std::io;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// How long a closing connection is drained after its response.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes drained from a closing connection.
const MAX_DRAINED: usize = 16 * 1024;

/// A complete response with a plain-text body, after which the connection
/// is closed. The only response not written by hyper: no request was read.
pub(super) fn text(status: StatusCode, body: &str) -> Vec<u8> {
    let body = format!("{body}\n");
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\ncache-control: no-store\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes()
}

/// Sends a final response within `within` and closes the connection (see
/// [`linger`]). Gives up at once when `stop` is cancelled.
pub(super) async fn respond_and_close(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    response: &[u8],
    within: Duration,
    stop: &CancellationToken,
) {
    let answer = async {
        tokio::time::timeout(within, async {
            stream.write_all(response).await?;
            stream.shutdown().await
        })
        .await
        .map_err(io::Error::from)??;
        linger(stream).await;
        Ok::<(), io::Error>(())
    };
    tokio::select! {
        _ = answer => {}
        () = stop.cancelled() => {}
    }
}

/// Reads (and discards) what the client still sends for a moment after its
/// answer, so closing with unread bytes (a body nobody read) does not
/// reset the connection before the client has read the answer.
pub(super) async fn linger(mut stream: impl AsyncRead + Unpin) {
    let mut sink = [0u8; 1024];
    let mut drained = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while drained < MAX_DRAINED {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), io::Error>(())
    })
    .await;
}
