//! An AF_XDP socket in copy mode (`XDP_COPY`), as the packet plane's
//! benchmark uses it to compare upcall transports: frames that an XDP program
//! redirects into an `XSKMAP` land in this socket's RX ring, and frames put on
//! its TX ring leave the same interface (`Documentation/networking/af_xdp.rst`).
//!
//! One socket owns its UMEM (a private anonymous mapping cut into fixed
//! 2048-byte frames) and its four rings (RX and TX of descriptors, FILL and
//! COMPLETION of frame addresses), each mapped from the socket at the
//! kernel's fixed page offsets (`include/uapi/linux/if_xdp.h`).
//!
//! Invariants:
//! - every frame address is in exactly one place: the FILL ring, the kernel
//!   (RX), the RX ring, the TX ring, the COMPLETION ring, or `free`;
//! - this side only writes the producer index of FILL and TX and the consumer
//!   index of RX and COMPLETION, with release ordering after the descriptors
//!   are written or read; it reads the other index with acquire ordering.
//!
//! The socket is single-threaded (its raw ring pointers make it `!Send`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::SysError;

/// Bytes per UMEM frame (one frame holds one packet up to an MTU of ~2000).
pub const XSK_FRAME_SIZE: u32 = 2048;
/// Entries per ring (each ring is this long; a power of two).
const RING_LEN: u32 = 2048;
/// `sendto` kicks per TX flush before giving up on a full device queue.
const KICKS_MAX: u32 = 64;

/// One `mmap`ed region, unmapped on drop.
struct Mapping {
    addr: *mut u8,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes: anonymous when `fd` is `None`, else the socket's
    /// region at `offset`.
    fn new(len: usize, fd: Option<i32>, offset: u64) -> io::Result<Mapping> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
            ),
        };
        let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        #[allow(unsafe_code)]
        // SAFETY: a fresh mapping at an address the kernel chooses aliases no
        // Rust object; the result is checked before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            addr: addr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        #[allow(unsafe_code)]
        // SAFETY: `addr`/`len` are exactly one live mapping made by `new`, and
        // no reference into it outlives `self`.
        unsafe {
            libc::munmap(self.addr.cast(), self.len);
        }
    }
}

/// One of the four rings: shared indices and `len` entries of `entry` bytes.
struct Ring {
    map: Mapping,
    producer: usize,
    consumer: usize,
    descs: usize,
    mask: u32,
    entry: usize,
}

impl Ring {
    fn map(fd: i32, off: &libc::xdp_ring_offset, entry: usize, pgoff: u64) -> io::Result<Ring> {
        let to_usize = |v: u64| usize::try_from(v).map_err(io::Error::other);
        let descs = to_usize(off.desc)?;
        let len = descs + RING_LEN as usize * entry;
        let map = Mapping::new(len, Some(fd), pgoff)?;
        let ring = Ring {
            producer: to_usize(off.producer)?,
            consumer: to_usize(off.consumer)?,
            descs,
            mask: RING_LEN - 1,
            entry,
            map,
        };
        // The indices are 4-byte aligned u32s inside the mapping.
        for at in [ring.producer, ring.consumer] {
            if at % 4 != 0 || at + 4 > ring.map.len {
                return Err(io::Error::other("ring index outside its mapping"));
            }
        }
        Ok(ring)
    }

    fn index(&self, at: usize) -> &AtomicU32 {
        #[allow(unsafe_code)]
        // SAFETY: `at` is the kernel's offset of a 4-byte aligned u32 inside the
        // live mapping (checked in `map`); the kernel only touches it atomically.
        unsafe {
            AtomicU32::from_ptr(self.map.addr.add(at).cast())
        }
    }

    fn load_producer(&self) -> u32 {
        self.index(self.producer).load(Ordering::Acquire)
    }
    fn load_consumer(&self) -> u32 {
        self.index(self.consumer).load(Ordering::Acquire)
    }
    fn store_producer(&self, v: u32) {
        self.index(self.producer).store(v, Ordering::Release);
    }
    fn store_consumer(&self, v: u32) {
        self.index(self.consumer).store(v, Ordering::Release);
    }
    fn peek_producer(&self) -> u32 {
        self.index(self.producer).load(Ordering::Relaxed)
    }
    fn peek_consumer(&self) -> u32 {
        self.index(self.consumer).load(Ordering::Relaxed)
    }

    /// The bytes of entry `i` (taken modulo the ring's length).
    fn slot(&mut self, i: u32) -> &mut [u8] {
        let at = self.descs + (i & self.mask) as usize * self.entry;
        #[allow(unsafe_code)]
        // SAFETY: `at + entry` lies within the mapping (its length is
        // `descs + RING_LEN * entry`); the protocol gives this side the entry
        // exclusively between the index loads and stores around this access.
        unsafe {
            std::slice::from_raw_parts_mut(self.map.addr.add(at), self.entry)
        }
    }
}

