//! The kernel side of the packet plane: loads the XDP object (program
//! `rvs_xdp` and the maps of docs/packet-plane.md), attaches it to interfaces
//! and reads and writes its maps through the byte layouts of [`crate::abi`].
//!
//! Invariants: every map is taken out of the object once at [`Loaded::load`]
//! and checked against the ABI's key and value sizes there, so a later map
//! call can only fail in the kernel. Links made by [`Loaded::attach`] live as
//! long as the `Loaded` and are detached when it is dropped. No `unsafe`: keys
//! and values cross as byte arrays, which are `aya::Pod`.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, DevMapHash, HashMap, Map, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use aya::Ebpf;

use crate::abi::{Config, Event, Flow, FlowKey, MarkKey, Real, Stat, Vip, VipKey};
use crate::error::XdpError;

/// The program's name in the object.
pub const PROGRAM: &str = "rvs_xdp";

pub const MAP_CONFIG: &str = "rvs_config";
pub const MAP_VIPS: &str = "rvs_vips";
pub const MAP_VIP_ADDRS: &str = "rvs_vip_addrs";
pub const MAP_MARKS: &str = "rvs_marks";
pub const MAP_REALS: &str = "rvs_reals";
pub const MAP_HASH: &str = "rvs_hash";
pub const MAP_FLOWS: &str = "rvs_flows";
pub const MAP_STATS: &str = "rvs_stats";
pub const MAP_EVENTS: &str = "rvs_events";
pub const MAP_TX: &str = "rvs_tx";

/// `struct xdp_md` is six u32 words: data, data_end, data_meta,
/// ingress_ifindex, rx_queue_index, egress_ifindex (linux/bpf.h).
const XDP_MD_SIZE: usize = 24;

/// The most frames the kernel takes in one live-frames batch
/// (`TEST_XDP_MAX_BATCH`, net/bpf/test_run.c).
pub const LIVE_MAX_BATCH: u32 = 256;

/// How the program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`); fails if the driver lacks XDP.
    Native,
    /// In the generic network stack (`XDP_FLAGS_SKB_MODE`); works everywhere.
    Generic,
}

impl AttachMode {
    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

/// One `BPF_PROG_TEST_RUN` of the program over one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestOutcome {
    /// The XDP action the program returned (`XDP_DROP` = 1, `XDP_PASS` = 2,
    /// `XDP_TX` = 3, `XDP_REDIRECT` = 4).
    pub action: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
}

/// The loaded object: the program (in the kernel, attached or not) and its maps.
pub struct Loaded {
    // Maps first: fields drop in order, and the maps' fds close before the
    // object (which also owns the program and its links) goes.
    config: Array<MapData, [u8; Config::SIZE]>,
    vips: HashMap<MapData, [u8; VipKey::SIZE], [u8; Vip::SIZE]>,
    vip_addrs: HashMap<MapData, [u8; VipKey::SIZE], u32>,
    marks: LpmTrie<MapData, [u8; MarkKey::DATA_SIZE], u32>,
    reals: Array<MapData, [u8; Real::SIZE]>,
    hash: Array<MapData, u32>,
    flows: HashMap<MapData, [u8; FlowKey::SIZE], [u8; Flow::SIZE]>,
    stats: PerCpuArray<MapData, u64>,
    events: RingBuf<MapData>,
    tx: DevMapHash<MapData>,
    malformed_events: u64,
    ebpf: Ebpf,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("program", &PROGRAM)
            .field("malformed_events", &self.malformed_events)
            .finish_non_exhaustive()
    }
}

fn take_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, XdpError>
where
    M: TryFrom<Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(XdpError::NoMap(name))?;
    M::try_from(map).map_err(|e| XdpError::MapLayout {
        map: name,
        source: Box::new(e),
    })
}

fn map_err(map: &'static str, op: &'static str) -> impl FnOnce(MapError) -> XdpError {
    move |e| XdpError::Map {
        map,
        op,
        source: Box::new(e),
    }
}

fn program_err(action: String) -> impl FnOnce(ProgramError) -> XdpError {
    move |e| XdpError::Program {
        program: PROGRAM,
        action,
        source: Box::new(e),
    }
}

/// A delete of a key that is not there is not an error for the callers
/// (the kernel may have evicted an LRU entry first).
fn missing_is_ok(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(ENOENT) => Ok(()),
        other => other,
    }
}

