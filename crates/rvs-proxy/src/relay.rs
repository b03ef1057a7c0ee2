//! One direction of a proxied TCP flow: bytes from `src` to `dst` until `src`
//! ends, by plain copy through a per-thread scratch buffer or by splice(2)
//! through a pipe (zero copy), with backpressure either way.
//!
//! Invariants: nothing is read from `src` while earlier bytes wait for `dst`
//! (at most one read's worth is buffered per direction, and only while `dst` is
//! full; an idle flow holds no buffer); every relayed chunk is recorded on the
//! flow before the next read. In `Auto` mode a direction starts by copying and
//! moves to splice after two reads that filled the scratch buffer (a bulk
//! transfer), as HAProxy's splice-auto does; a pipe that cannot be made leaves
//! it copying.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::Poll;

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::tcp::ReadHalf;
use tokio::net::TcpStream;

use crate::state::LiveConn;
use crate::Clock;

/// When to splice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SpliceMode {
    /// Copy small exchanges, splice bulk transfers.
    #[default]
    Auto,
    Always,
    Never,
}

/// How a direction ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// `src` sent its FIN and every byte before it reached `dst`.
    Eof,
    /// Reading `src` failed (reset by its peer).
    SrcFailed(io::Error),
    /// Writing `dst` failed (reset by its peer).
    DstFailed(io::Error),
}

const SCRATCH: usize = 16 * 1024;
const PIPE_CHUNK: usize = 64 * 1024;
/// Full scratch reads in a row that make a direction "bulk" in `Auto` mode.
const BULK_READS: u32 = 2;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// What one copy step did.
enum Step {
    Eof,
    Moved { bytes: usize, full: bool },
    Failed(Ended),
}

/// Relays `src` to `dst` until `src` ends; `inbound` is client to real server.
///
/// Reads go through `poll_read`, which treats a short read as "drained" (the
/// socket is edge-triggered), saving the read that would only say EAGAIN.
pub(crate) async fn pump(
    mut src: ReadHalf<'_>,
    dst: &TcpStream,
    conn: &LiveConn,
    inbound: bool,
    clock: Clock,
    mode: SpliceMode,
) -> Ended {
    let mut pending: Vec<u8> = Vec::new();
    let mut full_reads = 0u32;
    let mut spliced = mode == SpliceMode::Always;
    loop {
        if !pending.is_empty() {
            if let Err(e) = drain(dst, &mut pending).await {
                return Ended::DstFailed(e);
            }
            pending = Vec::new();
        }
        if spliced {
            match pipe() {
                Ok((r, w)) => {
                    // Boxed: only bulk flows pay for the splice state.
                    let fut = splice_loop(src.as_ref(), dst, conn, inbound, clock, &r, &w);
                    return Box::pin(fut).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no pipe for splice, copying");
                    spliced = false;
                }
            }
        }
        let step = poll_fn(|cx| {
            SCRATCH_BUF.with(|cell| {
                let Ok(mut buf) = cell.try_borrow_mut() else {
                    // Another flow of this thread is mid-step; yield to it.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                };
                let mut rb = ReadBuf::new(&mut buf);
                match Pin::new(&mut src).poll_read(cx, &mut rb) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Step::Failed(Ended::SrcFailed(e))),
                    Poll::Ready(Ok(())) => {}
                }
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Step::Eof);
                }
                let mut off = 0;
                while off < n {
                    match dst.try_write(&buf[off..n]) {
                        Ok(m) => off += m,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Poll::Ready(Step::Failed(Ended::DstFailed(e))),
                    }
                }
                if off < n {
                    pending.extend_from_slice(&buf[off..n]);
                }
                Poll::Ready(Step::Moved {
                    bytes: n,
                    full: n == buf.len(),
                })
            })
        })
        .await;
        match step {
            Step::Eof => return Ended::Eof,
            Step::Failed(e) => return e,
            Step::Moved { bytes, full } => {
                conn.record(inbound, bytes, clock.now());
                full_reads = if full { full_reads + 1 } else { 0 };
                if mode == SpliceMode::Auto && full_reads >= BULK_READS {
                    spliced = true;
                }
            }
        }
    }
}

/// Writes all of `pending` to `dst`, waiting for room.
pub(crate) async fn drain(dst: &TcpStream, pending: &mut Vec<u8>) -> io::Result<()> {
    let mut off = 0;
    while off < pending.len() {
        dst.writable().await?;
        match dst.try_write(&pending[off..]) {
            Ok(m) => off += m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    pending.clear();
    Ok(())
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Splices `src` into the pipe and the pipe into `dst`, one pipeful at a time.
async fn splice_loop(
    src: &TcpStream,
    dst: &TcpStream,
    conn: &LiveConn,
    inbound: bool,
    clock: Clock,
    pipe_r: &OwnedFd,
    pipe_w: &OwnedFd,
) -> Ended {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        if let Err(e) = src.readable().await {
            return Ended::SrcFailed(e);
        }
        let filled = src.try_io(Interest::READABLE, || {
            splice(src, None, pipe_w, None, PIPE_CHUNK, flags).map_err(io::Error::from)
        });
        let mut left = match filled {
            Ok(0) => return Ended::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Ended::SrcFailed(e),
        };
        conn.record(inbound, left, clock.now());
        while left > 0 {
            if let Err(e) = dst.writable().await {
                return Ended::DstFailed(e);
            }
            let sent = dst.try_io(Interest::WRITABLE, || {
                splice(pipe_r, None, dst, None, left, flags).map_err(io::Error::from)
            });
            match sent {
                Ok(0) => return Ended::DstFailed(io::ErrorKind::WriteZero.into()),
                Ok(m) => left -= m.min(left),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Ended::DstFailed(e),
            }
        }
    }
}
