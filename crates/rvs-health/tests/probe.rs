#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The probes against servers these tests start on loopback (port 0); every test is
//! bounded by a timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use rvs_health::probe::{
    read_file_status, run, DnsProbe, DnsType, FileProbe, FileStatus, HttpProbe, HttpProtocol,
    MiscProbe, Probe, SmtpProbe, Target, UdpProbe, UdpReply, UrlSpec,
};
use rvs_health::Outcome;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;

const TEST_LIMIT: Duration = Duration::from_secs(15);
const PASS: Outcome = Outcome::Pass { weight: None };

fn target(address: SocketAddr) -> Target {
    Target {
        address,
        bind: None,
        connect_timeout: Duration::from_millis(700),
        fwmark: None,
    }
}

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, future)
        .await
        .expect("test ran past its time limit")
}

fn assert_fail(outcome: &Outcome, needle: &str) {
    match outcome {
        Outcome::Fail { reason } => assert!(
            reason.contains(needle),
            "reason {reason:?} lacks {needle:?}"
        ),
        Outcome::Pass { .. } => panic!("expected a failure mentioning {needle:?}, got {outcome:?}"),
    }
}

/// An address nothing listens on.
async fn closed_tcp_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------- TCP_CHECK

#[tokio::test]
async fn tcp_passes_on_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let outcome = bounded(run(&Probe::Tcp, &target(address))).await;
    assert_eq!(outcome, PASS);
}

#[tokio::test]
async fn tcp_fails_on_a_closed_port() {
    let outcome = bounded(run(&Probe::Tcp, &target(closed_tcp_port().await))).await;
    assert_fail(&outcome, "failed");
}

#[tokio::test]
async fn tcp_fails_when_the_connect_times_out() {
    // A listener with a backlog of 0 that never accepts: once its queue is full the
    // kernel drops further SYNs, so a connect hangs until its timeout.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let address = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..2 {
        let filler = tokio::net::TcpSocket::new_v4().unwrap();
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(300), filler.connect(address)).await
        {
            fillers.push(stream);
        }
    }
    let mut probe_target = target(address);
    probe_target.connect_timeout = Duration::from_millis(400);
    let started = Instant::now();
    let outcome = bounded(run(&Probe::Tcp, &probe_target)).await;
    assert_fail(&outcome, "timed out");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn fwmark_is_set_or_refused_with_a_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut probe_target = target(listener.local_addr().unwrap());
    probe_target.fwmark = Some(7);
    match bounded(run(&Probe::Tcp, &probe_target)).await {
        Outcome::Pass { .. } => {}
        Outcome::Fail { reason } => assert!(reason.contains("CAP_NET_ADMIN"), "{reason}"),
    }
}

#[tokio::test]
async fn tcp_binds_the_requested_source() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut probe_target = target(listener.local_addr().unwrap());
    probe_target.bind = Some("127.0.0.2:0".parse().unwrap());
    let accept = tokio::spawn(async move { listener.accept().await.unwrap().1 });
    assert_eq!(bounded(run(&Probe::Tcp, &probe_target)).await, PASS);
    let peer = bounded(accept).await.unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.2");
}

// ---------------------------------------------------------------- HTTP_GET / SSL_GET

const BODY: &[u8] = b"<html>rvs health page</html>\n";

fn response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut response = format!("HTTP/1.0 {status}\r\nContent-Type: text/html\r\n\r\n").into_bytes();
    response.extend_from_slice(body);
    response
}

/// Reads one request head and answers with `reply`, then closes; returns the heads
/// it received.
async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, reply: &[u8]) -> Vec<u8> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.ends_with(b"\r\n\r\n") {
        let read = stream.read(&mut chunk).await.unwrap();
        if read == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..read]);
    }
    stream.write_all(reply).await.unwrap();
    let _ = stream.shutdown().await;
    request
}

/// An HTTP server answering every connection with `reply`; yields the requests.
async fn http_server(
    reply: Vec<u8>,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (requests, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let request = serve_one(stream, &reply).await;
            let _ = requests.send(request);
        }
    });
    (address, received)
}

fn url(path: &str) -> UrlSpec {
    UrlSpec {
        path: path.to_owned(),
        ..UrlSpec::default()
    }
}

fn http(urls: Vec<UrlSpec>) -> HttpProbe {
    HttpProbe {
        urls,
        ..HttpProbe::default()
    }
}

