//! `rvsd --demo`: a director to try on loopback with nothing else installed. Owns
//! the demo real servers (three HTTP servers and two UDP echo servers, tokio tasks
//! in rvsd's own runtime), the demo table (a TCP service over the HTTP servers, a
//! UDP service over the echo servers) and the text rvsd prints to say how to try it.
//!
//! Invariants:
//! - The demo table goes through [`Control::apply`](crate::control::Control::apply) like any rvsadm command, so it
//!   is saved in the state file when there is one; it is added only to an empty
//!   table, and a table that holds anything is left exactly as it is.
//! - A demo port that is taken stops rvsd before the table changes.
//! - The demo servers never panic on what a client sends: a bad request gets a
//!   400, an oversized head a 431, and a silent client is dropped after a timeout.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use rvs_api::{Command, ForwardSpec, SchedFlagsSpec, ServerSpec, ServiceRef, ServiceSpec};
use rvs_wire::proxy_protocol::{self, ProxyError};

use crate::http::{lock, Shared};
use crate::state::TableState;

/// Where everything of the demo lives (real servers and VIPs).
pub const DEMO_ADDR: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// How many HTTP and UDP demo real servers there are.
const HTTP_SERVERS: u16 = 3;
const UDP_SERVERS: u16 = 2;
/// The UDP servers sit this far above the base port (9081 -> 9091).
const UDP_OFFSET: u16 = 10;
/// The longest request head (PROXY header included) a demo HTTP server reads.
const MAX_HEAD: usize = 16 * 1024;
/// How long a demo HTTP server waits for a whole request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long rvsd waits for the plane to report the demo listeners.
const LISTENER_WAIT: Duration = Duration::from_secs(2);

/// The demo's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoConfig {
    /// The first HTTP real server's port; the others follow it, and the UDP echo
    /// servers are at `base_port + 10` and `+ 11`.
    pub base_port: u16,
    /// The TCP virtual service's port.
    pub vip_port: u16,
    /// The UDP virtual service's port.
    pub udp_port: u16,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            base_port: 9081,
            vip_port: 8080,
            udp_port: 8053,
        }
    }
}

impl DemoConfig {
    /// The HTTP real servers' addresses, server 1 first.
    pub fn http_servers(&self) -> Result<Vec<SocketAddr>, DemoError> {
        (0..HTTP_SERVERS)
            .map(|i| self.port_above(i).map(demo_addr))
            .collect()
    }

    /// The UDP echo servers' addresses, server 1 first.
    pub fn udp_servers(&self) -> Result<Vec<SocketAddr>, DemoError> {
        (0..UDP_SERVERS)
            .map(|i| self.port_above(UDP_OFFSET + i).map(demo_addr))
            .collect()
    }

    pub fn tcp_vip(&self) -> SocketAddr {
        demo_addr(self.vip_port)
    }

    pub fn udp_vip(&self) -> SocketAddr {
        demo_addr(self.udp_port)
    }

    fn port_above(&self, offset: u16) -> Result<u16, DemoError> {
        self.base_port
            .checked_add(offset)
            .filter(|_| self.base_port != 0)
            .ok_or(DemoError::BasePort(self.base_port))
    }

    /// The commands that build the demo table.
    pub fn commands(&self) -> Result<Vec<Command>, DemoError> {
        let mut out = Vec::new();
        for (service, scheduler, servers) in [
            (
                ServiceRef::Tcp {
                    address: IpAddr::V4(DEMO_ADDR),
                    port: self.vip_port,
                },
                "wlc",
                self.http_servers()?,
            ),
            (
                ServiceRef::Udp {
                    address: IpAddr::V4(DEMO_ADDR),
                    port: self.udp_port,
                },
                "rr",
                self.udp_servers()?,
            ),
        ] {
            out.push(Command::AddService {
                spec: ServiceSpec {
                    service: service.clone(),
                    scheduler: scheduler.to_string(),
                    sched_flags: SchedFlagsSpec::default(),
                    persistence: None,
                    one_packet: false,
                    pe: None,
                },
            });
            for addr in servers {
                out.push(Command::AddServer {
                    service: service.clone(),
                    server: ServerSpec {
                        address: addr.ip(),
                        port: addr.port(),
                        weight: 1,
                        forward: ForwardSpec::Masq,
                        tunnel: None,
                        u_threshold: 0,
                        l_threshold: 0,
                        proxy_protocol: None,
                    },
                });
            }
        }
        Ok(out)
    }
}