/// Counters of one socket.
#[derive(Debug, Default, Clone, Copy)]
pub struct XskCounters {
    pub received: u64,
    pub sent: u64,
    pub kicks: u64,
}

/// An AF_XDP socket bound to one queue of one interface, in copy mode.
pub struct XskSocket {
    fd: OwnedFd,
    umem: Mapping,
    rx: Ring,
    tx: Ring,
    fill: Ring,
    completion: Ring,
    free: Vec<u64>,
    counters: XskCounters,
}

fn sockopt<T>(fd: i32, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>()).map_err(io::Error::other)?;
    #[allow(unsafe_code)]
    // SAFETY: `value` is a live, initialised T of exactly `len` bytes.
    let rc = unsafe { libc::setsockopt(fd, libc::SOL_XDP, name, (value as *const T).cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl XskSocket {
    /// Opens a socket on `ifindex` queue `queue` with `frames` UMEM frames
    /// (at least twice the ring length, so FILL and TX never starve each
    /// other), half of them handed to the kernel for receiving.
    pub fn open(ifindex: u32, queue: u32, frames: u32) -> Result<XskSocket, SysError> {
        let what = |step: &str| format!("AF_XDP socket on ifindex {ifindex} queue {queue}: {step}");
        if frames < 2 * RING_LEN {
            return Err(SysError::invalid(
                what("umem"),
                "fewer frames than two rings",
            ));
        }
        #[allow(unsafe_code)]
        // SAFETY: socket(2) has no memory arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(SysError::io(what("socket"), io::Error::last_os_error()));
        }
        #[allow(unsafe_code)]
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem_len = frames as usize * XSK_FRAME_SIZE as usize;
        let umem = Mapping::new(umem_len, None, 0).map_err(|e| SysError::io(what("umem"), e))?;
        let reg = libc::xdp_umem_reg {
            addr: umem.addr as u64,
            len: umem_len as u64,
            chunk_size: XSK_FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        sockopt(raw, libc::XDP_UMEM_REG, &reg).map_err(|e| SysError::io(what("UMEM_REG"), e))?;
        for (name, step) in [
            (libc::XDP_UMEM_FILL_RING, "FILL ring"),
            (libc::XDP_UMEM_COMPLETION_RING, "COMPLETION ring"),
            (libc::XDP_RX_RING, "RX ring"),
            (libc::XDP_TX_RING, "TX ring"),
        ] {
            sockopt(raw, name, &RING_LEN).map_err(|e| SysError::io(what(step), e))?;
        }
        let mut off = libc::xdp_mmap_offsets {
            rx: zero_offset(),
            tx: zero_offset(),
            fr: zero_offset(),
            cr: zero_offset(),
        };
        let mut len =
            libc::socklen_t::try_from(std::mem::size_of::<libc::xdp_mmap_offsets>()).unwrap_or(0);
        #[allow(unsafe_code)]
        // SAFETY: `off` is a live xdp_mmap_offsets of `len` bytes; the kernel
        // writes at most `len` bytes and updates `len`.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(SysError::io(
                what("MMAP_OFFSETS"),
                io::Error::last_os_error(),
            ));
        }
        let desc = std::mem::size_of::<libc::xdp_desc>();
        let map = |o: &libc::xdp_ring_offset, entry: usize, pgoff: u64, step: &str| {
            Ring::map(raw, o, entry, pgoff).map_err(|e| SysError::io(what(step), e))
        };
        let rx = map(&off.rx, desc, libc::XDP_PGOFF_RX_RING as u64, "RX mmap")?;
        let tx = map(&off.tx, desc, libc::XDP_PGOFF_TX_RING as u64, "TX mmap")?;
        let fill = map(&off.fr, 8, libc::XDP_UMEM_PGOFF_FILL_RING, "FILL mmap")?;
        let completion = map(
            &off.cr,
            8,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            "COMPLETION mmap",
        )?;
        let mut socket = XskSocket {
            free: (0..frames)
                .map(|i| u64::from(i) * u64::from(XSK_FRAME_SIZE))
                .collect(),
            fd,
            umem,
            rx,
            tx,
            fill,
            completion,
            counters: XskCounters::default(),
        };
        socket.refill();
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        let addr_len =
            libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_xdp>()).unwrap_or(0);
        #[allow(unsafe_code)]
        // SAFETY: `addr` is a live sockaddr_xdp of exactly `addr_len` bytes.
        let rc = unsafe { libc::bind(raw, (&addr as *const libc::sockaddr_xdp).cast(), addr_len) };
        if rc != 0 {
            return Err(SysError::io(what("bind"), io::Error::last_os_error()));
        }
        Ok(socket)
    }

    /// The socket's counters so far.
    pub fn counters(&self) -> XskCounters {
        self.counters
    }

    /// Hands free frames to the kernel for receiving, up to the FILL ring's
    /// room and half of all frames (the other half stays for TX).
    fn refill(&mut self) {
        let prod = self.fill.peek_producer();
        let room = RING_LEN - prod.wrapping_sub(self.fill.load_consumer());
        let spare = self.free.len().saturating_sub(RING_LEN as usize / 2);
        let n = (room as usize).min(spare);
        for i in 0..n as u32 {
            let Some(addr) = self.free.pop() else { break };
            self.fill
                .slot(prod.wrapping_add(i))
                .copy_from_slice(&addr.to_ne_bytes());
        }
        if n > 0 {
            self.fill.store_producer(prod.wrapping_add(n as u32));
        }
    }

    /// Takes back the frames the kernel has finished sending.
    fn reap(&mut self) {
        let cons = self.completion.peek_consumer();
        let n = self.completion.load_producer().wrapping_sub(cons);
        for i in 0..n {
            let slot = self.completion.slot(cons.wrapping_add(i));
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(slot);
            self.free.push(u64::from_ne_bytes(bytes));
        }
        if n > 0 {
            self.completion.store_consumer(cons.wrapping_add(n));
        }
    }

    /// Receives up to `max` frames. `f` sees each one and may change it in
    /// place; when it returns true the frame is sent back out of the
    /// interface (TX ring, one kick per call), else its buffer is reused.
    /// Returns the number of frames received.
    pub fn forward(
        &mut self,
        max: u32,
        mut f: impl FnMut(&mut [u8]) -> bool,
    ) -> Result<u32, SysError> {
        self.reap();
        self.refill();
        let rx_cons = self.rx.peek_consumer();
        let tx_prod = self.tx.peek_producer();
        let tx_room = RING_LEN - tx_prod.wrapping_sub(self.tx.load_consumer());
        let n = self
            .rx
            .load_producer()
            .wrapping_sub(rx_cons)
            .min(max)
            .min(tx_room);
        let mut queued = 0u32;
        for i in 0..n {
            let (addr, len) = {
                let d = self.rx.slot(rx_cons.wrapping_add(i));
                let mut a = [0u8; 8];
                let mut l = [0u8; 4];
                a.copy_from_slice(&d[0..8]);
                l.copy_from_slice(&d[8..12]);
                (u64::from_ne_bytes(a), u32::from_ne_bytes(l))
            };
            let start = addr as usize;
            let end = start + len as usize;
            let send = if end <= self.umem.len && len <= XSK_FRAME_SIZE {
                #[allow(unsafe_code)]
                // SAFETY: [start, end) lies inside the UMEM mapping (checked),
                // and the kernel gave this frame to this side through RX.
                let frame = unsafe {
                    std::slice::from_raw_parts_mut(self.umem.addr.add(start), len as usize)
                };
                f(frame)
            } else {
                false
            };
            if send {
                let d = self.tx.slot(tx_prod.wrapping_add(queued));
                d[0..8].copy_from_slice(&addr.to_ne_bytes());
                d[8..12].copy_from_slice(&len.to_ne_bytes());
                d[12..16].copy_from_slice(&0u32.to_ne_bytes());
                queued += 1;
            } else {
                // Back to the start of its frame for the FILL ring.
                self.free.push(addr - addr % u64::from(XSK_FRAME_SIZE));
            }
        }
        if n > 0 {
            self.rx.store_consumer(rx_cons.wrapping_add(n));
        }
        self.counters.received += u64::from(n);
        if queued > 0 {
            self.tx.store_producer(tx_prod.wrapping_add(queued));
            self.counters.sent += u64::from(queued);
            self.kick()?;
        }
        Ok(n)
    }

    /// Makes the kernel send what the TX ring holds (copy mode sends in
    /// `sendto`, a bounded batch per call).
    fn kick(&mut self) -> Result<(), SysError> {
        for _ in 0..KICKS_MAX {
            self.counters.kicks += 1;
            #[allow(unsafe_code)]
            // SAFETY: a zero-length sendto with no buffer and no address.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            let pending = self.tx.peek_producer() != self.tx.load_consumer();
            if rc >= 0 && !pending {
                return Ok(());
            }
            if rc < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {}
                    _ => return Err(SysError::io("AF_XDP TX kick", e)),
                }
            }
            if !pending {
                return Ok(());
            }
        }
        Ok(())
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

fn zero_offset() -> libc::xdp_ring_offset {
    libc::xdp_ring_offset {
        producer: 0,
        consumer: 0,
        desc: 0,
        flags: 0,
    }
}
