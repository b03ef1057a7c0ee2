//! HTTP_GET and SSL_GET (keepalived/check/check_http.c, keepalived/check/check_ssl.c,
//! lib/html.c).
//!
//! Each url is fetched on its own connection, in order; the check passes when every
//! url passes. For one url:
//! - connect (and for SSL_GET, the TLS handshake) within connect_timeout;
//! - send `GET <path> HTTP/1.<0|1>\r\nUser-Agent: KeepAliveClient\r\n`, then
//!   `Connection: close\r\n` for "1.0C" and "1.1", then `Host: <host>\r\n\r\n`, cut at
//!   2047 bytes as keepalived's 2048-byte request buffer does;
//! - the Host is the url's virtualhost, else the checker's, the real server's, the
//!   virtual server's; without any, the connect address and port
//!   (`[v6addr]:port` for IPv6);
//! - read until the server closes the connection, each read within connect_timeout
//!   (keepalived times every step, not the whole exchange);
//! - the header ends at the first CRLFCRLF, which must come within the first 4095
//!   bytes; the status code is the 3 digits after the first space, which must be
//!   followed by a space (`HTTP/1.1 200\r\n` has no code for keepalived); it must be
//!   100-599 and in the url's ranges (default 200-299);
//! - with a digest, the MD5 of the body bytes after the header, up to Content-Length
//!   when keepalived finds one (the first `Content-Length:`, case-sensitive, in the
//!   first buffer), must match.
//!
//! Bodies are not decoded: keepalived has no chunked decoding, so with HTTP/1.1 a
//! chunked body's digest covers the chunk framing, here too. A read error fails an
//! HTTP_GET; for SSL_GET any read error (an unclean close included) ends the stream
//! and what arrived is judged, as keepalived's `ssl_read_thread` does.
//!
//! SSL_GET does not verify the server certificate: keepalived never sets
//! SSL_VERIFY_PEER (check_ssl.c `build_ssl_ctx`), so any certificate is accepted; the
//! handshake signatures are still checked against the certificate's key. SNI (with
//! enable_sni) is the url's virtualhost, else the checker's, else the virtual
//! server's; a name rustls cannot send (an IP literal, an invalid DNS name) is left
//! out. rustls speaks TLS 1.2 and 1.3 only, where OpenSSL's TLS_method would also
//! accept older versions; keepalived's client certificate settings (the SSL block)
//! are not supported.
//!
//! Not copied: keepalived reads a body of any length; here the body is streamed
//! into MD5 and a response whose body passes 16 MiB fails, so that a server that
//! never stops sending cannot hold a probe.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use md5::{Digest, Md5};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::TlsConnector;

use super::{net, HttpProbe, HttpProtocol, Target, UrlSpec};

/// keepalived reads into a 4096-byte buffer kept NUL-terminated: the header must fit
/// in 4095 bytes (include/check_http.h `MAX_BUFFER_LENGTH`).
const HEADER_LIMIT: usize = 4095;
/// The request is formatted into 2048 bytes with snprintf (`GET_BUFFER_LENGTH`).
const REQUEST_LIMIT: usize = 2047;
/// The body size past which a response fails (not in keepalived, see the module note).
const BODY_LIMIT: u64 = 16 << 20;
const CONTENT_LENGTH: &[u8] = b"Content-Length:";

pub(super) async fn check(probe: &HttpProbe, target: &Target, tls: bool) -> Result<(), String> {
    for url in &probe.urls {
        check_url(probe, url, target, tls)
            .await
            .map_err(|reason| format!("url {}: {reason}", url.path))?;
    }
    Ok(())
}

async fn check_url(
    probe: &HttpProbe,
    url: &UrlSpec,
    target: &Target,
    tls: bool,
) -> Result<(), String> {
    let deadline = Instant::now() + target.connect_timeout;
    let stream = net::connect_tcp(target, target.connect_timeout).await?;
    let request = request(probe, url, target.address);
    if !tls {
        return exchange(stream, &request, url, target.connect_timeout, false).await;
    }
    let config = tls_config()?;
    let server_name = probe
        .enable_sni
        .then(|| sni_name(probe, url))
        .flatten()
        .and_then(|name| ServerName::try_from(name.to_owned()).ok())
        .filter(|name| matches!(name, ServerName::DnsName(_)))
        .unwrap_or_else(|| ServerName::IpAddress(target.address.ip().into()));
    let handshake = TlsConnector::from(config).connect(server_name, stream);
    let stream = match timeout_at(deadline, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(format!("SSL handshake/communication error: {e}")),
        Err(_) => return Err("timeout during the SSL handshake".to_owned()),
    };
    exchange(stream, &request, url, target.connect_timeout, true).await
}

