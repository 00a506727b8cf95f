//! The listener: HTTP/1.1 (optionally over TLS) with the limits that keep it answering
//! under slow or abusive clients.
//!
//! - **Headers** must arrive within `header_timeout` (10 s), counted from the moment the
//!   connection waits for a request — so an idle keep-alive connection is closed after
//!   the same time, and a client trickling a header byte by byte cannot hold it longer.
//! - **A request** (reading its body and answering) must finish within `request_timeout`
//!   (30 s), else `408`; a body announced larger than its route takes is refused with `413`
//!   before it is read (see the handlers).
//! - **Connections** are capped (`max_connections`, 512, and never more than a third of
//!   the open-file limit, which is raised to its hard limit at start). At the cap a new
//!   connection evicts the oldest one that is not in the middle of a request (a slow
//!   client's half-sent header, an idle keep-alive): an attack that opens thousands of
//!   slow connections cannot keep `/healthz`, the API or a webhook from answering. When
//!   every connection is busy with a request, the new one gets a `503` and is closed.
//! - **Running out of file descriptors** while accepting is logged (once a minute) and
//!   retried after a short pause instead of spinning.
//! - **TLS** (`--tls-cert`, `--tls-key`, PEM) with rustls: the handshake is bounded by
//!   `header_timeout`; a changed certificate or key on disk is loaded for new connections
//!   (checked at most once a second); one that does not load is logged and the previous
//!   one kept.
//!
//! Counted in `/metrics`: `vigil_http_connections` (open) and
//! `vigil_http_connections_shed_total{reason="evicted"|"full"|"timeout"}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// In a request's extensions when the listener serves TLS.
#[derive(Clone, Copy, Debug)]
pub struct OverTls;

/// The listener's limits.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions { max_connections: 512, header_timeout: Duration::from_secs(10), request_timeout: Duration::from_secs(30) }
    }
}

/// Raises the soft open-file limit to the hard one; returns the soft limit in force.
pub fn raise_fd_limit() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Some(lim.rlim_max);
            }
        }
        Some(lim.rlim_cur)
    }
}

/// The connection cap actually used: the asked one, within a third of the fd limit.
pub fn effective_cap(asked: usize, fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(l) => asked.min((l / 3).max(16) as usize),
        None => asked,
    }
}

/// A certificate and key on disk, reloaded when they change.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<TlsState>,
}

struct TlsState {
    acceptor: tokio_rustls::TlsAcceptor,
    stamp: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

fn stamp(cert: &std::path::Path, key: &std::path::Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(cert), m(key))
}