#[tokio::test]
async fn http_sends_keepalived_request_and_passes_on_200() {
    let (address, mut requests) = http_server(response("200 OK", BODY)).await;
    let outcome = bounded(run(
        &Probe::Http(http(vec![url("/health")])),
        &target(address),
    ))
    .await;
    assert_eq!(outcome, PASS);
    let request = requests.recv().await.unwrap();
    let expected = format!(
        "GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 127.0.0.1:{}\r\n\r\n",
        address.port()
    );
    assert_eq!(String::from_utf8(request).unwrap(), expected);
}

#[tokio::test]
async fn http_host_header_prefers_url_virtualhost_and_1_1_closes() {
    let (address, mut requests) = http_server(response("200 OK", BODY)).await;
    let mut probe = http(vec![
        UrlSpec {
            virtualhost: Some("url.example".into()),
            ..url("/a")
        },
        url("/b"),
    ]);
    probe.virtualhost = Some("checker.example".into());
    probe.real_server_virtualhost = Some("rs.example".into());
    probe.http_protocol = HttpProtocol::V1_1;
    assert_eq!(
        bounded(run(&Probe::Http(probe), &target(address))).await,
        PASS
    );
    let first = String::from_utf8(requests.recv().await.unwrap()).unwrap();
    let second = String::from_utf8(requests.recv().await.unwrap()).unwrap();
    assert_eq!(
        first,
        "GET /a HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: url.example\r\n\r\n"
    );
    assert!(
        second.ends_with("Host: checker.example\r\n\r\n"),
        "{second}"
    );
}

#[tokio::test]
async fn http_status_outside_the_ranges_fails() {
    let (address, _requests) = http_server(response("503 Unavailable", BODY)).await;
    let outcome = bounded(run(&Probe::Http(http(vec![url("/")])), &target(address))).await;
    assert_fail(&outcome, "503");
    let accepting = UrlSpec {
        status_codes: vec![(200, 200), (500, 504)],
        ..url("/")
    };
    let outcome = bounded(run(&Probe::Http(http(vec![accepting])), &target(address))).await;
    assert_eq!(outcome, PASS);
}

#[tokio::test]
async fn http_digest_must_match_the_body() {
    let (address, _requests) = http_server(response("200 OK", BODY)).await;
    let right = UrlSpec {
        digest: Some(Md5::digest(BODY).into()),
        ..url("/")
    };
    let mut wrong_digest: [u8; 16] = Md5::digest(BODY).into();
    wrong_digest[0] ^= 1;
    let wrong = UrlSpec {
        digest: Some(wrong_digest),
        ..url("/")
    };
    assert_eq!(
        bounded(run(
            &Probe::Http(http(vec![right.clone()])),
            &target(address)
        ))
        .await,
        PASS
    );
    let outcome = bounded(run(
        &Probe::Http(http(vec![right, wrong])),
        &target(address),
    ))
    .await;
    assert_fail(&outcome, "MD5");
}

#[tokio::test]
async fn http_without_a_header_end_or_code_fails() {
    let (address, _r) = http_server(b"HTTP/1.0 200 OK\r\nno end of header".to_vec()).await;
    assert_fail(
        &bounded(run(&Probe::Http(http(vec![url("/")])), &target(address))).await,
        "no data",
    );
    let (address, _r) = http_server(b"HTTP/1.1 200\r\n\r\nbody".to_vec()).await;
    assert_fail(
        &bounded(run(&Probe::Http(http(vec![url("/")])), &target(address))).await,
        "status",
    );
}

#[tokio::test]
async fn http_times_out_on_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_hold_tx, hold) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (_stream, _) = listener.accept().await.unwrap();
        let _ = hold.await;
    });
    let outcome = bounded(run(&Probe::Http(http(vec![url("/")])), &target(address))).await;
    assert_fail(&outcome, "timeout");
}

async fn tls_server(reply: Vec<u8>) -> (SocketAddr, oneshot::Receiver<Option<String>>) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = key.cert.der().clone();
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], private)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (sni_tx, sni) = oneshot::channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let stream = acceptor.accept(stream).await.unwrap();
        let server_name = stream.get_ref().1.server_name().map(str::to_owned);
        serve_one(stream, &reply).await;
        let _ = sni_tx.send(server_name);
    });
    (address, sni)
}

