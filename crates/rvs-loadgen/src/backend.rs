//! The demo and benchmark real server: one listening socket served in one of four
//! modes (`reqresp`, `bulk`, `echo`, `hold`), and the 8-byte backend id that starts
//! every `reqresp` answer so that clients can tell which backend answered.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::pattern;

/// Length of a backend id on the wire.
pub const ID_LEN: usize = 8;

/// Listen backlog of every backend (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 4096;

/// Write size for `bulk` and buffer size for reads.
const IO_CHUNK: usize = 256 * 1024;

/// What a backend does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Read exactly the request size, answer the response size (id first), close.
    Reqresp,
    /// Send the deterministic stream of `bytes` bytes then close; discard input.
    Bulk,
    /// Echo until the client's FIN, finish writing, then close.
    Echo,
    /// Keep the connection open and send nothing until the client closes it.
    Hold,
}

/// The 8 bytes that start a `reqresp` answer: up to 8 bytes of text, right-padded
/// with spaces.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendId(pub [u8; ID_LEN]);

impl std::str::FromStr for BackendId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > ID_LEN {
            return Err(format!("a backend id is 1 to {ID_LEN} bytes, got {:?}", s));
        }
        let mut id = [b' '; ID_LEN];
        id[..s.len()].copy_from_slice(s.as_bytes());
        Ok(Self(id))
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(&self.0);
        f.write_str(text.trim_end_matches(' '))
    }
}

impl fmt::Debug for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackendId({self})")
    }
}

/// A backend's behaviour.
#[derive(Clone, Debug)]
pub struct BackendConfig {
    pub mode: Mode,
    pub id: BackendId,
    /// `reqresp`: request size read before answering.
    pub request_bytes: usize,
    /// `reqresp`: answer size, at least [`ID_LEN`].
    pub response_bytes: usize,
    /// `bulk`: bytes of the stream sent on each connection.
    pub bytes: u64,
}

impl BackendConfig {
    /// Checks the sizes the mode depends on.
    pub fn validate(&self) -> Result<(), String> {
        if self.mode == Mode::Reqresp && self.response_bytes < ID_LEN {
            return Err(format!(
                "--response-bytes must be at least {ID_LEN}: the answer starts with the backend id"
            ));
        }
        Ok(())
    }
}

/// Binds a listening socket with `SO_REUSEADDR` and a deep backlog.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `listener` forever (until the runtime is dropped).
pub async fn serve(listener: TcpListener, config: BackendConfig) -> io::Result<()> {
    config.validate().map_err(io::Error::other)?;
    let shared = Arc::new(Shared::new(config));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    // A failed connection concerns only its client.
                    let _ = handle(stream, &shared).await;
                });
            }
            Err(e) if is_resource_exhaustion(&e) => {
                // Out of descriptors or memory: let connections close, then go on.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(_) => {
                // ECONNABORTED and the like: that connection is gone, the socket is fine.
            }
        }
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

struct Shared {
    config: BackendConfig,
    /// `reqresp`: the whole answer, built once.
    response: Vec<u8>,
}

impl Shared {
    fn new(config: BackendConfig) -> Self {
        let mut response = Vec::new();
        if config.mode == Mode::Reqresp {
            response = vec![b'r'; config.response_bytes];
            response[..ID_LEN].copy_from_slice(&config.id.0);
        }
        Self { config, response }
    }
}

async fn handle(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    match shared.config.mode {
        Mode::Reqresp => {
            let mut request = vec![0u8; shared.config.request_bytes];
            stream.read_exact(&mut request).await?;
            stream.write_all(&shared.response).await?;
            // Dropping the stream closes it: the server is the active closer, so
            // TIME_WAIT stays on the server side and clients keep their ports free.
            Ok(())
        }
        Mode::Bulk => bulk(stream, shared.config.bytes).await,
        Mode::Echo => echo(stream).await,
        Mode::Hold => {
            let mut buf = [0u8; 512];
            // Discard anything sent; stop when the client closes.
            while stream.read(&mut buf).await? > 0 {}
            Ok(())
        }
    }
}

async fn bulk(stream: TcpStream, bytes: u64) -> io::Result<()> {
    let (mut rd, mut wr) = stream.into_split();
    let send = async move {
        let block = pattern::block();
        let mut offset = 0usize;
        let mut remaining = bytes;
        while remaining > 0 {
            let room = (pattern::PERIOD - offset).min(IO_CHUNK);
            let n = usize::try_from(remaining).map_or(room, |r| r.min(room));
            wr.write_all(&block[offset..offset + n]).await?;
            offset = (offset + n) % pattern::PERIOD;
            remaining -= n as u64;
        }
        wr.shutdown().await?;
        Ok::<_, io::Error>(wr)
    };
    let sink = async move {
        let mut buf = vec![0u8; IO_CHUNK];
        while rd.read(&mut buf).await? > 0 {}
        Ok::<_, io::Error>(rd)
    };
    // The write half is kept until the client has closed too, so that closing never
    // races the last bytes still queued.
    let (sent, sunk) = tokio::join!(send, sink);
    sent?;
    sunk?;
    Ok(())
}

async fn echo(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await?;
    }
    // The client's FIN: everything read has been written back; send ours.
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_pad_and_trim() {
        let id: BackendId = "rr-1".parse().unwrap_or(BackendId([0; 8]));
        assert_eq!(&id.0, b"rr-1    ");
        assert_eq!(id.to_string(), "rr-1");
        assert!("123456789".parse::<BackendId>().is_err());
        assert!("".parse::<BackendId>().is_err());
    }
}
