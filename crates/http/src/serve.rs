//! The connection loop: HTTP/1.1 over TCP with the time limits a public server needs. A
//! client that never finishes its request headers is disconnected after
//! `header_read_timeout`; the body has its own limit (see `HttpConfig::body_timeout`).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// A connection that gives hyper's own error answers an OperationOutcome. When a request
/// cannot even be parsed (a URI or header section over hyper's limits, a malformed request
/// line), hyper answers by itself with an empty body and closes; no handler runs. Such a
/// response head — a 4xx or 5xx with `content-length: 0`, which the FHIR handler never
/// sends — is rewritten on its way out with an OperationOutcome body.
struct OutcomeOnBareErrors<T> {
    inner: T,
    /// A rewritten response being written: its bytes, how many went out, and the length of
    /// the original head to report as written once done.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<T> OutcomeOnBareErrors<T> {
    fn new(inner: T) -> Self {
        OutcomeOnBareErrors {
            inner,
            replacing: None,
        }
    }
}

/// The rewritten response for a bare error head, if `head` is one.
fn rewrite_bare_error(head: &[u8]) -> Option<Vec<u8>> {
    // Most writes are successes: look no further than the status's first digit.
    if !matches!(head.get(9), Some(b'4' | b'5')) {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let status_line = text.strip_prefix("HTTP/1.1 ")?.split("\r\n").next()?;
    let status: u16 = status_line.get(..3)?.parse().ok()?;
    let lower = text.to_ascii_lowercase();
    if status < 400
        || !lower.contains("\r\ncontent-length: 0\r\n")
        || lower.contains("content-type")
    {
        return None;
    }
    let (code, diagnostics) = match status {
        414 => ("too-long", "the request URL is too long"),
        431 => ("too-long", "the request headers are too large"),
        408 => ("timeout", "the request headers did not arrive in time"),
        _ => ("invalid", "the request could not be parsed as HTTP"),
    };
    let body = serde_json::json!({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": diagnostics}]})
    .to_string();
    Some(
        format!(
            "HTTP/1.1 {status_line}\r\ncontent-type: application/fhir+json;charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for OutcomeOnBareErrors<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> OutcomeOnBareErrors<T> {
    /// Writes out the rewritten response; `Ready(len)` of the original once all is out.
    fn poll_replacing(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        while let Some((bytes, done, original)) = &mut self.replacing {
            if *done == bytes.len() {
                let n = *original;
                self.replacing = None;
                return Poll::Ready(Ok(n));
            }
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => *done += n,
                other => return other,
            }
        }
        Poll::Ready(Ok(0))
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for OutcomeOnBareErrors<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.replacing.is_none() && buf.starts_with(b"HTTP/1.1 ") {
            if let Some(bytes) = rewrite_bare_error(buf) {
                self.replacing = Some((bytes, 0, buf.len()));
            }
        }
        if self.replacing.is_some() {
            return self.poll_replacing(cx);
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.replacing.is_none() {
            if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
                if first.starts_with(b"HTTP/1.1 ") {
                    if let Some(bytes) = rewrite_bare_error(first) {
                        self.replacing = Some((bytes, 0, first.len()));
                    }
                }
            }
        }
        if self.replacing.is_some() {
            return self.poll_replacing(cx);
        }
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite_bare_error;

    #[test]
    fn bare_error_heads_get_an_outcome_and_others_pass() {
        let bare = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let rewritten = String::from_utf8(rewrite_bare_error(bare).unwrap()).unwrap();
        assert!(rewritten.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(rewritten.contains("\"code\":\"too-long\""));
        let (head, body) = rewritten.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        // Our own answers carry a content type; successes and empty 204s are left alone.
        assert!(rewrite_bare_error(b"HTTP/1.1 404 Not Found\r\ncontent-type: application/fhir+json\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(
            rewrite_bare_error(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").is_none()
        );
        assert!(rewrite_bare_error(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").is_none());
    }
}

#[derive(Clone, Debug)]
pub struct ServeLimits {
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a clean shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then waits (up to the grace
/// period) for the connections in flight.
///
/// # Errors
/// Never for a single connection's failure (logged and dropped); only when the shutdown
/// grace period ends with connections still open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors, or a connection reset before accept: keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let connection =
            builder.serve_connection(TokioIo::new(OutcomeOnBareErrors::new(stream)), service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => Ok(()),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("shutdown grace period over with requests still running");
            Ok(())
        }
    }
}
