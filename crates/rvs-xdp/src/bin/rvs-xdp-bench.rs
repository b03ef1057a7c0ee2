//! `rvs-xdp-bench`: the packet-plane benchmark's runner (driven by
//! `bench/xdp-forwarding.sh`, which builds the namespaces, nftables and rvsd).
//!
//! `live`: the generator is `xdp_gen` (bpf/rvs_bench.c) run with
//! `BPF_PROG_TEST_RUN` + `BPF_F_TEST_XDP_LIVE_FRAMES` on the generator's
//! interface, so every frame it XDP_TXes really crosses the veth into the
//! director. The director's side is chosen per case (`xdp_count_drop`: the
//! ceiling; `rvs_xdp` with entries installed through the loader; `xdp_pass_all`
//! for the kernel stack; nothing when rvsd owns it). Whatever comes back out of
//! the director is counted by `xdp_count_drop` on the generator's interface.
//! One line of `key=value` results goes to stdout.
//!
//! `cost`: `BPF_PROG_TEST_RUN` (not live) with a repeat count over one DR
//! established-flow frame, against `xdp_redirect_peer`: the kernel's mean ns
//! per run (best of `--rounds`).
//!
//! Invariants: the process changes network namespace only on its main thread
//! and only between set-up steps; every program it attaches is detached when
//! the process exits (aya links are dropped with their owners).

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aya::maps::{Array, CpuMap, DevMapHash, HashMap, MapData, PerCpuArray};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use aya::Ebpf;
use rvs_xdp::abi::{self, Config, Flow, FlowKey, Real, Stat, Vip, VipKey};
use rvs_xdp::loader::{AttachMode, Loaded, LIVE_MAX_BATCH};

/// Addresses of the benchmark topology (bench/xdp-forwarding.sh uses the same).
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const CLIENT_PORT: u16 = 40000;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const VIP_PORT: u16 = 80;
const REALS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 3, 0, 1),
    Ipv4Addr::new(10, 3, 0, 2),
    Ipv4Addr::new(10, 3, 0, 3),
];
const REAL_NAT_PORT: u16 = 8080;
/// The director's own address on d0: tunnel source and FullNAT local address.
const DIRECTOR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const FNAT_LOCAL_PORT: u16 = 5000;
const TCP: u8 = 6;
const FRAME_LEN: usize = 64;
const GEN_VALUE_LEN: usize = 8 + FRAME_LEN;

type Error = Box<dyn std::error::Error>;

fn usage() -> &'static str {
    "usage:
  rvs-xdp-bench live --gen-ns NS --dir-ns NS --gen-if IF --dir-if IF \\
      --gen-ifindex N --dir-ifindex N --gen-mac MAC --dir-mac MAC \\
      --director drop|dr|tun|nat|fnat|pass|none|upcall-ring|upcall-mmsg|upcall-xsk \\
      --flows one|new [--seconds S] [--batch N] [--upcall-cpu N] [--xsk-queue N]
      [--via-cpu N]   (frames cross to CPU N through a cpumap before the veth, so the
                       director and the sink run on CPU N, not on the generator's CPU)
  rvs-xdp-bench cost --dir-ns NS --dir-ifindex N --gen-mac MAC --dir-mac MAC [--repeat N]"
}

struct Args {
    list: Vec<(String, String)>,
}

impl Args {
    fn parse(raw: &[String]) -> Result<Args, Error> {
        let mut list = Vec::new();
        let mut it = raw.iter();
        while let Some(k) = it.next() {
            let name = k
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {k:?}"))?;
            let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
            list.push((name.to_string(), v.clone()));
        }
        Ok(Args { list })
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn req(&self, name: &str) -> Result<&str, Error> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required\n{}", usage()).into())
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v:?}").into()),
        }
    }
    fn mac(&self, name: &str) -> Result<[u8; 6], Error> {
        let v = self.req(name)?;
        let mut out = [0u8; 6];
        let parts: Vec<&str> = v.split(':').collect();
        if parts.len() != 6 {
            return Err(format!("--{name}: not a MAC address: {v:?}").into());
        }
        for (o, p) in out.iter_mut().zip(parts) {
            *o = u8::from_str_radix(p, 16)
                .map_err(|_| format!("--{name}: not a MAC address: {v:?}"))?;
        }
        Ok(out)
    }
}

