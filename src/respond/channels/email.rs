//! `email`: mail over SMTP, one thread per incident.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;

use super::{Deliver, Notification, Outcome, Sending};

/// SMTP settings from the `smtp` secret (`smtp://user:password@host:port`), and the
/// idle connections kept for the next mail.
///
/// Connections are made here rather than by lettre's transport so that they are
/// `TCP_NODELAY`: lettre writes a message and its terminating `.` in two writes, and with
/// Nagle's algorithm the second waits for the server's delayed ACK — 40 ms on every mail.
pub struct Smtp {
    host: String,
    port: u16,
    tls: SmtpTls,
    /// The certificate check for STARTTLS (lettre's parameters) and for implicit TLS.
    starttls: Option<TlsParameters>,
    tls_config: std::sync::Arc<rustls::ClientConfig>,
    credentials: Option<Credentials>,
    timeout: Duration,
    /// Idle connections with the time they went idle.
    idle: tokio::sync::Mutex<Vec<(AsyncSmtpConnection, std::time::Instant)>>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

/// How an SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq)]
enum SmtpTls {
    /// Plain text (`tls: "none"`; loopback relays and tests).
    None,
    /// STARTTLS after the greeting (the default; port 587).
    StartTls,
    /// TLS from the first byte (`tls: "tls"` or `smtps://`; port 465).
    Tls,
}

/// Idle SMTP connections kept per channel.
const SMTP_IDLE: usize = 4;

/// How long an idle SMTP connection is reused: servers drop idle clients after a while
/// (RFC 5321 asks for at least 5 minutes), and a connection that died silently would only
/// be noticed through the send timeout.
const SMTP_IDLE_FOR: Duration = Duration::from_secs(30);

impl Deliver for Smtp {
    fn name(&self) -> &'static str {
        "email"
    }

    fn destination(&self) -> String {
        self.to.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }

    fn describe(&self, n: &Notification) -> String {
        format!("email to {}: {} ({})", self.destination(), n.subject, n.transition)
    }

    fn send<'a>(&'a self, n: &'a Notification) -> Sending<'a> {
        Box::pin(send_email(self, n))
    }
}

/// Parses the SMTP secret and builds the transport. Errors never contain the password.
///
/// `ca` is a PEM bundle of the authorities that sign the server's certificate (an internal
/// CA); they replace the public web PKI roots for this server.
///
/// # Errors
/// When the URL, an address, the CA bundle or the TLS settings are invalid.
pub fn smtp(url: &str, tls: &str, from: &str, to: &[String], ca: Option<&[u8]>, timeout: Duration) -> Result<Smtp, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("the smtp secret is not a URL ({e}); expected smtp://user:password@host:port"))?;
    if !matches!(u.scheme(), "smtp" | "smtps") {
        return Err(format!("the smtp secret must start with smtp:// or smtps://, not {}://", u.scheme()));
    }
    // `[::1]` in a URL is `::1` to connect to.
    let host = u.host_str().ok_or("the smtp secret has no host")?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let tls = match if u.scheme() == "smtps" { "tls" } else { tls } {
        "none" => SmtpTls::None,
        "tls" => SmtpTls::Tls,
        _ => SmtpTls::StartTls,
    };
    let port = u.port().unwrap_or(match tls {
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
        SmtpTls::StartTls => 587,
    });
    let credentials =
        (!u.username().is_empty()).then(|| Credentials::new(percent_decode(u.username()), percent_decode(u.password().unwrap_or(""))));
    let from: Mailbox = from.parse().map_err(|e| format!("`from` is not an email address: {e}"))?;
    let to = to
        .iter()
        .map(|a| a.parse::<Mailbox>().map_err(|e| format!("`{a}` is not an email address: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if to.is_empty() {
        return Err("`to` names no recipient".into());
    }
    let authorities = match ca {
        None => None,
        Some(_) if tls == SmtpTls::None => return Err("`ca` is set but `tls` is \"none\": nothing would check it".into()),
        Some(pem) => Some(ca_certificates(pem)?),
    };
    let starttls = match (tls, &authorities) {
        (SmtpTls::StartTls, None) => Some(TlsParameters::new(host.clone()).map_err(|e| format!("TLS setup for {host}: {e}"))?),
        (SmtpTls::StartTls, Some(certs)) => {
            let mut b = TlsParameters::builder(host.clone()).certificate_store(lettre::transport::smtp::client::CertificateStore::None);
            for der in certs {
                b = b.add_root_certificate(
                    lettre::transport::smtp::client::Certificate::from_der(der.to_vec()).map_err(|e| format!("`ca`: {e}"))?,
                );
            }
            Some(b.build_rustls().map_err(|e| format!("TLS setup for {host}: {e}"))?)
        }
        _ => None,
    };
    if tls == SmtpTls::Tls {
        rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("TLS with `{host}`: {e}"))?;
    }
    let tls_config = tls_client_config(authorities.as_deref())?;
    Ok(Smtp { host, port, tls, starttls, tls_config, credentials, timeout, idle: tokio::sync::Mutex::new(Vec::new()), from, to })
}

