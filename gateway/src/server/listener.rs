//! The accept loop under both listeners: hyper's HTTP/1.1 server with the
//! connection-level protections `axum::serve` does not expose, and a
//! graceful drain with a deadline.
//!
//! * `header_read_timeout`: a client that trickles its request head
//!   (slowloris) is disconnected instead of holding a connection forever;
//!   the same timer closes idle keep-alive connections.
//! * A request carrying both `Content-Length` and `Transfer-Encoding` is
//!   refused with `400` (RFC 9112 §6.3 allows it; such requests are the
//!   raw material of request smuggling). Hyper accepts them (it frames by
//!   `Transfer-Encoding` and drops `Content-Length` before the application
//!   sees the head), so the first head of each connection is looked at as
//!   it is read. Hyper closes the connection after any such request, so a
//!   later one on the same connection is framed safely either way.
//! * Request heads are held to [`header_limits`]: one header field at
//!   most 8 KiB, all of them at most 64 KiB, at most 100 fields, else `431`
//!   in problem+json naming the limit. Hyper's own bounds (twice the field
//!   count, its ~400 KiB read buffer) stay behind them as a backstop: past
//!   those hyper answers a bare `431` and closes.
//! * On shutdown the listener is closed at once (new connections are
//!   refused), idle connections are closed, and requests in flight get up
//!   to `drain` to finish before their connections are cut.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::{Layer, ServiceExt};

use super::header_limits::{self, HeaderLimits, HeaderLimitsLayer};
use crate::config::ServerLimits;
use crate::problem::{Problem, ProblemResponse};

/// Connection-level settings of a listener.
#[derive(Clone, Copy, Debug)]
pub struct ListenerOptions {
    /// A request head must arrive in full within this time.
    pub header_read_timeout: Duration,
    /// On shutdown, how long requests in flight may still take.
    pub drain: Duration,
    /// The size limits of a request head.
    pub headers: HeaderLimits,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions::from(&ServerLimits::default())
    }
}

impl From<&ServerLimits> for ListenerOptions {
    fn from(limits: &ServerLimits) -> Self {
        ListenerOptions {
            header_read_timeout: limits.header_read_timeout,
            drain: limits.drain,
            headers: HeaderLimits::default(),
        }
    }
}

/// How a listener's shutdown went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Connections still busy when the drain time ran out, cut off.
    pub cut_off: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ListenerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<Drained> {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_headers(options.headers.parser_max_fields());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let ambiguous = Arc::new(AtomicBool::new(false));
        let io = TokioIo::new(FirstHead::new(stream, ambiguous.clone()));
        let limited = HeaderLimitsLayer::new(options.headers).layer(router.clone());
        let service = connection_service(limited, remote, ambiguous);
        let connection = graceful.watch(http1.serve_connection(io, service));
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%remote, "connection ended with an error: {e}");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    // Closing the socket is what makes new connections fail fast.
    drop(listener);
    let busy = graceful.count();
    tracing::info!(
        connections = busy,
        drain_ms = options.drain.as_millis() as u64,
        "listener closed; draining connections"
    );
    let cut_off = match tokio::time::timeout(options.drain, graceful.shutdown()).await {
        Ok(()) => 0,
        Err(_) => {
            while connections.try_join_next().is_some() {}
            let left = connections.len();
            tracing::warn!(
                connections = left,
                "drain time ran out; cutting off the requests still in flight"
            );
            left
        }
    };
    connections.shutdown().await;
    Ok(Drained { cut_off })
}

/// The per-connection service: the router (behind the head limits), with
/// the client's address, and the ambiguous-length check on the
/// connection's first request.
fn connection_service(
    router: header_limits::HeaderLimited<Router>,
    remote: SocketAddr,
    ambiguous: Arc<AtomicBool>,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send + 'static,
> + Clone {
    let served = Arc::new(AtomicUsize::new(0));
    hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        let first = served.fetch_add(1, Ordering::AcqRel) == 0;
        let refuse = first && ambiguous.load(Ordering::Acquire);
        let router = router.clone();
        async move {
            if refuse {
                return Ok(ambiguous_length());
            }
            request.extensions_mut().insert(ConnectInfo(remote));
            router.oneshot(request.map(Body::new)).await
        }
    })
}

/// `400` for a head with both `Content-Length` and `Transfer-Encoding`.
fn ambiguous_length() -> Response {
    let mut response = ProblemResponse(Problem::new(
        400,
        "Bad Request",
        "the request has both Content-Length and Transfer-Encoding; its length is ambiguous \
         (RFC 9112 section 6.3), so it is refused",
    ))
    .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(
        crate::fallback::BACKEND_HEADER,
        HeaderValue::from_static("gateway"),
    );
    response
}

/// Accept errors: per-connection ones are ignored; others (out of file
/// descriptors) back off briefly instead of spinning.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept failed: {e}; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The most of a first head looked at; a longer one is hyper's to refuse.
const MAX_SNIFFED_HEAD: usize = 64 * 1024;

/// A TCP stream that notes, as hyper reads it, whether the connection's
/// first request head carries both `Content-Length` and
/// `Transfer-Encoding`. Bytes pass through unchanged.
struct FirstHead {
    stream: TcpStream,
    head: Vec<u8>,
    done: bool,
    ambiguous: Arc<AtomicBool>,
}

impl FirstHead {
    fn new(stream: TcpStream, ambiguous: Arc<AtomicBool>) -> Self {
        FirstHead {
            stream,
            head: Vec::new(),
            done: false,
            ambiguous,
        }
    }

    fn saw(&mut self, bytes: &[u8]) {
        let room = MAX_SNIFFED_HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let end = find(&self.head, b"\r\n\r\n").or_else(|| find(&self.head, b"\n\n"));
        if let Some(end) = end {
            if has_both_lengths(&self.head[..end]) {
                self.ambiguous.store(true, Ordering::Release);
            }
            self.done = true;
        } else if self.head.len() >= MAX_SNIFFED_HEAD {
            self.done = true;
        }
        if self.done {
            self.head = Vec::new();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether a request head (request line and header lines) has both a
/// `Content-Length` and a `Transfer-Encoding` header.
fn has_both_lengths(head: &[u8]) -> bool {
    let mut content_length = false;
    let mut transfer_encoding = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        content_length |= name.eq_ignore_ascii_case(b"content-length");
        transfer_encoding |= name.eq_ignore_ascii_case(b"transfer-encoding");
    }
    content_length && transfer_encoding
}

impl AsyncRead for FirstHead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if !this.done && matches!(polled, Poll::Ready(Ok(()))) {
            let new = buf.filled()[before..].to_vec();
            this.saw(&new);
        }
        polled
    }
}

impl AsyncWrite for FirstHead {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::has_both_lengths;

    #[test]
    fn both_length_headers_are_spotted_in_any_case_and_order() {
        assert!(has_both_lengths(
            b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
        ));
        assert!(has_both_lengths(
            b"POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 5"
        ));
        assert!(!has_both_lengths(b"POST /x HTTP/1.1\r\nContent-Length: 5"));
        assert!(!has_both_lengths(
            b"POST /content-length:1 HTTP/1.1\r\nTransfer-Encoding: chunked"
        ));
    }
}