/// Internet checksum over `bytes` (RFC 1071), folded and complemented.
fn checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).copied().map_or(0, u32::from);
        sum += hi | lo;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 64-byte Ethernet + IPv4 + TCP frame from the client to the VIP, with
/// correct checksums (the kernel stack verifies them in the nftables case).
/// `syn`: a connection's first segment; else an ACK of an established one.
fn client_frame(dmac: [u8; 6], smac: [u8; 6], syn: bool) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&dmac);
    f[6..12].copy_from_slice(&smac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[4..6].copy_from_slice(&1u16.to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = TCP;
    ip[12..16].copy_from_slice(&CLIENT.octets());
    ip[16..20].copy_from_slice(&VIP.octets());
    let ip_check = checksum(ip, 0);
    ip[10..12].copy_from_slice(&ip_check.to_be_bytes());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&CLIENT_PORT.to_be_bytes());
    tcp[2..4].copy_from_slice(&VIP_PORT.to_be_bytes());
    tcp[4..8].copy_from_slice(&1_000_000u32.to_be_bytes());
    if !syn {
        tcp[8..12].copy_from_slice(&2_000_000u32.to_be_bytes());
    }
    tcp[12] = 5 << 4;
    tcp[13] = if syn { 0x02 } else { 0x10 };
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    // Pseudo header: addresses, protocol, TCP length.
    let mut pseudo = 0u32;
    for a in [CLIENT.octets(), VIP.octets()] {
        pseudo += u32::from(u16::from_be_bytes([a[0], a[1]]));
        pseudo += u32::from(u16::from_be_bytes([a[2], a[3]]));
    }
    pseudo += u32::from(TCP) + 20;
    let tcp_check = checksum(tcp, pseudo);
    tcp[16..18].copy_from_slice(&tcp_check.to_be_bytes());
    f
}

/// An `xdp_md` for a test run: the whole frame, ingress `ifindex`, queue 0.
fn xdp_md(len: usize, ifindex: u32) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

/// One load of the benchmark object: its maps are this load's own, so the
/// generator, the sink and the director's counter never share a counter.
struct BenchProgs {
    ebpf: Ebpf,
}

impl BenchProgs {
    fn load() -> Result<BenchProgs, Error> {
        let ebpf = Ebpf::load(rvs_xdp::BENCH_OBJECT)?;
        Ok(BenchProgs { ebpf })
    }
    fn program(&mut self, name: &str) -> Result<&mut Xdp, Error> {
        let p: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| format!("bench object has no program {name}"))?
            .try_into()?;
        Ok(p)
    }
    fn load_and_attach(&mut self, name: &str, ifname: &str) -> Result<(), Error> {
        let p = self.program(name)?;
        p.load()?;
        p.attach(ifname, XdpMode::Driver)
            .map_err(|e| format!("attaching {name} to {ifname} (native): {e}"))?;
        Ok(())
    }
    /// Sets `bench_tx[0]`, the interface `xdp_redirect_peer` and
    /// `xdp_cpu_to_peer` send out of.
    fn set_tx(&mut self, ifindex: u32) -> Result<(), Error> {
        let map = self
            .ebpf
            .map_mut("bench_tx")
            .ok_or("bench object has no map bench_tx")?;
        let mut tx: DevMapHash<&mut MapData> = DevMapHash::try_from(map)?;
        tx.insert(0, ifindex, None, 0)?;
        Ok(())
    }

    /// Sum over CPUs of `bench_count[0]`.
    fn count(&self) -> Result<u64, Error> {
        let map = self
            .ebpf
            .map("bench_count")
            .ok_or("bench object has no map bench_count")?;
        let arr: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
        Ok(arr.get(&0, 0)?.iter().sum())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DirectorKind {
    Drop,
    Rvs(u8),
    Pass,
    None,
    Upcall(Transport),
}

/// How an upcall frame reaches userspace and goes back out (`upcall-*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    /// Ring buffer record, one `sendto(2)` on AF_PACKET per frame (rvsd today).
    Ring,
    /// Ring buffer records, one `sendmmsg(2)` on AF_PACKET per batch.
    RingBatched,
    /// AF_XDP socket in copy mode: RX ring in, TX ring out, one kick per batch.
    Xsk,
}