const ENOENT: i32 = 2;

/// The ELF parser reads headers in place and needs 8-byte alignment; copy the
/// object into a buffer at an aligned offset (a `&[u8]` from `include_bytes!`
/// has no alignment guarantee).
fn aligned_copy(object: &[u8]) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; object.len() + 8];
    let start = buf.as_ptr().align_offset(8).min(8);
    buf[start..start + object.len()].copy_from_slice(object);
    (buf, start)
}

impl Loaded {
    /// Loads the object and its program `rvs_xdp` into the kernel (maps
    /// created, program verified) without attaching it anywhere.
    pub fn load(object: &[u8]) -> Result<Loaded, XdpError> {
        let (buf, start) = aligned_copy(object);
        let mut ebpf = Ebpf::load(&buf[start..start + object.len()])
            .map_err(|e| XdpError::Object(Box::new(e)))?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or(XdpError::NoProgram(PROGRAM))?
            .try_into()
            .map_err(program_err("is not an XDP program".into()))?;
        program
            .load()
            .map_err(program_err("loading into the kernel".into()))?;
        Ok(Loaded {
            config: take_map(&mut ebpf, MAP_CONFIG)?,
            vips: take_map(&mut ebpf, MAP_VIPS)?,
            vip_addrs: take_map(&mut ebpf, MAP_VIP_ADDRS)?,
            marks: take_map(&mut ebpf, MAP_MARKS)?,
            reals: take_map(&mut ebpf, MAP_REALS)?,
            hash: take_map(&mut ebpf, MAP_HASH)?,
            flows: take_map(&mut ebpf, MAP_FLOWS)?,
            stats: take_map(&mut ebpf, MAP_STATS)?,
            events: take_map(&mut ebpf, MAP_EVENTS)?,
            tx: take_map(&mut ebpf, MAP_TX)?,
            malformed_events: 0,
            ebpf,
        })
    }

    fn program(&self) -> Result<&Xdp, XdpError> {
        self.ebpf
            .program(PROGRAM)
            .ok_or(XdpError::NoProgram(PROGRAM))?
            .try_into()
            .map_err(program_err("is not an XDP program".into()))
    }