/// The certificates of a PEM bundle; an error when it holds none.
fn ca_certificates(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`ca` is not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("`ca` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into());
    }
    Ok(certs)
}

/// A rustls client configuration trusting `authorities`, or the web PKI roots.
fn tls_client_config(
    authorities: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    static WEB_PKI: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let build = |roots: rustls::RootCertStore| {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        std::sync::Arc::new(config)
    };
    match authorities {
        None => Ok(WEB_PKI.get_or_init(|| build(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })).clone()),
        Some(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs {
                roots.add(c.clone()).map_err(|e| format!("`ca`: {e}"))?;
            }
            Ok(build(roots))
        }
    }
}

impl Smtp {
    /// A new connection: TCP with `TCP_NODELAY`, TLS as configured, EHLO, and
    /// authentication when the URL names a user.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| SmtpError::Io(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let hello = ClientId::default();
        let mut conn = match self.tls {
            SmtpTls::Tls => {
                let stream = SmtpsStream(tls_connect(&self.tls_config, &self.host, tcp).await?);
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello).await?
            }
            _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello).await?,
        };
        if let Some(params) = &self.starttls {
            if !conn.can_starttls() {
                return Err(SmtpError::Permanent(format!(
                    "{} does not offer STARTTLS (set `tls: \"none\"` for a plain-text relay)",
                    self.host
                )));
            }
            conn.starttls(params.clone(), &hello).await?;
        }
        if let Some(c) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], c).await?;
        }
        Ok(conn)
    }

    /// Sends one message on an idle connection (or a new one); a reused connection that
    /// turns out to be closed is replaced once.
    async fn send(
        &self,
        envelope: &lettre::address::Envelope,
        body: &[u8],
    ) -> Result<lettre::transport::smtp::response::Response, SmtpError> {
        let reused = {
            let mut idle = self.idle.lock().await;
            idle.retain(|(_, since)| since.elapsed() < SMTP_IDLE_FOR);
            idle.pop().map(|(c, _)| c)
        };
        let mut conn = match reused {
            Some(mut c) => match c.send(envelope, body).await {
                Ok(r) => {
                    self.keep(c).await;
                    return Ok(r);
                }
                Err(e) if e.is_permanent() => {
                    self.keep(c).await;
                    return Err(e.into());
                }
                Err(_) => {
                    c.abort().await;
                    self.connect().await?
                }
            },
            None => self.connect().await?,
        };
        let r = conn.send(envelope, body).await;
        match &r {
            Err(e) if !e.is_permanent() => conn.abort().await,
            _ => self.keep(conn).await,
        }
        Ok(r?)
    }

    async fn keep(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().await;
        if !conn.has_broken() && idle.len() < SMTP_IDLE {
            idle.push((conn, std::time::Instant::now()));
        }
    }
}

/// An SMTP failure, sorted by whether a retry can help.
enum SmtpError {
    Io(String),
    Permanent(String),
    Smtp(lettre::transport::smtp::Error),
}

impl From<lettre::transport::smtp::Error> for SmtpError {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        SmtpError::Smtp(e)
    }
}

/// A TLS stream lettre can drive (it takes any [`AsyncTokioStream`]).
///
/// [`AsyncTokioStream`]: lettre::transport::smtp::client::AsyncTokioStream
#[derive(Debug)]
struct SmtpsStream(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl tokio::io::AsyncRead for SmtpsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SmtpsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl lettre::transport::smtp::client::AsyncTokioStream for SmtpsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// Implicit TLS (`smtps://`) over a connected socket, checked against `config`'s roots.
async fn tls_connect(
    config: &std::sync::Arc<rustls::ClientConfig>,
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, SmtpError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| SmtpError::Permanent(format!("`{host}`: {e}")))?;
    tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(|e| {
        if bad_certificate(&e) {
            SmtpError::Permanent(format!("TLS with {host}: {e}"))
        } else {
            SmtpError::Io(format!("TLS with {host}: {e}"))
        }
    })
}