fn director_kind(s: &str) -> Result<DirectorKind, Error> {
    Ok(match s {
        "drop" => DirectorKind::Drop,
        "dr" => DirectorKind::Rvs(abi::METHOD_DR),
        "tun" => DirectorKind::Rvs(abi::METHOD_TUN),
        "nat" => DirectorKind::Rvs(abi::METHOD_NAT),
        "fnat" => DirectorKind::Rvs(abi::METHOD_FNAT),
        "pass" => DirectorKind::Pass,
        "none" => DirectorKind::None,
        "upcall-ring" => DirectorKind::Upcall(Transport::Ring),
        "upcall-mmsg" => DirectorKind::Upcall(Transport::RingBatched),
        "upcall-xsk" => DirectorKind::Upcall(Transport::Xsk),
        other => return Err(format!("--director: unknown {other:?}\n{}", usage()).into()),
    })
}

/// The entries rvsd would install for one established client flow to real 0
/// (and reals 1 and 2 beside it), by method.
struct Entries {
    config: Config,
    vip_key: VipKey,
    vip: Vip,
    reals: Vec<Real>,
    flow_key: FlowKey,
    flow: Flow,
}

fn entries(method: u8, real_ifindex: u32, real_mac: [u8; 6], own_mac: [u8; 6]) -> Entries {
    let nat = matches!(method, abi::METHOD_NAT | abi::METHOD_FNAT);
    let real_port = if nat { REAL_NAT_PORT } else { VIP_PORT };
    let reals = REALS
        .iter()
        .map(|a| Real {
            addr: abi::addr_bytes((*a).into()),
            family: abi::FAMILY_V4,
            method,
            tun_type: abi::TUN_IPIP,
            flags: abi::REAL_F_USABLE,
            port_be: real_port.to_be(),
            gue_port_be: 0,
            ifindex: real_ifindex,
            dmac: real_mac,
            smac: own_mac,
        })
        .collect();
    let mut flow = Flow {
        real: 0,
        method,
        ..Flow::default()
    };
    if nat {
        flow.flags |= abi::FLOW_F_DNAT;
        flow.new_daddr = abi::addr_bytes(REALS[0].into());
        flow.new_dport_be = REAL_NAT_PORT.to_be();
    }
    if method == abi::METHOD_FNAT {
        flow.flags |= abi::FLOW_F_SNAT;
        flow.new_saddr = abi::addr_bytes(DIRECTOR.into());
        flow.new_sport_be = FNAT_LOCAL_PORT.to_be();
    }
    Entries {
        config: Config {
            tun_saddr4: DIRECTOR.octets(),
            ..Config::default()
        },
        vip_key: VipKey::new(VIP.into(), VIP_PORT, TCP),
        vip: Vip {
            svc: 1,
            sched: abi::SCHED_UPCALL,
            method,
            ..Vip::default()
        },
        reals,
        flow_key: FlowKey::new(CLIENT.into(), CLIENT_PORT, VIP.into(), VIP_PORT, TCP),
        flow,
    }
}

fn install(l: &mut Loaded, e: &Entries) -> Result<(), Error> {
    l.set_config(&e.config)?;
    l.put_vip(&e.vip_key, &e.vip)?;
    for (i, r) in e.reals.iter().enumerate() {
        l.put_real(u32::try_from(i)?, r)?;
    }
    l.put_flow(&e.flow_key, &e.flow)?;
    Ok(())
}

fn method_stat(method: u8) -> Stat {
    match method {
        abi::METHOD_TUN => Stat::FwdTun,
        abi::METHOD_NAT => Stat::FwdNat,
        abi::METHOD_FNAT => Stat::FwdFnat,
        _ => Stat::FwdDr,
    }
}