/// The Host header's name: url > checker > real server > virtual server.
fn host_name<'a>(probe: &'a HttpProbe, url: &'a UrlSpec) -> Option<&'a str> {
    url.virtualhost
        .as_deref()
        .or(probe.virtualhost.as_deref())
        .or(probe.real_server_virtualhost.as_deref())
        .or(probe.virtual_server_virtualhost.as_deref())
}

/// The SNI name: url > checker > virtual server (check_ssl.c `ssl_connect` skips
/// the real server's virtualhost).
fn sni_name<'a>(probe: &'a HttpProbe, url: &'a UrlSpec) -> Option<&'a str> {
    url.virtualhost
        .as_deref()
        .or(probe.virtualhost.as_deref())
        .or(probe.virtual_server_virtualhost.as_deref())
}

/// The request keepalived sends for `url` (check_http.c `request_template`).
pub(super) fn request(probe: &HttpProbe, url: &UrlSpec, address: SocketAddr) -> Vec<u8> {
    let host = match host_name(probe, url) {
        Some(name) => name.to_owned(),
        None => match address {
            SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
            SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        },
    };
    let (minor, connection) = match probe.http_protocol {
        HttpProtocol::V1_0 => (0, ""),
        HttpProtocol::V1_0C => (0, "Connection: close\r\n"),
        HttpProtocol::V1_1 => (1, "Connection: close\r\n"),
    };
    let mut request = format!(
        "GET {} HTTP/1.{minor}\r\nUser-Agent: KeepAliveClient\r\n{connection}Host: {host}\r\n\r\n",
        url.path
    )
    .into_bytes();
    request.truncate(REQUEST_LIMIT);
    request
}

/// Sends the request and judges the response.
async fn exchange<S>(
    mut stream: S,
    request: &[u8],
    url: &UrlSpec,
    step: Duration,
    tls: bool,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let send = async {
        stream.write_all(request).await?;
        stream.flush().await
    };
    match timeout(step, send).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("cannot send the request: {e}")),
        Err(_) => return Err("timeout sending the request".to_owned()),
    }
    let mut response = Response::new(url.digest.is_some());
    let mut buffer = vec![0u8; HEADER_LIMIT];
    loop {
        let room = response.room();
        if room == 0 {
            // keepalived then reads 0 bytes, which it takes for the end of the stream.
            break;
        }
        match timeout(step, stream.read(&mut buffer[..room])).await {
            Ok(Ok(0)) => break,
            Ok(Ok(read)) => response.feed(buffer.get(..read).unwrap_or_default())?,
            Ok(Err(_)) if tls => break,
            Ok(Err(e)) => return Err(format!("read error: {e}")),
            Err(_) => return Err("timeout reading the response".to_owned()),
        }
    }
    response.judge(url)
}

/// The response as keepalived sees it while it streams in.
struct Response {
    /// Bytes received before the end of the header was found.
    head: Vec<u8>,
    /// Status code (0: none keepalived can read) and Content-Length, once the header
    /// is complete.
    header: Option<(u16, Option<u64>)>,
    /// Body bytes received.
    body_bytes: u64,
    md5: Option<Md5>,
}

impl Response {
    fn new(digest: bool) -> Self {
        Self {
            head: Vec::new(),
            header: None,
            body_bytes: 0,
            md5: digest.then(Md5::new),
        }
    }