#[tokio::test]
async fn ssl_get_accepts_a_self_signed_certificate_and_sends_sni() {
    let (address, sni) = tls_server(response("200 OK", BODY)).await;
    let mut probe = http(vec![UrlSpec {
        digest: Some(Md5::digest(BODY).into()),
        ..url("/")
    }]);
    probe.enable_sni = true;
    probe.virtualhost = Some("localhost".into());
    assert_eq!(
        bounded(run(&Probe::Ssl(probe), &target(address))).await,
        PASS
    );
    assert_eq!(bounded(sni).await.unwrap().as_deref(), Some("localhost"));
}

#[tokio::test]
async fn ssl_get_fails_on_status_and_sends_no_sni_unless_enabled() {
    let (address, sni) = tls_server(response("404 Not Found", BODY)).await;
    let mut probe = http(vec![url("/")]);
    probe.virtualhost = Some("localhost".into());
    assert_fail(
        &bounded(run(&Probe::Ssl(probe), &target(address))).await,
        "404",
    );
    assert_eq!(bounded(sni).await.unwrap(), None);
}

#[tokio::test]
async fn ssl_get_fails_against_a_plain_http_server() {
    let (address, _r) = http_server(response("200 OK", BODY)).await;
    assert_fail(
        &bounded(run(&Probe::Ssl(http(vec![url("/")])), &target(address))).await,
        "SSL",
    );
}

// ---------------------------------------------------------------- MISC_CHECK

fn misc(script: &str, dynamic: bool, timeout: Duration) -> Probe {
    Probe::Misc(MiscProbe {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        timeout,
        dynamic,
        user: None,
    })
}

fn unused_target() -> Target {
    target("127.0.0.1:9".parse().unwrap())
}

#[tokio::test]
async fn misc_exit_codes() {
    let second = Duration::from_secs(5);
    assert_eq!(
        bounded(run(&misc("exit 0", false, second), &unused_target())).await,
        PASS
    );
    assert_fail(
        &bounded(run(&misc("exit 1", false, second), &unused_target())).await,
        "status 1",
    );
    assert_fail(
        &bounded(run(&misc("exit 5", false, second), &unused_target())).await,
        "status 5",
    );
    assert_eq!(
        bounded(run(&misc("exit 5", true, second), &unused_target())).await,
        Outcome::Pass { weight: Some(3) }
    );
    assert_eq!(
        bounded(run(&misc("exit 0", true, second), &unused_target())).await,
        PASS
    );
    assert_fail(
        &bounded(run(&misc("exit 1", true, second), &unused_target())).await,
        "status 1",
    );
    assert_fail(
        &bounded(run(&misc("kill -USR1 $$", true, second), &unused_target())).await,
        "signal",
    );
}

#[tokio::test]
async fn misc_timeout_kills_the_process_group() {
    let pid_file = scratch_path("misc-pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
    let started = Instant::now();
    let outcome = bounded(run(
        &misc(&script, false, Duration::from_millis(300)),
        &unused_target(),
    ))
    .await;
    assert_fail(&outcome, "timed out");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive(&proc_dir) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !alive(&proc_dir),
        "the script's child {pid} survived the timeout"
    );
    let _ = std::fs::remove_file(pid_file);
}

/// Whether a process exists and is not a zombie.
fn alive(proc_dir: &std::path::Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| !stat.contains(") Z"))
}

#[tokio::test]
async fn misc_unrunnable_program_fails() {
    let probe = Probe::Misc(MiscProbe {
        argv: vec!["/nonexistent/rvs-check".into()],
        timeout: Duration::from_secs(1),
        dynamic: false,
        user: None,
    });
    assert_fail(&bounded(run(&probe, &unused_target())).await, "cannot run");
}

// ---------------------------------------------------------------- DNS_CHECK

/// A UDP responder that answers each query with `answer(query)`; yields the queries.
async fn dns_server(
    answer: impl Fn(&[u8]) -> Vec<u8> + Send + 'static,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let (queries, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buffer = [0u8; 1500];
        while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
            let query = buffer[..len].to_vec();
            let _ = socket.send_to(&answer(&query), peer).await;
            let _ = queries.send(query);
        }
    });
    (address, received)
}

/// A reply header for `query` with `flags`, then the question echoed.
fn dns_reply(query: &[u8], id_xor: u16, flags: u16) -> Vec<u8> {
    let id = u16::from_be_bytes([query[0], query[1]]) ^ id_xor;
    let mut reply = id.to_be_bytes().to_vec();
    reply.extend_from_slice(&flags.to_be_bytes());
    reply.extend_from_slice(&query[4..]);
    reply
}

fn dns_probe() -> Probe {
    Probe::Dns(DnsProbe {
        query_type: DnsType::A,
        name: "www.example.org".into(),
    })
}