fn live(a: &Args) -> Result<(), Error> {
    let gen_ns = a.req("gen-ns")?;
    let dir_ns = a.req("dir-ns")?;
    let gen_if = a.req("gen-if")?;
    let dir_if = a.req("dir-if")?;
    let gen_ifindex: u32 = a.num("gen-ifindex", 0)?;
    let dir_ifindex: u32 = a.num("dir-ifindex", 0)?;
    let gen_mac = a.mac("gen-mac")?;
    let dir_mac = a.mac("dir-mac")?;
    let kind = director_kind(a.req("director")?)?;
    let new_flows = match a.req("flows")? {
        "one" => false,
        "new" => true,
        other => return Err(format!("--flows: one or new, not {other:?}").into()),
    };
    let seconds: f64 = a.num("seconds", 3.0)?;
    let batch: u32 = a.num("batch", 64)?;
    if !(0.1..=60.0).contains(&seconds) || batch == 0 || batch > LIVE_MAX_BATCH {
        return Err(format!("--seconds 0.1..=60, --batch 1..={LIVE_MAX_BATCH}").into());
    }

    // The director's side.
    rvs_sys::netns::enter(dir_ns)?;
    let mut dir_bench = None;
    let mut dir_rvs = None;
    let mut upcaller = None;
    match kind {
        DirectorKind::Drop | DirectorKind::Pass => {
            let mut b = BenchProgs::load()?;
            let name = if kind == DirectorKind::Drop {
                "xdp_count_drop"
            } else {
                "xdp_pass_all"
            };
            b.load_and_attach(name, dir_if)?;
            dir_bench = Some(b);
        }
        DirectorKind::Rvs(method) => {
            let mut l = Loaded::load(rvs_xdp::XDP_OBJECT)?;
            install(&mut l, &entries(method, dir_ifindex, gen_mac, dir_mac))?;
            l.add_tx_port(dir_ifindex)?;
            l.attach(dir_if, AttachMode::Native)?;
            dir_rvs = Some((l, method));
        }
        DirectorKind::None => {}
        DirectorKind::Upcall(transport) => {
            let cpu: usize = a.num("upcall-cpu", 0)?;
            let queue: u32 = a.num("xsk-queue", 1)?;
            upcaller = Some(Upcaller::start(
                transport,
                dir_ifindex,
                dir_if,
                queue,
                cpu,
                [gen_mac, dir_mac],
            )?);
        }
    }

    // The generator's side: the sink, then the generator itself.
    rvs_sys::netns::enter(gen_ns)?;
    let mut sink = BenchProgs::load()?;
    sink.load_and_attach("xdp_count_drop", gen_if)?;
    let mut gen = BenchProgs::load()?;
    let frame = client_frame(dir_mac, gen_mac, new_flows);
    let via_cpu: Option<u32> = a.get("via-cpu").map(str::parse).transpose()?;
    if let Some(cpu) = via_cpu {
        // The cpumap program sends the frames out of the generator's veth.
        gen.set_tx(gen_ifindex)?;
        let p = gen.program("xdp_cpu_to_peer")?;
        p.load()?;
        let fd = p.fd()?.try_clone()?;
        let map = gen
            .ebpf
            .map_mut("bench_cpus")
            .ok_or("bench object has no map bench_cpus")?;
        let mut cpus: CpuMap<&mut MapData> = CpuMap::try_from(map)?;
        cpus.set(cpu, 2048, Some(&fd), 0)?;
    }
    {
        let map = gen
            .ebpf
            .map_mut("bench_gen_frame")
            .ok_or("bench object has no map bench_gen_frame")?;
        let mut arr: Array<&mut MapData, [u8; GEN_VALUE_LEN]> = Array::try_from(map)?;
        let mut value = [0u8; GEN_VALUE_LEN];
        value[0..4].copy_from_slice(&u32::from(new_flows).to_ne_bytes());
        value[4..8].copy_from_slice(&via_cpu.map_or(0, |c| c + 1).to_ne_bytes());
        value[8..].copy_from_slice(&frame);
        arr.set(0, value, 0)?;
    }
    gen.program("xdp_gen")?.load()?;
    let ctx = xdp_md(frame.len(), gen_ifindex);
    // ~20 ms of frames per call at 5 Mpps, so the clock is checked often.
    let chunk: u32 = a.num("chunk", 100_000)?;
    let send = |gen: &mut BenchProgs, frames: u32| -> Result<(), Error> {
        let opts = TestRunOptions {
            data_in: Some(&frame),
            ctx_in: Some(&ctx),
            repeat: frames,
            attrs: TestRunAttrs::new().xdp_live_frames(batch),
            ..TestRunOptions::new()
        };
        gen.program("xdp_gen")?.test_run(opts)?;
        Ok(())
    };

    // Warm-up (caches, LRU lists, conntrack, rvsd's first upcalls), then measure.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        send(&mut gen, chunk)?;
    }
    std::thread::sleep(Duration::from_millis(100));
    let stats_before = match &dir_rvs {
        Some((l, _)) => Some(l.stats()?),
        None => None,
    };
    let sent0 = gen.count()?;
    let recv0 = sink.count()?;
    let dir0 = dir_bench.as_ref().map(BenchProgs::count).transpose()?;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        send(&mut gen, chunk)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Frames already handed to the veth are processed before the syscall
    // returns (same CPU, softirq); upcalls re-sent by rvsd may trail: they
    // count only if they arrive within the window, as in a steady state.
    let sent = gen.count()? - sent0;
    let received = sink.count()? - recv0;
    let dir_count = match (&dir_bench, dir0) {
        (Some(b), Some(c0)) => Some(b.count()? - c0),
        _ => None,
    };
    let mut line = format!(
        "director={} flows={} seconds={elapsed:.3} sent={sent} received={received} sent_mpps={:.3} received_mpps={:.3}",
        a.req("director")?,
        if new_flows { "new" } else { "one" },
        sent as f64 / elapsed / 1e6,
        received as f64 / elapsed / 1e6,
    );
    if let Some(c) = dir_count {
        if kind == DirectorKind::Drop {
            line += &format!(
                " director_dropped={c} director_mpps={:.3}",
                c as f64 / elapsed / 1e6
            );
        }
    }
    if let Some(u) = upcaller.take() {
        let (received, sent, calls) = u.stop()?;
        line +=
            &format!(" upcall_received={received} upcall_sent={sent} upcall_send_calls={calls}");
    }
    if let (Some((l, method)), Some(before)) = (&dir_rvs, stats_before) {
        let after = l.stats()?;
        let delta = |s: Stat| after[s as usize] - before[s as usize];
        line += &format!(
            " rvs_rx={} rvs_fwd={} rvs_stat={}",
            delta(Stat::Rx),
            delta(method_stat(*method)),
            method_stat(*method).name()
        );
        for s in Stat::ALL {
            let d = delta(s);
            if d > 0 && s != Stat::Rx && s != method_stat(*method) {
                line += &format!(" rvs_{}={d}", s.name());
            }
        }
    }
    println!("{line}");
    Ok(())
}