    /// Attaches the program to `ifname`. The link is kept until `self` is
    /// dropped, which detaches it.
    pub fn attach(&mut self, ifname: &str, mode: AttachMode) -> Result<(), XdpError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(XdpError::NoProgram(PROGRAM))?
            .try_into()
            .map_err(program_err("is not an XDP program".into()))?;
        program
            .attach(ifname, mode.xdp_mode())
            .map_err(program_err(format!("attaching to {ifname} ({mode:?})")))?;
        Ok(())
    }

    /// Writes `rvs_config[0]`.
    pub fn set_config(&mut self, c: &Config) -> Result<(), XdpError> {
        self.config
            .set(0, c.to_bytes(), 0)
            .map_err(map_err(MAP_CONFIG, "update"))
    }

    /// Reads `rvs_config[0]`.
    pub fn config(&self) -> Result<Config, XdpError> {
        let bytes = self
            .config
            .get(&0, 0)
            .map_err(map_err(MAP_CONFIG, "lookup"))?;
        Ok(Config::from_bytes(&bytes))
    }

    pub fn get_vip(&self, k: &VipKey) -> Result<Option<Vip>, XdpError> {
        match self.vips.get(&k.to_bytes(), 0) {
            Ok(bytes) => Ok(Some(Vip::from_bytes(&bytes))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(MAP_VIPS, "lookup")(e)),
        }
    }

    pub fn put_vip(&mut self, k: &VipKey, v: &Vip) -> Result<(), XdpError> {
        self.vips
            .insert(k.to_bytes(), v.to_bytes(), 0)
            .map_err(map_err(MAP_VIPS, "update"))
    }

    /// Removes a virtual service; a missing key is not an error.
    pub fn del_vip(&mut self, k: &VipKey) -> Result<(), XdpError> {
        missing_is_ok(self.vips.remove(&k.to_bytes())).map_err(map_err(MAP_VIPS, "delete"))
    }

    /// Marks an address (key with port 0 and proto 0) as answering echo.
    pub fn put_vip_addr(&mut self, k: &VipKey) -> Result<(), XdpError> {
        self.vip_addrs
            .insert(k.to_bytes(), 1, 0)
            .map_err(map_err(MAP_VIP_ADDRS, "update"))
    }

    /// Whether the address answers echo (is in `rvs_vip_addrs`).
    pub fn has_vip_addr(&self, k: &VipKey) -> Result<bool, XdpError> {
        match self.vip_addrs.get(&k.to_bytes(), 0) {
            Ok(_) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(e) => Err(map_err(MAP_VIP_ADDRS, "lookup")(e)),
        }
    }

    /// Removes an echo-answering address; a missing key is not an error.
    pub fn del_vip_addr(&mut self, k: &VipKey) -> Result<(), XdpError> {
        missing_is_ok(self.vip_addrs.remove(&k.to_bytes()))
            .map_err(map_err(MAP_VIP_ADDRS, "delete"))
    }

    /// Writes one classifier entry (`rvs_marks`).
    pub fn put_mark(&mut self, k: &MarkKey, mark: u32) -> Result<(), XdpError> {
        self.marks
            .insert(&lpm_key(k), mark, 0)
            .map_err(map_err(MAP_MARKS, "update"))
    }

    /// Removes the classifier entry with exactly this key; a missing key is not
    /// an error.
    pub fn del_mark(&mut self, k: &MarkKey) -> Result<(), XdpError> {
        missing_is_ok(self.marks.remove(&lpm_key(k))).map_err(map_err(MAP_MARKS, "delete"))
    }

    /// The mark the trie gives the lookup key `k` (longest prefix match), as the
    /// program's lookup would.
    pub fn lookup_mark(&self, k: &MarkKey) -> Result<Option<u32>, XdpError> {
        match self.marks.get(&lpm_key(k), 0) {
            Ok(m) => Ok(Some(m)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(ENOENT) => Ok(None),
            Err(e) => Err(map_err(MAP_MARKS, "lookup")(e)),
        }
    }

    /// Every classifier entry, in the kernel's iteration order.
    pub fn marks(&self) -> Result<Vec<(MarkKey, u32)>, XdpError> {
        self.marks
            .iter()
            .map(|entry| {
                entry
                    .map(|(k, m)| (MarkKey::from_data(k.prefix_len(), &k.data()), m))
                    .map_err(map_err(MAP_MARKS, "iterate"))
            })
            .collect()
    }

    /// Writes `rvs_reals[index]`.
    pub fn put_real(&mut self, index: u32, r: &Real) -> Result<(), XdpError> {
        let max = self.reals.len();
        if index >= max {
            return Err(XdpError::OutOfRange {
                map: MAP_REALS,
                start: index.into(),
                end: u64::from(index) + 1,
                max,
            });
        }
        self.reals
            .set(index, r.to_bytes(), 0)
            .map_err(map_err(MAP_REALS, "update"))
    }

    /// Reads `rvs_reals[index]` (an unset index reads as all zeros).
    pub fn get_real(&self, index: u32) -> Result<Real, XdpError> {
        let bytes = self
            .reals
            .get(&index, 0)
            .map_err(map_err(MAP_REALS, "lookup"))?;
        Ok(Real::from_bytes(&bytes))
    }

    /// Refuses `rvs_hash[offset..offset + len]` when it runs past the map.
    fn check_hash_range(&self, offset: u32, len: u64) -> Result<(), XdpError> {
        let max = self.hash.len();
        let end = u64::from(offset) + len;
        if end > u64::from(max) {
            return Err(XdpError::OutOfRange {
                map: MAP_HASH,
                start: offset.into(),
                end,
                max,
            });
        }
        Ok(())
    }

    /// Writes `rvs_hash[offset..offset + slots.len()]` (one update per slot).
    pub fn put_hash_slots(&mut self, offset: u32, slots: &[u32]) -> Result<(), XdpError> {
        self.check_hash_range(offset, slots.len() as u64)?;
        for (index, real) in (offset..).zip(slots) {
            self.hash
                .set(index, *real, 0)
                .map_err(map_err(MAP_HASH, "update"))?;
        }
        Ok(())
    }

    /// Reads `rvs_hash[offset..offset + len]`.
    pub fn hash_slots(&self, offset: u32, len: u32) -> Result<Vec<u32>, XdpError> {
        self.check_hash_range(offset, u64::from(len))?;
        (offset..offset + len)
            .map(|index| {
                self.hash
                    .get(&index, 0)
                    .map_err(map_err(MAP_HASH, "lookup"))
            })
            .collect()
    }

    pub fn put_flow(&mut self, k: &FlowKey, f: &Flow) -> Result<(), XdpError> {
        self.flows
            .insert(k.to_bytes(), f.to_bytes(), 0)
            .map_err(map_err(MAP_FLOWS, "update"))
    }

    /// Writes many flows with one `BPF_MAP_UPDATE_BATCH`, in order. Returns
    /// how many were written before the first failure, with that failure.
    pub fn put_flows(&mut self, entries: &[(FlowKey, Flow)]) -> Result<(), (usize, XdpError)> {
        use aya::maps::IterableMap;
        use std::os::fd::AsFd;
        let mut keys = Vec::with_capacity(entries.len() * FlowKey::SIZE);
        let mut values = Vec::with_capacity(entries.len() * Flow::SIZE);
        for (k, f) in entries {
            keys.extend_from_slice(&k.to_bytes());
            values.extend_from_slice(&f.to_bytes());
        }
        let fd = self.flows.map().fd().as_fd();
        rvs_sys::bpf::map_update_batch(fd, &keys, &values, FlowKey::SIZE, Flow::SIZE)
            .map(|_| ())
            .map_err(|(done, e)| {
                (
                    done as usize,
                    XdpError::MapBatch {
                        map: MAP_FLOWS,
                        op: "batch update",
                        source: Box::new(e),
                    },
                )
            })
    }

    pub fn get_flow(&self, k: &FlowKey) -> Result<Option<Flow>, XdpError> {
        match self.flows.get(&k.to_bytes(), 0) {
            Ok(bytes) => Ok(Some(Flow::from_bytes(&bytes))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(MAP_FLOWS, "lookup")(e)),
        }
    }

    /// Removes a flow; a missing key (never there, or evicted) is not an error.
    pub fn del_flow(&mut self, k: &FlowKey) -> Result<(), XdpError> {
        missing_is_ok(self.flows.remove(&k.to_bytes())).map_err(map_err(MAP_FLOWS, "delete"))
    }

    /// Every flow entry, in the kernel's iteration order. Entries deleted while
    /// iterating are skipped.
    pub fn flows(&self) -> Result<Vec<(FlowKey, Flow)>, XdpError> {
        self.flows
            .iter()
            .map(|entry| {
                entry
                    .map(|(k, v)| (FlowKey::from_bytes(&k), Flow::from_bytes(&v)))
                    .map_err(map_err(MAP_FLOWS, "iterate"))
            })
            .collect()
    }

    /// Lets the program redirect to `ifindex` (`rvs_tx[ifindex] = ifindex`).
    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<(), XdpError> {
        self.tx
            .insert(ifindex, ifindex, None, 0)
            .map_err(|e| XdpError::DevMap {
                map: MAP_TX,
                op: "update",
                source: Box::new(e),
            })
    }

    /// The interfaces in `rvs_tx`, in the kernel's iteration order.
    pub fn tx_ports(&self) -> Result<Vec<u32>, XdpError> {
        self.tx
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_TX, "iterate"))
    }

    /// Removes a redirect target; a missing key is not an error.
    pub fn del_tx_port(&mut self, ifindex: u32) -> Result<(), XdpError> {
        missing_is_ok(self.tx.remove(ifindex)).map_err(map_err(MAP_TX, "delete"))
    }

    /// The counters of `rvs_stats`, each summed over the CPUs (wrapping, as
    /// the per-CPU counters themselves do).
    pub fn stats(&self) -> Result<[u64; Stat::COUNT], XdpError> {
        let mut out = [0u64; Stat::COUNT];
        for (index, total) in (0u32..).zip(out.iter_mut()) {
            let per_cpu = self
                .stats
                .get(&index, 0)
                .map_err(map_err(MAP_STATS, "lookup"))?;
            *total = per_cpu.iter().fold(0u64, |a, b| a.wrapping_add(*b));
        }
        Ok(out)
    }

    /// Takes up to `max` records from `rvs_events` without blocking and
    /// appends them to `out`; returns how many were appended. A record too
    /// short for its header is consumed, skipped and counted in
    /// [`Loaded::malformed_events`].
    pub fn drain_events(&mut self, max: usize, out: &mut Vec<Event>) -> usize {
        let mut appended = 0;
        while appended < max {
            let Some(record) = self.events.next() else {
                break;
            };
            match Event::parse(&record) {
                Some(event) => {
                    out.push(event);
                    appended += 1;
                }
                None => self.malformed_events += 1,
            }
        }
        appended
    }

    /// Ring buffer records skipped by [`Loaded::drain_events`] as malformed.
    pub fn malformed_events(&self) -> u64 {
        self.malformed_events
    }

    /// The ring buffer's fd: readable when records are waiting (for epoll or
    /// tokio's `AsyncFd`).
    pub fn events_fd(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }

    /// Runs the program once over `frame` (`BPF_PROG_TEST_RUN`), ingress on the
    /// loopback interface of the caller's network namespace. `out` receives the
    /// resulting frame and must hold it (encapsulation makes it longer).
    pub fn test_run(&self, frame: &[u8], out: &mut [u8]) -> Result<TestOutcome, XdpError> {
        self.test_run_on(0, frame, out)
    }

    /// Like [`Loaded::test_run`] with ingress on `ingress_ifindex` (an
    /// interface of the caller's network namespace; 0 means loopback).
    pub fn test_run_on(
        &self,
        ingress_ifindex: u32,
        frame: &[u8],
        out: &mut [u8],
    ) -> Result<TestOutcome, XdpError> {
        let ctx = xdp_md(frame, ingress_ifindex);
        let cap = out.len();
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut *out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::new()
        };
        let result = self
            .program()?
            .test_run(opts)
            .map_err(program_err("test run".into()))?;
        let size = result.data_size_out as usize;
        let frame_out = out.get(..size).ok_or(XdpError::TestRunOutput {
            program: PROGRAM,
            size,
            cap,
        })?;
        Ok(TestOutcome {
            action: result.return_value,
            frame: frame_out.to_vec(),
        })
    }

    /// Runs the program over `repeat` copies of `frame` with
    /// `BPF_F_TEST_XDP_LIVE_FRAMES`, `batch` frames at a time (0: the kernel's
    /// default of 64; at most [`LIVE_MAX_BATCH`]): verdicts take effect, so
    /// `XDP_TX` and `XDP_REDIRECT` really send. Ingress is `ingress_ifindex`, an
    /// interface that is up in the caller's network namespace (0: loopback).
    /// Returns the kernel's mean time per run.
    pub fn test_run_live(
        &self,
        frame: &[u8],
        repeat: u32,
        batch: u32,
        ingress_ifindex: u32,
    ) -> Result<Duration, XdpError> {
        let ctx = xdp_md(frame, ingress_ifindex);
        let opts = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat,
            attrs: TestRunAttrs::new().xdp_live_frames(batch),
            ..TestRunOptions::new()
        };
        let result = self
            .program()?
            .test_run(opts)
            .map_err(program_err(format!(
                "live-frames test run ({repeat} frames, batch {batch}, ingress ifindex {ingress_ifindex})"
            )))?;
        Ok(result.duration)
    }
}