fn demo_addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(DEMO_ADDR), port)
}

/// Why the demo cannot start. The I/O errors are part of the message, not a
/// `source`, so that rvsd's error report says them once.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("--demo-base-port {0}: the demo servers need ports {0} to {0}+11, all within 1-65535")]
    BasePort(u16),
    #[error("cannot start the demo: {addr} ({what}) is taken: {error}; stop what uses it or move the demo servers with --demo-base-port")]
    ServerPort {
        what: String,
        addr: SocketAddr,
        error: io::Error,
    },
    #[error("cannot start the demo: the virtual service {protocol} {addr} cannot listen: {error}; stop what uses it or choose another port with {option}")]
    VipPort {
        protocol: &'static str,
        addr: SocketAddr,
        option: &'static str,
        error: io::Error,
    },
    #[error("cannot add the demo table: {0}")]
    Apply(rvs_api::ApiError),
}

/// The running demo real servers; dropping this stops them.
pub struct DemoServers {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DemoServers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl DemoServers {
    /// Binds every demo real server (all or none) and starts serving.
    pub async fn start(cfg: &DemoConfig) -> Result<DemoServers, DemoError> {
        let mut http = Vec::new();
        for (i, addr) in cfg.http_servers()?.into_iter().enumerate() {
            let listener =
                TcpListener::bind(addr)
                    .await
                    .map_err(|error| DemoError::ServerPort {
                        what: format!("demo HTTP real server {}", i + 1),
                        addr,
                        error,
                    })?;
            http.push((i + 1, addr, listener));
        }
        let mut udp = Vec::new();
        for (i, addr) in cfg.udp_servers()?.into_iter().enumerate() {
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|error| DemoError::ServerPort {
                    what: format!("demo UDP real server {}", i + 1),
                    addr,
                    error,
                })?;
            udp.push((i + 1, socket));
        }
        let mut tasks = Vec::new();
        for (number, addr, listener) in http {
            tasks.push(tokio::spawn(http_server(number, addr, listener)));
        }
        for (number, socket) in udp {
            tasks.push(tokio::spawn(udp_server(number, socket)));
        }
        Ok(DemoServers { tasks })
    }
}

/// What happened to the demo table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableOutcome {
    /// The table was empty; the demo table is now in it.
    Added,
    /// The table (restored from the state file) already is the demo table.
    AlreadyThere,
    /// The table held this many services and was left alone.
    Kept { services: usize },
}

/// Adds the demo table through the control plane if the table is empty. The
/// VIPs are tried first, so that a taken port stops rvsd with nothing changed.
pub fn install_table(cfg: &DemoConfig, shared: &Shared) -> Result<TableOutcome, DemoError> {
    let commands = cfg.commands()?;
    let services = lock(shared).configured().services.clone();
    if !services.is_empty() {
        let mut demo_table = TableState::default();
        for cmd in &commands {
            // Cannot fail on the demo's own commands; a failure only means "not
            // the demo table".
            let _ = demo_table.apply(cmd);
        }
        if services == demo_table.services {
            return Ok(TableOutcome::AlreadyThere);
        }
        return Ok(TableOutcome::Kept {
            services: services.len(),
        });
    }
    check_vip_free(cfg)?;
    lock(shared).apply(&commands).map_err(DemoError::Apply)?;
    Ok(TableOutcome::Added)
}