/// The userspace side of an upcall case: the director's XDP program hands
/// every frame up; a thread pinned to its own CPU rewrites the Ethernet
/// header (to the generator, as rvsd's re-send after a decision) and sends it
/// back out of the director's interface.
struct Upcaller {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<(u64, u64, u64), String>>,
    // Keeps the director's program attached (and its maps) for the case.
    _progs: BenchProgs,
}

/// Frames handled per wake-up, as rvsd's `EVENT_BATCH` order of magnitude.
const UPCALL_BATCH: usize = 64;

impl Upcaller {
    fn start(
        transport: Transport,
        ifindex: u32,
        ifname: &str,
        queue: u32,
        cpu: usize,
        macs: [[u8; 6]; 2],
    ) -> Result<Upcaller, Error> {
        use std::sync::atomic::AtomicBool;
        use std::sync::{mpsc, Arc};

        let mut progs = BenchProgs::load()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = stop.clone();
        let ring = match transport {
            Transport::Xsk => None,
            Transport::Ring | Transport::RingBatched => {
                let map = progs
                    .ebpf
                    .take_map("bench_ring")
                    .ok_or("bench object has no map bench_ring")?;
                Some(aya::maps::RingBuf::try_from(map)?)
            }
        };
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Option<std::os::fd::OwnedFd>, String>>();
        // The thread is created here, so it shares this thread's namespace.
        let thread = std::thread::spawn(move || {
            let mut pin = nix::sched::CpuSet::new();
            let _ = pin.set(cpu);
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &pin);
            let rewrite = |f: &mut [u8]| {
                if f.len() >= 12 {
                    f[0..6].copy_from_slice(&macs[0]);
                    f[6..12].copy_from_slice(&macs[1]);
                }
            };
            let (mut received, mut sent, mut calls) = (0u64, 0u64, 0u64);
            match ring {
                None => {
                    let mut xsk = match rvs_sys::XskSocket::open(ifindex, queue, 8192) {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return Err(e.to_string());
                        }
                    };
                    use std::os::fd::AsFd;
                    let dup = xsk.as_fd().try_clone_to_owned().map_err(|e| e.to_string());
                    let _ = ready_tx.send(dup.map(Some));
                    while !stop_thread.load(std::sync::atomic::Ordering::Relaxed) {
                        let n = xsk
                            .forward(UPCALL_BATCH as u32, |f| {
                                rewrite(f);
                                true
                            })
                            .map_err(|e| e.to_string())?;
                        if n == 0 {
                            let mut fds = [nix::poll::PollFd::new(
                                xsk.as_fd(),
                                nix::poll::PollFlags::POLLIN,
                            )];
                            let _ = nix::poll::poll(&mut fds, 10u16);
                        }
                    }
                    let c = xsk.counters();
                    received = c.received;
                    sent = c.sent;
                    calls = c.kicks;
                }
                Some(mut ring) => {
                    let sender = match rvs_sys::FrameSender::open(ifindex) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return Err(e.to_string());
                        }
                    };
                    let _ = ready_tx.send(Ok(None));
                    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(UPCALL_BATCH);
                    while !stop_thread.load(std::sync::atomic::Ordering::Relaxed) {
                        batch.clear();
                        while batch.len() < UPCALL_BATCH {
                            let Some(item) = ring.next() else { break };
                            // bench_upcall: len (4), pad (4), frame.
                            let len = item
                                .get(0..4)
                                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                                .map_or(0, u32::from_ne_bytes)
                                as usize;
                            if let Some(frame) = item.get(8..8 + len) {
                                let mut f = frame.to_vec();
                                rewrite(&mut f);
                                batch.push(f);
                            }
                        }
                        received += batch.len() as u64;
                        if batch.is_empty() {
                            let mut fds = [nix::poll::PollFd::new(
                                std::os::fd::AsFd::as_fd(&ring),
                                nix::poll::PollFlags::POLLIN,
                            )];
                            let _ = nix::poll::poll(&mut fds, 10u16);
                            continue;
                        }
                        if transport == Transport::RingBatched {
                            calls += 1;
                            sent += sender.send_many(&batch).unwrap_or(0) as u64;
                        } else {
                            for f in &batch {
                                calls += 1;
                                if sender.send(f).is_ok() {
                                    sent += 1;
                                }
                            }
                        }
                    }
                }
            }
            Ok((received, sent, calls))
        });
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|e| format!("upcall thread did not start: {e}"))??;
        if let Some(fd) = ready {
            let map = progs
                .ebpf
                .map_mut("bench_xsks")
                .ok_or("bench object has no map bench_xsks")?;
            let mut xsks: aya::maps::XskMap<&mut MapData> = aya::maps::XskMap::try_from(map)?;
            xsks.set(queue, std::os::fd::AsRawFd::as_raw_fd(&fd), 0)?;
        }
        let name = if transport == Transport::Xsk {
            "xdp_upcall_xsk"
        } else {
            "xdp_upcall_ring"
        };
        progs.load_and_attach(name, ifname)?;
        Ok(Upcaller {
            stop,
            thread,
            _progs: progs,
        })
    }

    /// Stops the thread; returns frames received, frames sent and send calls.
    fn stop(self) -> Result<(u64, u64, u64), Error> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let out = self.thread.join().map_err(|_| "upcall thread panicked")??;
        Ok(out)
    }
}