    /// How many bytes the next read may take.
    fn room(&self) -> usize {
        match self.header {
            None => HEADER_LIMIT.saturating_sub(self.head.len()),
            Some(_) => HEADER_LIMIT,
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        match self.header {
            Some((_, content_length)) => self.add_body(data, content_length),
            None => {
                self.head.extend_from_slice(data);
                let Some(end) = find(&self.head, b"\r\n\r\n") else {
                    return Ok(());
                };
                let head = std::mem::take(&mut self.head);
                let content_length = content_length(&head);
                self.header = Some((status_code(&head), content_length));
                self.add_body(head.get(end + 4..).unwrap_or_default(), content_length)
            }
        }
    }

    /// Counts body bytes and digests those within Content-Length.
    fn add_body(&mut self, data: &[u8], content_length: Option<u64>) -> Result<(), String> {
        let len = data.len() as u64;
        if let Some(md5) = &mut self.md5 {
            let wanted = match content_length {
                None => len,
                Some(total) => total.saturating_sub(self.body_bytes).min(len),
            };
            md5.update(
                data.get(..usize::try_from(wanted).unwrap_or(data.len()))
                    .unwrap_or(data),
            );
        }
        self.body_bytes += len;
        if self.body_bytes > BODY_LIMIT {
            return Err(format!("response body larger than {BODY_LIMIT} bytes"));
        }
        Ok(())
    }

    fn judge(self, url: &UrlSpec) -> Result<(), String> {
        let Some((status, _)) = self.header else {
            return Err("no data received (no complete HTTP header)".to_owned());
        };
        let accepted = (100..=599).contains(&status)
            && if url.status_codes.is_empty() {
                (200..=299).contains(&status)
            } else {
                url.status_codes
                    .iter()
                    .any(|&(low, high)| (low..=high).contains(&status))
            };
        if !accepted {
            return Err(if status == 0 {
                "no HTTP status code in the response".to_owned()
            } else {
                format!("HTTP status code {status} not accepted")
            });
        }
        if let (Some(expected), Some(md5)) = (url.digest, self.md5) {
            let got: [u8; 16] = md5.finalize().into();
            if got != expected {
                return Err(format!("MD5 digest error: body digest {}", hex(&got)));
            }
        }
        Ok(())
    }
}

/// The status code as lib/html.c `extract_status_code` reads it: after the first
/// space of the response (before any CR), exactly three digits followed by a space.
fn status_code(head: &[u8]) -> u16 {
    let Some(space) = head.iter().position(|&b| b == b' ' || b == b'\r') else {
        return 0;
    };
    if head.get(space) != Some(&b' ') {
        return 0;
    }
    match head.get(space + 1..space + 5) {
        Some([a, b, c, b' ']) if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => 0,
    }
}

/// Content-Length as lib/html.c `extract_content_length` reads it: the first
/// `Content-Length:` in the NUL-terminated first buffer, read as strtoul would
/// (leading white space, a sign, decimal digits), which must end the line. None
/// stands for keepalived's SIZE_MAX, "no length".
fn content_length(buffer: &[u8]) -> Option<u64> {
    let text = buffer.split(|&b| b == 0).next().unwrap_or_default();
    let rest = text.get(find(text, CONTENT_LENGTH)? + CONTENT_LENGTH.len()..)?;
    let mut at = rest
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .unwrap_or(rest.len());
    let negative = rest.get(at) == Some(&b'-');
    if matches!(rest.get(at), Some(b'+' | b'-')) {
        at += 1;
    }
    let digits = rest
        .get(at..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        // strtoul consumed nothing: the end pointer is the start of the number.
        return matches!(rest.first(), None | Some(b'\r' | b'\n')).then_some(0);
    }
    if !matches!(rest.get(at + digits), None | Some(b'\r' | b'\n')) {
        return None;
    }
    let value = rest
        .get(at..at + digits)
        .unwrap_or_default()
        .iter()
        .try_fold(0u64, |value, d| {
            value.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })?;
    let value = if negative {
        value.wrapping_neg()
    } else {
        value
    };
    (value != u64::MAX).then_some(value)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The shared TLS client configuration: ring, TLS 1.2 and 1.3, no certificate
/// verification (see the module note).
fn tls_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("cannot set up TLS: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// Accepts any server certificate, as keepalived's SSL_GET does; checks only that the
/// handshake was signed with the presented certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn status_code_needs_three_digits_and_a_space() {
        assert_eq!(status_code(b"HTTP/1.0 200 OK\r\n"), 200);
        assert_eq!(status_code(b"HTTP/1.1 404 \r\n"), 404);
        assert_eq!(status_code(b"HTTP/1.1 200\r\n\r\n"), 0);
        assert_eq!(status_code(b"HTTP/1.1 20x OK\r\n"), 0);
        assert_eq!(status_code(b"HTTP/1.1\r\n 200 OK"), 0);
    }

    #[test]
    fn content_length_reads_like_strtoul() {
        assert_eq!(
            content_length(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\n"),
            Some(12)
        );
        assert_eq!(content_length(b"Content-Length:7"), Some(7));
        assert_eq!(content_length(b"content-length: 12\r\n"), None);
        assert_eq!(content_length(b"Content-Length: 12x\r\n"), None);
        assert_eq!(content_length(b"Content-Length: \r\n"), None);
        assert_eq!(content_length(b"Content-Length:\r\n"), Some(0));
        assert_eq!(content_length(b"X\0Content-Length: 5\r\n"), None);
    }

    #[test]
    fn digest_stops_at_content_length() {
        let mut response = Response::new(true);
        response
            .feed(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nab")
            .unwrap();
        response.feed(b"cdef").unwrap();
        let url = UrlSpec {
            digest: Some(Md5::digest(b"abc").into()),
            ..UrlSpec::default()
        };
        assert_eq!(response.judge(&url), Ok(()));
    }
}