fn lpm_key(k: &MarkKey) -> LpmKey<[u8; MarkKey::DATA_SIZE]> {
    LpmKey::new(k.prefixlen, k.data())
}

/// A `struct xdp_md` for a test run: the whole frame is data, no metadata,
/// receive queue 0 of `ingress_ifindex` (0 leaves the kernel's default).
fn xdp_md(frame: &[u8], ingress_ifindex: u32) -> [u8; XDP_MD_SIZE] {
    let data_end = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    let mut ctx = [0u8; XDP_MD_SIZE];
    ctx[4..8].copy_from_slice(&data_end.to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_can_move_between_threads() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<Loaded>();
    }

    #[test]
    fn objects_are_copied_to_an_aligned_start() {
        let object: Vec<u8> = (0..=255u8).collect();
        for skew in 0..8 {
            let (buf, start) = aligned_copy(&object[skew..]);
            assert_eq!(buf[start..].as_ptr().align_offset(8), 0);
            assert_eq!(&buf[start..start + object.len() - skew], &object[skew..]);
        }
    }

    #[test]
    fn test_run_context_is_the_whole_frame_on_the_ingress() {
        let ctx = xdp_md(&[0u8; 60], 7);
        let word = |i: usize| u32::from_ne_bytes([ctx[i], ctx[i + 1], ctx[i + 2], ctx[i + 3]]);
        assert_eq!(
            [word(0), word(4), word(8), word(12), word(16), word(20)],
            [0, 60, 0, 7, 0, 0]
        );
    }
}