/// The kernel's mean ns per run of `prog` over `frame`, best of `rounds`
/// rounds of `repeat` runs, and the verdict it returned.
fn run_cost(
    prog: &Xdp,
    frame: &[u8],
    ingress: u32,
    repeat: u32,
    rounds: u32,
) -> Result<(f64, u32), Error> {
    let ctx = xdp_md(frame.len(), ingress);
    let mut best = f64::INFINITY;
    let mut verdict = 0;
    for _ in 0..rounds {
        let mut out = [0u8; 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::new()
        };
        let r = prog.test_run(opts)?;
        verdict = r.return_value;
        best = best.min(r.duration.as_nanos() as f64);
    }
    Ok((best, verdict))
}

fn verdict_name(v: u32) -> &'static str {
    match v {
        0 => "ABORTED",
        1 => "DROP",
        2 => "PASS",
        3 => "TX",
        4 => "REDIRECT",
        _ => "?",
    }
}

/// Installs `e` into a raw load of the rvs_xdp object (the loader keeps its
/// program to itself; a repeat count needs the program handle).
fn install_raw(ebpf: &mut Ebpf, e: &Entries, tx_ifindex: u32) -> Result<(), Error> {
    let take = |ebpf: &mut Ebpf, n: &str| ebpf.take_map(n).ok_or(format!("no map {n}"));
    let mut config: Array<MapData, [u8; Config::SIZE]> =
        Array::try_from(take(ebpf, "rvs_config")?)?;
    config.set(0, e.config.to_bytes(), 0)?;
    let mut vips: HashMap<MapData, [u8; VipKey::SIZE], [u8; Vip::SIZE]> =
        HashMap::try_from(take(ebpf, "rvs_vips")?)?;
    vips.insert(e.vip_key.to_bytes(), e.vip.to_bytes(), 0)?;
    let mut reals: Array<MapData, [u8; Real::SIZE]> = Array::try_from(take(ebpf, "rvs_reals")?)?;
    for (i, r) in e.reals.iter().enumerate() {
        reals.set(u32::try_from(i)?, r.to_bytes(), 0)?;
    }
    let mut flows: HashMap<MapData, [u8; FlowKey::SIZE], [u8; Flow::SIZE]> =
        HashMap::try_from(take(ebpf, "rvs_flows")?)?;
    flows.insert(e.flow_key.to_bytes(), e.flow.to_bytes(), 0)?;
    let mut tx: DevMapHash<MapData> = DevMapHash::try_from(take(ebpf, "rvs_tx")?)?;
    tx.insert(tx_ifindex, tx_ifindex, None, 0)?;
    Ok(())
}