#[tokio::test]
async fn dns_reply_with_the_query_id_passes() {
    let (address, mut queries) = dns_server(|q| dns_reply(q, 0, 0x8180)).await;
    assert_eq!(bounded(run(&dns_probe(), &target(address))).await, PASS);
    let query = queries.recv().await.unwrap();
    assert_eq!(&query[2..12], &[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        &query[12..],
        b"\x03www\x07example\x03org\x00\x00\x01\x00\x01"
    );
}

#[tokio::test]
async fn dns_reply_with_another_id_or_an_error_rcode_fails() {
    let (address, _q) = dns_server(|q| dns_reply(q, 0x5555, 0x8180)).await;
    assert_fail(
        &bounded(run(&dns_probe(), &target(address))).await,
        "timeout",
    );
    let (address, _q) = dns_server(|q| dns_reply(q, 0, 0x8183)).await;
    assert_fail(
        &bounded(run(&dns_probe(), &target(address))).await,
        "rcode = 3",
    );
    // Without the QR bit the reply is taken for a query and skipped.
    let (address, _q) = dns_server(|q| dns_reply(q, 0, 0x0100)).await;
    assert_fail(
        &bounded(run(&dns_probe(), &target(address))).await,
        "timeout",
    );
}

#[tokio::test]
async fn dns_to_a_closed_port_fails() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    drop(socket);
    assert_fail(
        &bounded(run(&dns_probe(), &target(address))).await,
        "failed to read",
    );
}

// ---------------------------------------------------------------- SMTP_CHECK

/// A scripted SMTP server: sends `banner`, then answers HELO and QUIT; yields the
/// lines it received.
async fn smtp_server(banner: &'static [u8]) -> (SocketAddr, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (lines_tx, lines) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(banner).await.unwrap();
        let mut received = Vec::new();
        let mut chunk = [0u8; 512];
        for reply in [&b"250 pleased to meet you\r\n"[..], b"221 bye\r\n"] {
            let before = received.len();
            while !received[before..].ends_with(b"\n") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        let _ = lines_tx.send(received);
                        return;
                    }
                    Ok(read) => received.extend_from_slice(&chunk[..read]),
                }
            }
            stream.write_all(reply).await.unwrap();
        }
        let _ = lines_tx.send(received);
    });
    (address, lines)
}

#[tokio::test]
async fn smtp_good_session_passes() {
    let (address, lines) = smtp_server(b"220 mail.example.org ESMTP\r\n").await;
    let probe = Probe::Smtp(SmtpProbe {
        helo_name: "checker.example".into(),
    });
    assert_eq!(bounded(run(&probe, &target(address))).await, PASS);
    assert_eq!(
        bounded(lines).await.unwrap(),
        b"HELO checker.example\r\nQUIT\r\n"
    );
}

#[tokio::test]
async fn smtp_bad_banners_fail() {
    for banner in [
        &b"554 go away\r\n"[..],
        b"220-multi\r\n220 line\r\n",
        b"220\r\n",
    ] {
        let banner: &'static [u8] = Box::leak(banner.to_vec().into_boxed_slice());
        let (address, lines) = smtp_server(banner).await;
        let outcome = bounded(run(&Probe::Smtp(SmtpProbe::default()), &target(address))).await;
        assert_fail(&outcome, "banner");
        drop(lines);
    }
}

// ---------------------------------------------------------------- UDP_CHECK

/// A UDP server answering each datagram with `reply` (None: never answers); yields
/// what it received.
async fn udp_server(
    reply: Option<Vec<u8>>,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let (datagrams, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buffer = [0u8; 1500];
        while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
            if let Some(reply) = &reply {
                let _ = socket.send_to(reply, peer).await;
            }
            let _ = datagrams.send(buffer[..len].to_vec());
        }
    });
    (address, received)
}

fn udp(require: Option<UdpReply>) -> Probe {
    Probe::Udp(UdpProbe {
        payload: Some(b"ping?".to_vec()),
        require_reply: require,
        ..UdpProbe::default()
    })
}

fn reply_data(data: &[u8], mask: &[u8]) -> Option<UdpReply> {
    Some(UdpReply {
        data: data.to_vec(),
        mask: mask.to_vec(),
    })
}