/// Whether `e` (or an error behind it) is a certificate the server will keep presenting:
/// not worth retrying.
fn bad_certificate(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        // An `io::Error`'s `source()` skips the error it wraps: look inside it too.
        let inner = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in [Some(err), inner].into_iter().flatten() {
            if let Some(r) = candidate.downcast_ref::<rustls::Error>() {
                if matches!(r, rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) {
                    return true;
                }
            }
        }
        cur = inner.and_then(|i| i.source()).or_else(|| err.source());
    }
    false
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Message-ID of an incident's transition: one thread per incident.
pub fn message_id(incident: &str, transition: &str) -> String {
    format!("<{incident}.{transition}@vigil>")
}

async fn send_email(smtp: &Smtp, n: &Notification) -> Outcome {
    let mut b =
        Message::builder().from(smtp.from.clone()).subject(n.subject.clone()).message_id(Some(message_id(&n.incident_id, &n.transition)));
    for to in &smtp.to {
        b = b.to(to.clone());
    }
    if n.transition != "firing" {
        let root = message_id(&n.incident_id, "firing");
        b = b.in_reply_to(root.clone()).references(root);
    }
    let html = format!("<html><body><h3>{}</h3><pre>{}</pre></body></html>", escape_html(&n.subject), escape_html(&n.body));
    let msg = match b.multipart(
        MultiPart::alternative()
            .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(n.body.clone()))
            .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html)),
    ) {
        Ok(m) => m,
        Err(e) => return Outcome::Fail(format!("cannot build the message: {e}")),
    };
    let envelope = msg.envelope().clone();
    let body = msg.formatted();
    match tokio::time::timeout(smtp.timeout, smtp.send(&envelope, &body)).await {
        Err(_) => Outcome::Retry(format!("SMTP: no answer from {}:{} within {} ms", smtp.host, smtp.port, smtp.timeout.as_millis())),
        Ok(Ok(r)) => Outcome::Sent(format!("SMTP {}", r.code())),
        Ok(Err(SmtpError::Io(e))) => Outcome::Retry(format!("SMTP: cannot reach {}:{}: {e}", smtp.host, smtp.port)),
        Ok(Err(SmtpError::Permanent(e))) => Outcome::Fail(format!("SMTP: {e}")),
        // A permanent reply, or a client-side refusal (no common authentication mechanism,
        // an address the server cannot take): a retry would fail the same way.
        Ok(Err(SmtpError::Smtp(e))) if e.is_permanent() || e.is_client() || bad_certificate(&e) => Outcome::Fail(format!("SMTP: {e}")),
        Ok(Err(SmtpError::Smtp(e))) => Outcome::Retry(format!("SMTP: {e}")),
    }
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_are_checked_without_echoing_passwords() {
        let e = smtp("smtp://u:hunter2@", "none", "a@b.c", &["x@y.z".into()], None, Duration::from_secs(1)).err().unwrap();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(smtp("http://h", "none", "a@b.c", &["x@y.z".into()], None, Duration::from_secs(1)).is_err());
        assert!(smtp("smtp://h:2525", "none", "not an address", &["x@y.z".into()], None, Duration::from_secs(1)).is_err());
        assert!(smtp("smtp://u:p%40ss@h:2525", "none", "a@b.c", &["x@y.z".into()], None, Duration::from_secs(1)).is_ok());
        assert_eq!(percent_decode("p%40ss"), "p@ss");
    }

    #[test]
    fn a_ca_bundle_must_hold_a_certificate_and_needs_tls() {
        let to = ["x@y.z".to_owned()];
        let e = smtp("smtp://h:2525", "starttls", "a@b.c", &to, Some(b"not a certificate"), Duration::from_secs(1)).err().unwrap();
        assert!(e.contains("no PEM certificate"), "{e}");
        let garbled = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let e = smtp("smtp://h:2525", "tls", "a@b.c", &to, Some(garbled), Duration::from_secs(1)).err().unwrap();
        assert!(e.contains("`ca`"), "{e}");
        let e = smtp("smtp://h:2525", "none", "a@b.c", &to, Some(b""), Duration::from_secs(1)).err().unwrap();
        assert!(e.contains("`tls` is \"none\""), "{e}");
    }
}