fn cost(a: &Args) -> Result<(), Error> {
    let dir_ns = a.req("dir-ns")?;
    let dir_ifindex: u32 = a.num("dir-ifindex", 0)?;
    let gen_mac = a.mac("gen-mac")?;
    let dir_mac = a.mac("dir-mac")?;
    let repeat: u32 = a.num("repeat", 1_000_000)?;
    let rounds: u32 = a.num("rounds", 3)?;
    rvs_sys::netns::enter(dir_ns)?;
    // Ingress on the namespace's loopback, egress d0: both programs redirect.
    let lo = 1;
    let frame = client_frame(dir_mac, gen_mac, false);

    let mut base = BenchProgs::load()?;
    base.set_tx(dir_ifindex)?;
    let p = base.program("xdp_redirect_peer")?;
    p.load()?;
    let (ns, v) = run_cost(p, &frame, lo, repeat, rounds)?;
    println!(
        "program=xdp_redirect_peer ns_per_packet={ns:.1} verdict={}",
        verdict_name(v)
    );

    // DR only: a non-live repeat runs the program again over the frame it
    // left behind, and only DR's rewrite (the MACs) leaves a frame that still
    // matches the flow. NAT, FullNAT and TUN would be measured on their own
    // output (a miss) after the first run.
    let (name, method) = ("dr", abi::METHOD_DR);
    let mut ebpf = Ebpf::load(rvs_xdp::XDP_OBJECT)?;
    {
        // Loaded before the maps are taken out: loading resolves their fds.
        let p: &mut Xdp = ebpf
            .program_mut("rvs_xdp")
            .ok_or("no program rvs_xdp")?
            .try_into()?;
        p.load()?;
    }
    install_raw(
        &mut ebpf,
        &entries(method, dir_ifindex, gen_mac, dir_mac),
        dir_ifindex,
    )?;
    let p: &Xdp = ebpf
        .program("rvs_xdp")
        .ok_or("no program rvs_xdp")?
        .try_into()?;
    let (ns, v) = run_cost(p, &frame, lo, repeat, rounds)?;
    println!(
        "program=rvs_xdp method={name} ns_per_packet={ns:.1} verdict={}",
        verdict_name(v)
    );
    Ok(())
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = raw.split_first() else {
        eprintln!("{}", usage());
        return ExitCode::from(2);
    };
    let result = Args::parse(rest).and_then(|a| match cmd.as_str() {
        "live" => live(&a),
        "cost" => cost(&a),
        _ => Err(usage().into()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvs-xdp-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The kernel stack (the nftables case) drops frames with bad checksums:
    /// both must be right, for SYNs and ACKs.
    #[test]
    fn client_frames_carry_correct_checksums() {
        for syn in [true, false] {
            let f = client_frame([2; 6], [4; 6], syn);
            let (ip, rest) = etherparse::Ipv4Header::from_slice(&f[14..]).unwrap();
            assert_eq!(ip.header_checksum, ip.calc_header_checksum());
            assert_eq!(ip.source, CLIENT.octets());
            assert_eq!(ip.destination, VIP.octets());
            let (tcp, _) = etherparse::TcpHeader::from_slice(&rest[..20]).unwrap();
            assert_eq!(tcp.checksum, tcp.calc_checksum_ipv4(&ip, &[]).unwrap());
            assert_eq!((tcp.syn, tcp.ack), (syn, !syn));
            assert_eq!(tcp.destination_port, VIP_PORT);
        }
    }
}