/// Whether the demo VIPs can be bound now (a test bind, closed at once).
fn check_vip_free(cfg: &DemoConfig) -> Result<(), DemoError> {
    let addr = cfg.tcp_vip();
    std::net::TcpListener::bind(addr).map_err(|error| DemoError::VipPort {
        protocol: "TCP",
        addr,
        option: "--demo-vip-port",
        error,
    })?;
    let addr = cfg.udp_vip();
    std::net::UdpSocket::bind(addr).map_err(|error| DemoError::VipPort {
        protocol: "UDP",
        addr,
        option: "--demo-udp-port",
        error,
    })?;
    Ok(())
}

/// Waits (briefly) until the plane reports the demo VIPs' listeners; returns
/// one line per listener that is not listening, empty when all are.
pub async fn listener_problems(cfg: &DemoConfig, shared: &Shared) -> Vec<String> {
    let wanted = [("TCP", cfg.tcp_vip()), ("UDP", cfg.udp_vip())];
    let deadline = tokio::time::Instant::now() + LISTENER_WAIT;
    loop {
        let listeners = lock(shared)
            .status()
            .data_plane
            .map(|p| p.listeners)
            .unwrap_or_default();
        let mut problems = Vec::new();
        let mut missing = false;
        for (protocol, addr) in wanted {
            let found = listeners.iter().find(|l| {
                l.protocol.eq_ignore_ascii_case(protocol)
                    && SocketAddr::new(l.address, l.port) == addr
            });
            match found {
                Some(l) if l.listening => {}
                Some(l) => problems.push(format!(
                    "{protocol} {addr} is not listening: {}",
                    l.error.as_deref().unwrap_or("unknown error")
                )),
                None => missing = true,
            }
        }
        if !missing {
            return problems;
        }
        if tokio::time::Instant::now() >= deadline {
            // Not in the table (a kept table without the demo services) or not
            // reported yet: nothing to say.
            return problems;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `rvsadm` next to the running rvsd, or plain `rvsadm` when that cannot be told.
pub fn rvsadm_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("rvsadm")))
        .unwrap_or_else(|| PathBuf::from("rvsadm"))
}