fn load_tls(cert: &std::path::Path, key: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read the certificate `{}`: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{}` is not a PEM certificate chain: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read a PEM private key from `{}`: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

impl Tls {
    /// Loads the certificate chain and key (PEM).
    ///
    /// # Errors
    /// A file that cannot be read, holds no certificate or key, or a key that does not
    /// match.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Tls, String> {
        let acceptor = load_tls(&cert, &key)?;
        let stamp = stamp(&cert, &key);
        Ok(Tls { cert, key, state: Mutex::new(TlsState { acceptor, stamp, checked: Instant::now() }) })
    }

    /// The acceptor for a new connection, reloaded first when the files changed.
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.checked.elapsed() >= Duration::from_secs(1) {
            st.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now != st.stamp {
                st.stamp = now;
                match load_tls(&self.cert, &self.key) {
                    Ok(a) => {
                        st.acceptor = a;
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => tracing::error!(error = %e, "the changed TLS certificate does not load; keeping the previous one"),
                }
            }
        }
        st.acceptor.clone()
    }
}

/// One open connection, as the cap sees it.
struct Conn {
    opened: Instant,
    /// Requests being answered on it (0: waiting for headers, or idle).
    busy: usize,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Conns {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Conn>>,
}

impl Conns {
    fn set_busy(&self, id: u64, delta: isize) {
        if let Some(c) = self.open.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&id) {
            c.busy = c.busy.saturating_add_signed(delta);
        }
    }
}

/// Decrements a connection's busy count when a request's future ends (or is dropped).
struct BusyGuard(Arc<Conns>, u64);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.set_busy(self.1, -1);
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: ServeOptions,
    tls: Option<Arc<Tls>>,
    metrics: Arc<dyn Fn(Event) + Send + Sync>,
    shutdown: CancellationToken,
) {
    let conns = Arc::new(Conns::default());
    // Handlers that set cookies mark them `Secure` when the listener speaks TLS.
    let router = if tls.is_some() { router.layer(axum::Extension(OverTls)) } else { router };
    let mut last_fd_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE/ENFILE and the like: pause instead of spinning on the error.
                if last_fd_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(error = %e, open = conns.open.lock().map(|m| m.len()).unwrap_or(0), "cannot accept a connection; pausing");
                    last_fd_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let id = conns.next.fetch_add(1, Ordering::Relaxed);
        let cancel = shutdown.child_token();
        {
            let mut open = conns.open.lock().unwrap_or_else(|e| e.into_inner());
            if open.len() >= opts.max_connections {
                let victim = open.iter().filter(|(_, c)| c.busy == 0).min_by_key(|(_, c)| c.opened).map(|(id, _)| *id);
                match victim {
                    Some(v) => {
                        if let Some(c) = open.remove(&v) {
                            c.cancel.cancel();
                        }
                        metrics(Event::Shed("evicted"));
                    }
                    None => {
                        drop(open);
                        metrics(Event::Shed("full"));
                        tokio::spawn(refuse(stream));
                        continue;
                    }
                }
            }
            open.insert(id, Conn { opened: Instant::now(), busy: 0, cancel: cancel.clone() });
            metrics(Event::Open(open.len()));
        }
        let conns = conns.clone();
        let router = router.clone();
        let opts = opts.clone();
        let tls = tls.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            match tls {
                Some(tls) => match tokio::time::timeout(opts.header_timeout, tls.acceptor().accept(stream)).await {
                    Ok(Ok(s)) => serve_conn(s, id, router, &opts, &conns, &cancel, &metrics).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => {
                        metrics(Event::Shed("timeout"));
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                },
                None => serve_conn(stream, id, router, &opts, &conns, &cancel, &metrics).await,
            }
            let mut open = conns.open.lock().unwrap_or_else(|e| e.into_inner());
            open.remove(&id);
            metrics(Event::Open(open.len()));
        });
    }
}

pub use crate::runtime::metrics::HttpEvent as Event;

/// Answers `503` on a connection over the cap, without reading the request.
async fn refuse(mut stream: tokio::net::TcpStream) {
    let body = "too many connections; retry later\n";
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
    let _ = stream.shutdown().await;
}

async fn serve_conn<I>(
    io: I,
    id: u64,
    router: Router,
    opts: &ServeOptions,
    conns: &Arc<Conns>,
    cancel: &CancellationToken,
    metrics: &Arc<dyn Fn(Event) + Send + Sync>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request_timeout = opts.request_timeout;
    let conns2 = conns.clone();
    let metrics2 = metrics.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        conns2.set_busy(id, 1);
        let guard = BusyGuard(conns2.clone(), id);
        let router = router.clone();
        let metrics = metrics2.clone();
        async move {
            let _guard = guard;
            let req = req.map(axum::body::Body::new);
            match tokio::time::timeout(request_timeout, router.oneshot(req)).await {
                Ok(Ok(resp)) => Ok::<_, std::convert::Infallible>(resp),
                Ok(Err(never)) => match never {},
                Err(_) => {
                    metrics(Event::Shed("timeout"));
                    let mut resp = axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        format!("the request took longer than {} s\n", request_timeout.as_secs()),
                    ));
                    resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
                    Ok(resp)
                }
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(opts.header_timeout).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                if e.is_timeout() {
                    metrics(Event::Shed("timeout"));
                }
                tracing::debug!(error = %e, "connection closed");
            }
        }
        () = cancel.cancelled() => {
            // Evicted, or the engine stops: let a request in flight finish, briefly.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}
