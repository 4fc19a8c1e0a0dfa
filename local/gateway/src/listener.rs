//! The gateway's listener: accepted sockets keep a copy of the first request head they carry,
//! because API Gateway hands `$connect` and the authorizer the header names as the client
//! spelled them (`HeaderAuth1`, `x-api-key`), and the HTTP stack lowercases every name.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The longest request head kept: enough for any upgrade request API Gateway accepts.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Accepts TCP connections whose reads are copied until the first request head ends.
pub(crate) struct RecordingListener(pub(crate) TcpListener);

impl Listener for RecordingListener {
    type Io = Recorded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.0).await;
        // Small frames and responses must leave at once, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let recorded = Recorded {
            inner: stream,
            head: Arc::new(Mutex::new(Head::default())),
            recording: true,
        };
        (recorded, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[derive(Debug, Default)]
struct Head {
    bytes: Vec<u8>,
}

/// A socket whose first request head is kept.
pub(crate) struct Recorded {
    inner: TcpStream,
    head: Arc<Mutex<Head>>,
    /// Until the head is complete: every later read (a WebSocket's whole life) takes no lock.
    recording: bool,
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (true, Poll::Ready(Ok(()))) = (self.recording, &polled) {
            let mut head = self.head.lock().unwrap_or_else(PoisonError::into_inner);
            let room = MAX_HEAD_BYTES.saturating_sub(head.bytes.len());
            let read = &buf.filled()[before..];
            head.bytes.extend_from_slice(&read[..read.len().min(room)]);
            let complete = head.bytes.len() >= MAX_HEAD_BYTES
                || head.bytes.windows(4).any(|w| w == b"\r\n\r\n");
            drop(head);
            self.recording = !complete;
        }
        polled
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What a request handler knows of the client's connection: its address, and its first
/// request head as sent.
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    head: Arc<Mutex<Head>>,
}

impl Connected<IncomingStream<'_, RecordingListener>> for ClientInfo {
    fn connect_info(stream: IncomingStream<'_, RecordingListener>) -> Self {
        Self {
            peer: *stream.remote_addr(),
            head: stream.io().head.clone(),
        }
    }
}

impl ClientInfo {
    /// The header names of the first request, as the client spelled them, in its order.
    pub(crate) fn header_names(&self) -> Vec<String> {
        let head = self.head.lock().unwrap_or_else(PoisonError::into_inner);
        let text = String::from_utf8_lossy(&head.bytes);
        text.split("\r\n")
            .skip(1)
            .take_while(|line| !line.is_empty())
            .filter_map(|line| line.split_once(':'))
            .map(|(name, _)| name.trim().to_owned())
            .collect()
    }

    /// `name` (lowercase, as the HTTP stack holds it) as the client spelled it, if it did.
    pub(crate) fn spelling<'a>(names: &'a [String], name: &str) -> Option<&'a str> {
        names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(name))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_keep_their_spelling_and_stop_at_the_head() {
        let head = Head {
            bytes: b"GET /dev HTTP/1.1\r\nHost: x\r\nHeaderAuth1: a\r\nx-api-key: k\r\nsec-websocket-key: z\r\n\r\nBody: no\r\n".to_vec(),
        };
        let info = ClientInfo {
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            head: Arc::new(Mutex::new(head)),
        };
        let names = info.header_names();
        assert_eq!(
            names,
            ["Host", "HeaderAuth1", "x-api-key", "sec-websocket-key"]
        );
        assert_eq!(
            ClientInfo::spelling(&names, "headerauth1"),
            Some("HeaderAuth1")
        );
        assert_eq!(ClientInfo::spelling(&names, "body"), None);
    }
}