#[tokio::test]
async fn udp_require_reply_match_and_mismatch() {
    let (address, mut received) = udp_server(Some(b"pong!".to_vec())).await;
    assert_eq!(
        bounded(run(&udp(reply_data(b"pong", &[])), &target(address))).await,
        PASS
    );
    assert_eq!(received.recv().await.unwrap(), b"ping?");
    assert_fail(
        &bounded(run(&udp(reply_data(b"pang", &[])), &target(address))).await,
        "mismatch",
    );
    // A wildcard mask on the differing byte lets it pass.
    assert_eq!(
        bounded(run(&udp(reply_data(b"pang", &[0, 0xff])), &target(address))).await,
        PASS
    );
    // A reply longer than max_reply_length fails.
    let short_max = Probe::Udp(UdpProbe {
        require_reply: reply_data(b"pong", &[]),
        max_reply_length: 3,
        ..UdpProbe::default()
    });
    assert_fail(&bounded(run(&short_max, &target(address))).await, "outside");
}

#[tokio::test]
async fn udp_silence_passes_only_without_require_reply() {
    let (address, mut received) = udp_server(None).await;
    let default_probe = Probe::Udp(UdpProbe::default());
    assert_eq!(bounded(run(&default_probe, &target(address))).await, PASS);
    assert_eq!(
        received.recv().await.unwrap(),
        b"keepalived check - keepalived ch"
    );
    assert_fail(
        &bounded(run(&udp(Some(UdpReply::default())), &target(address))).await,
        "no reply",
    );
}

#[tokio::test]
async fn udp_closed_port_fails() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    drop(socket);
    assert_fail(&bounded(run(&udp(None), &target(address))).await, "failed");
}

// ---------------------------------------------------------------- PING_CHECK

#[tokio::test]
async fn ping_localhost() {
    let outcome = bounded(run(&Probe::Ping, &target("127.0.0.1:0".parse().unwrap()))).await;
    if let Outcome::Fail { reason } = &outcome {
        if reason.contains("ping_group_range") {
            eprintln!("SKIP: ping_localhost needs root or net.ipv4.ping_group_range: {reason}");
            return;
        }
    }
    assert_eq!(outcome, PASS);
}

// ---------------------------------------------------------------- FILE_CHECK

fn scratch_path(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "rvs-health-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

fn file_status(contents: Option<&str>, weight: i32, reverse: bool) -> Result<FileStatus, String> {
    let path = scratch_path("file");
    if let Some(contents) = contents {
        std::fs::write(&path, contents).unwrap();
    }
    let status = read_file_status(&FileProbe {
        path: path.clone(),
        weight,
        reverse,
    });
    let _ = std::fs::remove_file(path);
    status
}

#[test]
fn file_values_map_to_weight_offsets() {
    let up = |weight_offset| Ok(FileStatus::Up { weight_offset });
    assert_eq!(file_status(Some("5\n"), 2, false), up(10));
    assert_eq!(file_status(Some("5\n"), 2, true), up(-10));
    assert_eq!(file_status(Some("0x10"), 1, false), up(16));
    assert_eq!(file_status(Some("-3"), 1, false), up(-3));
    assert_eq!(file_status(Some("junk"), 1, false), up(0));
    assert_eq!(file_status(None, 1, false), up(0));
    assert_eq!(
        file_status(Some("-2147483648"), 1, false),
        Ok(FileStatus::Down)
    );
    assert_eq!(
        file_status(Some("2147483648"), -1, false),
        Ok(FileStatus::Down)
    );
    assert!(file_status(Some("99999999999"), 1, false).is_err());
}

#[test]
fn file_weight_zero_is_up_or_down() {
    assert_eq!(
        file_status(Some("0"), 0, false),
        Ok(FileStatus::Up { weight_offset: 0 })
    );
    assert_eq!(file_status(Some("1"), 0, false), Ok(FileStatus::Down));
    assert_eq!(file_status(Some("0"), 0, true), Ok(FileStatus::Down));
    assert_eq!(
        file_status(Some("7"), 0, true),
        Ok(FileStatus::Up { weight_offset: 0 })
    );
}

#[tokio::test]
async fn file_probe_reports_pass_and_fail() {
    let path = scratch_path("file-run");
    std::fs::write(&path, "1").unwrap();
    let probe = |weight| {
        Probe::File(FileProbe {
            path: path.clone(),
            weight,
            reverse: false,
        })
    };
    assert_eq!(bounded(run(&probe(5), &unused_target())).await, PASS);
    assert_fail(&bounded(run(&probe(0), &unused_target())).await, "FAULT");
    let _ = std::fs::remove_file(&path);
}