/// The text rvsd prints once the demo runs: what is where and how to try it.
pub fn announcement(
    cfg: &DemoConfig,
    outcome: &TableOutcome,
    problems: &[String],
    socket: &Path,
    rvsadm: &Path,
) -> Result<String, DemoError> {
    let ports = |addrs: &[SocketAddr]| {
        addrs
            .iter()
            .map(|a| a.port().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let http = cfg.http_servers()?;
    let first_http = http.first().copied().unwrap_or_else(|| demo_addr(0));
    let udp = cfg.udp_servers()?;
    let first_udp = udp.first().copied().unwrap_or_else(|| demo_addr(0));
    let mut out = String::new();
    let director_line = format!(
        "rvs demo: director on {} (TCP, wlc) -> {}:{}; {} (UDP, rr) -> {}\n",
        cfg.tcp_vip(),
        first_http.ip(),
        ports(&http),
        cfg.udp_vip(),
        ports(&udp),
    );
    let socket = shell_word(&socket.display().to_string());
    let rvsadm = shell_word(&rvsadm.display().to_string());
    let rvsadm_line = format!("RVS_SOCKET={socket} {rvsadm} -Ln     (and -Lnc, -Ln --stats)\n");
    match outcome {
        TableOutcome::Added | TableOutcome::AlreadyThere => {
            out.push_str(&director_line);
            if *outcome == TableOutcome::AlreadyThere {
                out.push_str("rvs demo: the demo table was restored from the state file (--no-state keeps it throwaway)\n");
            }
            for p in problems {
                out.push_str(&format!("rvs demo: warning: {p}\n"));
            }
            out.push_str(&format!(
                "try:  curl http://{}/      (repeat: the real server changes)\n      {rvsadm_line}",
                cfg.tcp_vip()
            ));
            out.push_str(&format!(
                "      echo hi | nc -u -w1 {} {}\n",
                cfg.udp_vip().ip(),
                cfg.udp_vip().port()
            ));
        }
        TableOutcome::Kept { services } => {
            out.push_str(&format!(
                "rvs demo: the table already holds {services} service(s), so the demo table was not added \
                 (clear it with `rvsadm -C` and restart, or run with --no-state)\n\
                 rvs demo: the demo real servers run on {}:{} (HTTP) and {}:{} (UDP echo)\n",
                first_http.ip(),
                ports(&http),
                first_udp.ip(),
                ports(&udp),
            ));
            out.push_str(&format!("try:  {rvsadm_line}"));
        }
    }
    out.push_str("stop: Ctrl-C\n");
    Ok(out)
}

/// `s` quoted for a POSIX shell when it needs to be.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:,=@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
struct RequestHead {
    /// The PROXY protocol header the connection started with, if any.
    proxy: Option<proxy_protocol::Header>,
    /// A HEAD request: the answer has no body.
    head_only: bool,
}

/// Reads `buf` as an optional PROXY header followed by an HTTP/1.x request head:
/// `Ok(None)` while the head is incomplete, `Err` with the reason when it is
/// not an HTTP/1.x request.
fn parse_head(buf: &[u8]) -> Result<Option<RequestHead>, String> {
    let (proxy, taken) = match proxy_protocol::decode(buf) {
        Ok(None) => return Ok(None),
        Ok(Some((header, len))) => (Some(header), len),
        Err(ProxyError::NotProxy) => (None, 0),
        Err(e) => return Err(e.to_string()),
    };
    let rest = buf.get(taken..).unwrap_or_default();
    let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = rest.get(..end).unwrap_or_default();
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line)
        .map_err(|_| "the request line is not text".to_string())?
        .trim_end_matches('\r');
    let mut words = line.split(' ');
    let (Some(method), Some(_target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(format!("not an HTTP request line: {line:?}"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Err(format!("not an HTTP/1.x request line: {line:?}"));
    }
    Ok(Some(RequestHead {
        proxy,
        head_only: method == "HEAD",
    }))
}

/// The body a demo HTTP server answers.
fn hello_body(number: usize, own: SocketAddr, peer: SocketAddr, head: &RequestHead) -> String {
    let mut body = format!(
        "hello from demo real server {number} ({own})\nyour address as this server sees it: {peer}\n"
    );
    if let Some(header) = &head.proxy {
        match header.addresses {
            Some(a) => body.push_str(&format!(
                "client address from the PROXY header: {} (PROXY {})\n",
                a.src, header.version
            )),
            None => body.push_str(&format!(
                "client address from the PROXY header: none (PROXY {} without addresses)\n",
                header.version
            )),
        }
    }
    body
}

fn response(status: &str, body: &str, head_only: bool) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if head_only { "" } else { body }
    )
}

async fn http_server(number: usize, own: SocketAddr, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(async move {
                    if let Err(e) = answer_http(number, own, stream, peer).await {
                        tracing::debug!(server = %own, %peer, error = %e, "demo HTTP connection failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(server = %own, error = %e, "demo HTTP server: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Reads one request head, answers it, closes.
async fn answer_http(
    number: usize,
    own: SocketAddr,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let answer = tokio::time::timeout(HEAD_TIMEOUT, async {
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            match parse_head(&buf) {
                Ok(Some(head)) => {
                    let body = hello_body(number, own, peer, &head);
                    return Ok(Some(response("200 OK", &body, head.head_only)));
                }
                Ok(None) if buf.len() >= MAX_HEAD => {
                    let body = format!("request head longer than {MAX_HEAD} bytes\n");
                    return Ok(Some(response(
                        "431 Request Header Fields Too Large",
                        &body,
                        false,
                    )));
                }
                Ok(None) => {}
                Err(reason) => {
                    return Ok(Some(response(
                        "400 Bad Request",
                        &format!("{reason}\n"),
                        false,
                    )))
                }
            }
        }
    })
    .await;
    match answer {
        Ok(Ok(Some(text))) => {
            stream.write_all(text.as_bytes()).await?;
            stream.shutdown().await
        }
        Ok(Ok(None)) | Err(_) => Ok(()),
        Ok(Err(e)) => Err(e),
    }
}

async fn udp_server(number: usize, socket: UdpSocket) {
    let prefix = format!("demo udp server {number}: ");
    let mut buf = vec![0u8; 65536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, peer)) => {
                let mut reply = Vec::with_capacity(prefix.len() + n);
                reply.extend_from_slice(prefix.as_bytes());
                reply.extend_from_slice(buf.get(..n).unwrap_or_default());
                if let Err(e) = socket.send_to(&reply, peer).await {
                    tracing::debug!(%peer, error = %e, "demo UDP server: send failed");
                }
            }
            Err(e) => {
                // An ICMP error from an earlier send shows up here; keep serving.
                tracing::debug!(error = %e, "demo UDP server: receive failed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_request_head_parses_once_complete() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 1..req.len() {
            assert_eq!(parse_head(&req[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse_head(req),
            Ok(Some(RequestHead {
                proxy: None,
                head_only: false
            }))
        );
    }

    #[test]
    fn a_proxy_header_before_the_request_is_decoded() {
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let dst: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for version in [proxy_protocol::Version::V1, proxy_protocol::Version::V2] {
            let mut req =
                proxy_protocol::encode(version, proxy_protocol::Transport::Stream, src, dst);
            req.extend_from_slice(b"HEAD / HTTP/1.0\r\n\r\n");
            let head = parse_head(&req).unwrap().unwrap();
            assert!(head.head_only);
            let header = head.proxy.unwrap();
            assert_eq!(header.addresses.unwrap().src, src);
            let body = hello_body(2, "127.0.0.1:9082".parse().unwrap(), dst, &head);
            assert!(
                body.ends_with(&format!(
                    "client address from the PROXY header: {src} (PROXY {version})\n"
                )),
                "{body}"
            );
        }
    }

    #[test]
    fn what_is_not_http_1_is_refused() {
        assert!(parse_head(b"GET / HTTP/2.0\r\n\r\n").is_err());
        assert!(parse_head(b"hello\r\n\r\n").is_err());
        assert!(parse_head(b"PROXY TCP9 a b 1 2\r\nGET / HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn the_demo_table_is_two_services_of_masqueraded_servers() {
        let cmds = DemoConfig::default().commands().unwrap();
        assert_eq!(cmds.len(), 2 + 3 + 2);
        let servers: Vec<u16> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::AddServer { server, .. } => {
                    assert_eq!(server.forward, ForwardSpec::Masq);
                    Some(server.port)
                }
                _ => None,
            })
            .collect();
        assert_eq!(servers, [9081, 9082, 9083, 9091, 9092]);
    }

    #[test]
    fn a_base_port_too_high_is_refused() {
        let cfg = DemoConfig {
            base_port: 65530,
            ..DemoConfig::default()
        };
        assert!(matches!(cfg.commands(), Err(DemoError::BasePort(65530))));
    }

    #[test]
    fn the_announcement_names_the_socket_and_rvsadm() {
        let text = announcement(
            &DemoConfig::default(),
            &TableOutcome::Added,
            &[],
            Path::new("/run/user/1000/rvs/rvsd.sock"),
            Path::new("/src/rvs/target/release/rvsadm"),
        )
        .unwrap();
        assert_eq!(
            text,
            "rvs demo: director on 127.0.0.1:8080 (TCP, wlc) -> 127.0.0.1:9081 9082 9083; 127.0.0.1:8053 (UDP, rr) -> 9091 9092\n\
             try:  curl http://127.0.0.1:8080/      (repeat: the real server changes)\n      \
             RVS_SOCKET=/run/user/1000/rvs/rvsd.sock /src/rvs/target/release/rvsadm -Ln     (and -Lnc, -Ln --stats)\n      \
             echo hi | nc -u -w1 127.0.0.1 8053\n\
             stop: Ctrl-C\n"
        );
        assert_eq!(shell_word("/tmp/a b/it's"), r"'/tmp/a b/it'\''s'");
    }
}
