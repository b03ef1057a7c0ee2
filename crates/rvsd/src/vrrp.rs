//! rvsd's VRRP driver: runs the `vrrp_instance` blocks of a keepalived.conf with
//! the rvs-vrrp state machine, doing its I/O: raw IP protocol 112 sockets (one
//! per interface and family, multicast group joined when an instance uses it),
//! the virtual addresses over rtnetlink, gratuitous ARP / unsolicited NA frames
//! over AF_PACKET, tracked interfaces (polled every 100 ms) and `vrrp_script`s,
//! notify scripts, and the status behind `GET /v1/vrrp`.
//!
//! Invariants:
//! - The state machine is the only one to decide; the driver carries out its
//!   actions in order (an advert goes out before the addresses are added, the
//!   gratuitous ARPs after), and feeds it every packet, timer and tracker report.
//! - A received packet is demultiplexed by socket and VRID; what no instance
//!   claims or cannot be read is counted, never acted on.
//! - On stop every master sends priority 0 and removes its addresses before the
//!   task ends (rvsd waits for it).
//! - With `lvs_sync_daemon`, the connection sync daemons follow the named
//!   instance's state as keepalived's do ([`sync_steps`]).
//! - The data plane needs nothing from here: the socket plane listens on every
//!   virtual service with IP_FREEBIND, so it serves a VIP from the moment the
//!   address is on the interface.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rvs_api::{VrrpCountersView, VrrpGroupView, VrrpInstanceView, VrrpTrackerView, VrrpView};
use rvs_config::model::Script;
use rvs_core::time::Time;
use rvs_sys::{Addresses, FrameSender, VrrpSocket};
use rvs_vrrp::{
    Action, Counters, InstanceConfig, Notice, NoticeTarget, Received, State, TrackerConfig, Vrrp,
};
use rvs_wire::vrrp::{VrrpVersion, VRRP_MCAST_V4, VRRP_MCAST_V6};
use tokio::sync::{mpsc, watch};

use crate::keepalived::scripts;
use crate::keepalived::vrrp_plan::{NotifyPlan, ScriptPlan, SyncDaemonPlan, TrackPlan, VrrpPlan};
use crate::sync::{DaemonConfig, Role, SyncDaemons, SyncError};

/// How often tracked interfaces are looked at.
const LINK_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum VrrpStartError {
    #[error("vrrp_instance {instance}: {source}")]
    System {
        instance: String,
        source: rvs_sys::SysError,
    },
    #[error("vrrp_instance {instance}: no {family} address on {interface} to send adverts from (give unicast_src_ip or mcast_src_ip)")]
    NoSource {
        instance: String,
        family: &'static str,
        interface: String,
    },
    #[error(transparent)]
    Config(#[from] rvs_vrrp::ConfigError),
    #[error("netlink: {0}")]
    Netlink(rvs_sys::SysError),
}

/// One address an instance adds, resolved to its interface.
struct Address {
    addr: IpAddr,
    prefix: u8,
    label: Option<String>,
    ifindex: u32,
    mac: [u8; 6],
    frames: usize,
}

/// What the driver knows of an instance beyond its state-machine config.
struct InstanceIo {
    interface: String,
    src: IpAddr,
    dsts: Vec<IpAddr>,
    socket: usize,
    addresses: Vec<Address>,
    notify: NotifyPlan,
}

struct SocketIo {
    interface: String,
    v6: bool,
    socket: Arc<VrrpSocket>,
}

/// Who hears about a tracked object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Interface(usize),
    Script(usize),
}

struct Incoming {
    socket: usize,
    bytes: Vec<u8>,
    meta: rvs_sys::Received,
}

pub struct Driver {
    vrrp: Vrrp,
    io: Vec<InstanceIo>,
    sockets: Vec<SocketIo>,
    frames: Vec<(u32, FrameSender)>,
    addresses: Addresses,
    group_notify: Vec<NotifyPlan>,
    group_members: Vec<Vec<usize>>,
    scripts: Vec<ScriptPlan>,
    /// Tracked interface names, and who tracks each.
    links: Vec<(String, Vec<(usize, usize)>)>,
    /// Per script: who tracks it.
    script_users: Vec<Vec<(usize, usize)>>,
    status: Arc<Mutex<VrrpView>>,
    epoch: Instant,
    unknown_vrid: u64,
    bad_ip_header: u64,
    sync: Option<SyncLink>,
}

/// The sync daemons under `lvs_sync_daemon`, and the last state of the
/// instance they follow.
struct SyncLink {
    daemons: SyncDaemons,
    instance: usize,
    config: DaemonConfig,
    last: Option<State>,
}

/// What to do with a sync daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncStep {
    Start(Role),
    Stop(Role),
}

/// What keepalived does with the sync daemons when VRRP starts: the backup
/// daemon, whatever the instance will become (keepalived/vrrp/vrrp_scheduler.c
/// vrrp_init_state, lines 225-230 and 259-265: the instance is not yet master
/// there; it turns master right after, which then switches the daemons).
pub const SYNC_AT_STARTUP: [SyncStep; 1] = [SyncStep::Start(Role::Backup)];

/// keepalived's rule for the sync daemons when the `lvs_sync_daemon` instance
/// goes from `was` to `now`:
/// - becoming MASTER stops the backup daemon and starts the master one
///   (vrrp.c:1702-1703 vrrp_state_become_master -> ipvs_syncd_master,
///   check/ipvswrapper.c:970);
/// - leaving MASTER (for BACKUP or FAULT) stops the master daemon and starts
///   the backup one (vrrp.c:1787-1791 vrrp_state_leave_master, only when the
///   addresses were set, i.e. it was master -> ipvs_syncd_backup,
///   ipvswrapper.c:978); BACKUP <-> FAULT changes nothing;
/// - stopping VRRP stops the daemon of the current role (vrrp_daemon.c:411-417).
pub fn sync_steps(was: Option<State>, now: State) -> &'static [SyncStep] {
    const BECOME_MASTER: [SyncStep; 2] =
        [SyncStep::Stop(Role::Backup), SyncStep::Start(Role::Master)];
    const LEAVE_MASTER: [SyncStep; 2] =
        [SyncStep::Stop(Role::Master), SyncStep::Start(Role::Backup)];
    const STOP_MASTER: [SyncStep; 1] = [SyncStep::Stop(Role::Master)];
    const STOP_BACKUP: [SyncStep; 1] = [SyncStep::Stop(Role::Backup)];
    let was_master = was == Some(State::Master);
    match now {
        State::Stop if was_master => &STOP_MASTER,
        State::Stop => &STOP_BACKUP,
        State::Master if !was_master => &BECOME_MASTER,
        State::Master => &[],
        State::Backup | State::Fault | State::Init if was_master => &LEAVE_MASTER,
        State::Backup | State::Fault | State::Init => &[],
    }
}

fn sys(instance: &str) -> impl FnOnce(rvs_sys::SysError) -> VrrpStartError + '_ {
    move |source| VrrpStartError::System {
        instance: instance.to_string(),
        source,
    }
}

impl Driver {
    /// Resolves interfaces and addresses and opens the sockets; nothing is sent
    /// yet. Must run inside the tokio runtime.
    pub fn open(plan: &VrrpPlan, epoch: Instant) -> Result<Driver, VrrpStartError> {
        let addresses = Addresses::new().map_err(VrrpStartError::Netlink)?;
        let mut sockets: Vec<SocketIo> = Vec::new();
        let mut frames: Vec<(u32, FrameSender)> = Vec::new();
        let mut links: Vec<(String, Vec<(usize, usize)>)> = Vec::new();
        let mut script_users = vec![Vec::new(); plan.scripts.len()];
        let mut configs = Vec::new();
        let mut io = Vec::new();
        for (i, ip) in plan.instances.iter().enumerate() {
            let iface = rvs_sys::interface(&ip.interface).map_err(sys(&ip.name))?;
            let src = match ip.src {
                Some(s) => s,
                None => rvs_sys::interface_addrs(&ip.interface, ip.v6)
                    .map_err(sys(&ip.name))?
                    .first()
                    .map(|(a, _)| *a)
                    .ok_or_else(|| VrrpStartError::NoSource {
                        instance: ip.name.clone(),
                        family: if ip.v6 { "IPv6" } else { "IPv4" },
                        interface: ip.interface.clone(),
                    })?,
            };
            let dsts = if ip.unicast_peers.is_empty() {
                vec![if ip.v6 {
                    IpAddr::V6(VRRP_MCAST_V6)
                } else {
                    IpAddr::V4(VRRP_MCAST_V4)
                }]
            } else {
                ip.unicast_peers.clone()
            };
            let socket = match sockets
                .iter()
                .position(|s| s.interface == ip.interface && s.v6 == ip.v6)
            {
                Some(s) => s,
                None => {
                    let join = plan.instances.iter().any(|o| {
                        o.interface == ip.interface && o.v6 == ip.v6 && o.unicast_peers.is_empty()
                    });
                    let socket = VrrpSocket::open(&ip.interface, iface.index, ip.v6, join)
                        .map_err(sys(&ip.name))?;
                    sockets.push(SocketIo {
                        interface: ip.interface.clone(),
                        v6: ip.v6,
                        socket: Arc::new(socket),
                    });
                    sockets.len() - 1
                }
            };
            let mut addrs = Vec::new();
            for a in ip.vips.iter().chain(&ip.excluded) {
                let dev = match &a.dev {
                    Some(d) if d != &ip.interface => {
                        rvs_sys::interface(d).map_err(sys(&ip.name))?
                    }
                    _ => iface.clone(),
                };
                let f = match frames.iter().position(|(idx, _)| *idx == dev.index) {
                    Some(f) => f,
                    None => {
                        frames.push((
                            dev.index,
                            FrameSender::open(dev.index).map_err(sys(&ip.name))?,
                        ));
                        frames.len() - 1
                    }
                };
                addrs.push(Address {
                    addr: a.address,
                    prefix: a.prefix,
                    label: a.label.clone(),
                    ifindex: dev.index,
                    mac: dev.mac,
                    frames: f,
                });
            }
            let mut trackers = Vec::new();
            for (t, tp) in ip.trackers.iter().enumerate() {
                match tp {
                    TrackPlan::Interface {
                        name,
                        weight,
                        reverse,
                    } => {
                        let up = rvs_sys::link_up(name).unwrap_or(false);
                        match links.iter_mut().find(|(n, _)| n == name) {
                            Some((_, users)) => users.push((i, t)),
                            None => links.push((name.clone(), vec![(i, t)])),
                        }
                        trackers.push(TrackerConfig {
                            name: format!("interface {name}"),
                            weight: *weight,
                            reverse: *reverse,
                            initial: Some(up),
                        });
                    }
                    TrackPlan::Script {
                        index,
                        weight,
                        reverse,
                    } => {
                        let s = &plan.scripts[*index];
                        script_users[*index].push((i, t));
                        trackers.push(TrackerConfig {
                            name: format!("script {}", s.name),
                            weight: *weight,
                            reverse: *reverse,
                            initial: s.init_fail.then_some(false),
                        });
                    }
                }
            }
            configs.push(InstanceConfig {
                name: ip.name.clone(),
                vrid: ip.vrid,
                version: ip.version,
                priority: ip.priority,
                advert_int: ip.advert_int,
                want_master: ip.want_master,
                nopreempt: ip.nopreempt,
                preempt_delay: ip.preempt_delay,
                auth_pass: ip.auth_pass,
                vips: ip.vips.iter().map(|a| a.address).collect(),
                unicast: !ip.unicast_peers.is_empty(),
                local_addr: src,
                garp: ip.garp,
                lower_prio_no_advert: ip.lower_prio_no_advert,
                trackers,
                down_timer_adverts: ip.down_timer_adverts,
            });
            io.push(InstanceIo {
                interface: ip.interface.clone(),
                src,
                dsts,
                socket,
                addresses: addrs,
                notify: ip.notify.clone(),
            });
        }
        let groups = plan
            .groups
            .iter()
            .map(|g| rvs_vrrp::GroupConfig {
                name: g.name.clone(),
                members: g.members.clone(),
            })
            .collect();
        let vrrp = Vrrp::new(configs, groups)?;
        Ok(Driver {
            vrrp,
            io,
            sockets,
            frames,
            addresses,
            group_notify: plan.groups.iter().map(|g| g.notify.clone()).collect(),
            group_members: plan.groups.iter().map(|g| g.members.clone()).collect(),
            scripts: plan.scripts.clone(),
            links,
            script_users,
            status: Arc::new(Mutex::new(VrrpView::default())),
            epoch,
            unknown_vrid: 0,
            bad_ip_header: 0,
            sync: None,
        })
    }

    /// Lets the `lvs_sync_daemon` plan drive `daemons` (keepalived runs the
    /// IPVS sync daemons from its VRRP process).
    pub fn attach_sync_daemons(&mut self, plan: &SyncDaemonPlan, daemons: SyncDaemons) {
        self.sync = Some(SyncLink {
            daemons,
            instance: plan.instance,
            config: plan.config.clone(),
            last: None,
        });
    }

    /// Carries out sync daemon steps; failures are logged as keepalived logs
    /// its ipvs_syncd_cmd errors, and the instance goes on.
    async fn sync_do(&self, steps: &[SyncStep]) {
        let Some(link) = &self.sync else { return };
        for step in steps {
            let result = match *step {
                SyncStep::Start(role) => {
                    link.daemons
                        .start(DaemonConfig {
                            role,
                            ..link.config.clone()
                        })
                        .await
                }
                SyncStep::Stop(role) => link.daemons.stop(role).await,
            };
            match result {
                Ok(()) => {}
                // Stopping what does not run is the usual first half of a switch.
                Err(e @ SyncError::NotRunning(_)) => tracing::debug!(error = %e, "lvs_sync_daemon"),
                Err(e) => tracing::error!(error = %e, "lvs_sync_daemon"),
            }
        }
    }

    /// The sync daemons follow the `lvs_sync_daemon` instance's new state.
    async fn sync_follow(&mut self, instance: usize, state: State) {
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        if link.instance != instance || link.last == Some(state) {
            return;
        }
        let steps = sync_steps(link.last, state);
        link.last = Some(state);
        self.sync_do(steps).await;
    }

    /// The status the API serves; updated after every event.
    pub fn status(&self) -> Arc<Mutex<VrrpView>> {
        self.status.clone()
    }

    fn now(&self) -> Time {
        Time::from_millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Runs until `quit` turns true, then resigns every mastership.
    pub async fn run(mut self, mut quit: watch::Receiver<bool>) {
        let (packet_tx, mut packets) = mpsc::channel::<Incoming>(1024);
        let (track_tx, mut tracks) = mpsc::channel::<(Source, bool)>(256);
        let mut tasks = Vec::new();
        for (idx, s) in self.sockets.iter().enumerate() {
            let socket = s.socket.clone();
            let tx = packet_tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    match socket.recv(&mut buf).await {
                        Ok(meta) => {
                            let bytes = buf.get(..meta.len).unwrap_or(&[]).to_vec();
                            if tx
                                .send(Incoming {
                                    socket: idx,
                                    bytes,
                                    meta,
                                })
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "VRRP receive");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }));
        }
        let names: Vec<String> = self.links.iter().map(|(n, _)| n.clone()).collect();
        let mut last: Vec<bool> = names
            .iter()
            .map(|n| rvs_sys::link_up(n).unwrap_or(false))
            .collect();
        {
            let tx = track_tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(LINK_POLL);
                loop {
                    every.tick().await;
                    for (k, name) in names.iter().enumerate() {
                        let up = rvs_sys::link_up(name).unwrap_or(false);
                        if up != last[k] {
                            last[k] = up;
                            tracing::info!(interface = %name, up, "tracked interface changed");
                            if tx.send((Source::Interface(k), up)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }));
        }
        for (k, script) in self.scripts.iter().enumerate() {
            if self.script_users[k].is_empty() {
                continue;
            }
            tasks.push(tokio::spawn(run_script(
                k,
                script.clone(),
                track_tx.clone(),
            )));
        }
        drop(packet_tx);
        drop(track_tx);

        // Addresses left by an rvsd that died as master: no instance is master
        // yet, so none of them may stay.
        for io in &self.io {
            for a in &io.addresses {
                if let Err(e) = self.addresses.del(a.ifindex, a.addr, a.prefix).await {
                    tracing::warn!(address = %a.addr, error = %e, "cannot clear a stale virtual address");
                }
            }
        }
        self.sync_do(&SYNC_AT_STARTUP).await;
        let now = self.now();
        self.vrrp.start(now);
        self.execute().await;
        self.publish();
        loop {
            let deadline = self.vrrp.poll_timeout().map(|t| {
                tokio::time::Instant::from_std(self.epoch + Duration::from_millis(t.as_millis()))
            });
            tokio::select! {
                Some(p) = packets.recv() => {
                    let now = self.now();
                    self.on_packet(p, now);
                }
                Some((source, up)) = tracks.recv() => {
                    let now = self.now();
                    let users = match source {
                        Source::Interface(k) => self.links.get(k).map(|(_, u)| u.clone()),
                        Source::Script(k) => self.script_users.get(k).cloned(),
                    };
                    for (i, t) in users.unwrap_or_default() {
                        self.vrrp.handle_tracker(i, t, up, now);
                    }
                }
                _ = sleep_until(deadline) => {
                    let now = self.now();
                    self.vrrp.handle_timeout(now);
                }
                _ = quit.wait_for(|v| *v) => break,
            }
            self.execute().await;
            self.publish();
        }
        let now = self.now();
        self.vrrp.shutdown(now);
        self.execute().await;
        self.publish();
        for t in tasks {
            t.abort();
        }
    }

    fn on_packet(&mut self, p: Incoming, now: Time) {
        let Some(sock) = self.sockets.get(p.socket) else {
            return;
        };
        let (payload, src, dst, hop_limit) = if sock.v6 {
            (&p.bytes[..], p.meta.src, p.meta.dst, p.meta.hop_limit)
        } else {
            match rvs_wire::ipv4::parse_ipv4(&p.bytes) {
                Ok((h, payload)) => (payload, IpAddr::V4(h.src), IpAddr::V4(h.dst), Some(h.ttl)),
                Err(e) => {
                    self.bad_ip_header += 1;
                    tracing::debug!(error = %e, "VRRP: unreadable IPv4 header");
                    return;
                }
            }
        };
        let Some(&vrid) = payload.get(1) else {
            self.bad_ip_header += 1;
            return;
        };
        let Some(i) = (0..self.io.len()).find(|&i| {
            self.io[i].socket == p.socket && self.vrrp.config(i).is_some_and(|c| c.vrid == vrid)
        }) else {
            self.unknown_vrid += 1;
            return;
        };
        let rx = Received {
            payload,
            src,
            dst,
            hop_limit,
        };
        if let Err(reason) = self.vrrp.handle_packet(i, rx, now) {
            let name = self
                .vrrp
                .config(i)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            tracing::debug!(instance = %name, %src, %reason, "VRRP packet dropped");
        }
    }

    /// Carries out the machine's actions in order.
    async fn execute(&mut self) {
        while let Some(action) = self.vrrp.poll_action() {
            match action {
                Action::SendAdvert { instance, advert } => {
                    let Some(io) = self.io.get(instance) else {
                        continue;
                    };
                    let socket = &self.sockets[io.socket].socket;
                    for &dst in &io.dsts {
                        match advert.emit(io.src, dst) {
                            Ok(bytes) => {
                                if let Err(e) = socket.send(io.src, dst, &bytes).await {
                                    tracing::warn!(interface = %io.interface, %dst, error = %e, "VRRP advert not sent");
                                }
                            }
                            Err(e) => tracing::error!(error = %e, "VRRP advert cannot be built"),
                        }
                    }
                }
                Action::AddAddresses { instance } => {
                    let Some(io) = self.io.get(instance) else {
                        continue;
                    };
                    for a in &io.addresses {
                        if let Err(e) = self
                            .addresses
                            .add(a.ifindex, a.addr, a.prefix, a.label.as_deref())
                            .await
                        {
                            tracing::error!(address = %a.addr, error = %e, "cannot add virtual address");
                        }
                    }
                }
                Action::RemoveAddresses { instance } => {
                    let Some(io) = self.io.get(instance) else {
                        continue;
                    };
                    for a in &io.addresses {
                        if let Err(e) = self.addresses.del(a.ifindex, a.addr, a.prefix).await {
                            tracing::error!(address = %a.addr, error = %e, "cannot remove virtual address");
                        }
                    }
                }
                Action::Gratuitous { instance, repeat } => {
                    let Some(io) = self.io.get(instance) else {
                        continue;
                    };
                    for a in &io.addresses {
                        let frame = match a.addr {
                            IpAddr::V4(v4) => rvs_wire::arp::gratuitous_arp(a.mac, v4).to_vec(),
                            IpAddr::V6(v6) => rvs_wire::ndisc::unsolicited_na(a.mac, v6, false),
                        };
                        for _ in 0..repeat {
                            if let Err(e) = self.frames[a.frames].1.send(&frame) {
                                tracing::warn!(address = %a.addr, error = %e, "gratuitous ARP/NA not sent");
                                break;
                            }
                        }
                    }
                }
                Action::Notify(n) => {
                    // keepalived switches the daemons after the notifications
                    // when becoming master (vrrp.c vrrp_state_become_master),
                    // before them otherwise (vrrp_state_leave_master, stop_vrrp).
                    let instance = match n.target {
                        NoticeTarget::Instance(i) => Some(i),
                        NoticeTarget::Group(_) => None,
                    };
                    let state = n.state;
                    if state == State::Master {
                        self.notify(n);
                    }
                    if let Some(i) = instance {
                        self.sync_follow(i, state).await;
                    }
                    if state != State::Master {
                        self.notify(n);
                    }
                }
            }
        }
    }

    /// Logs a state change as keepalived does and runs its scripts: the one for
    /// the state, then `notify` with TYPE NAME STATE PRIORITY.
    fn notify(&self, n: Notice) {
        let (kind, name, plan) = match n.target {
            NoticeTarget::Instance(i) => (
                "INSTANCE",
                self.vrrp
                    .config(i)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                self.io.get(i).map(|io| &io.notify),
            ),
            NoticeTarget::Group(g) => (
                "GROUP",
                self.vrrp.group_name(g).unwrap_or_default().to_string(),
                self.group_notify.get(g),
            ),
        };
        tracing::info!("({name}) Entering {} STATE", n.state.as_str());
        let Some(plan) = plan else { return };
        let specific = match n.state {
            State::Master => plan.master.as_ref(),
            State::Backup => plan.backup.as_ref(),
            State::Fault => plan.fault.as_ref(),
            State::Stop => plan.stop.as_ref(),
            State::Init => None,
        };
        let why = format!("{kind} {name} {}", n.state.as_str());
        if let Some(s) = specific {
            scripts::run(s, &why);
        }
        if let Some(s) = &plan.generic {
            let command = format!(
                "{} {kind} \"{name}\" {} {}",
                s.command,
                n.state.as_str(),
                n.priority
            );
            scripts::run(
                &Script {
                    command,
                    user: s.user.clone(),
                },
                &why,
            );
        }
    }

    fn publish(&self) {
        let mut instances = Vec::with_capacity(self.io.len());
        for (i, io) in self.io.iter().enumerate() {
            let (Some(st), Some(cfg)) = (self.vrrp.status(i), self.vrrp.config(i)) else {
                continue;
            };
            instances.push(VrrpInstanceView {
                name: st.name,
                interface: io.interface.clone(),
                vrid: st.vrid,
                version: match cfg.version {
                    VrrpVersion::V2 => 2,
                    VrrpVersion::V3 => 3,
                },
                state: st.state.as_str().to_string(),
                base_priority: st.base_priority,
                effective_priority: st.effective_priority,
                advert_int_ms: st.advert_int.as_millis(),
                master_adver_int_ms: st.master_adver_int.as_millis(),
                source: io.src.to_string(),
                master: st.master.map(|(a, _)| a.to_string()),
                master_priority: st.master.map(|(_, p)| p),
                virtual_addresses: io
                    .addresses
                    .iter()
                    .map(|a| format!("{}/{}", a.addr, a.prefix))
                    .collect(),
                addresses_set: st.addresses_set,
                trackers: st
                    .trackers
                    .into_iter()
                    .map(|(name, up)| VrrpTrackerView { name, up })
                    .collect(),
                last_transition_ms: st.last_transition.map(|t| t.as_millis()),
                counters: counters_view(&st.counters),
            });
        }
        let groups = (0..self.group_notify.len())
            .filter_map(|g| {
                Some(VrrpGroupView {
                    name: self.vrrp.group_name(g)?.to_string(),
                    state: self.vrrp.group_state(g)?.as_str().to_string(),
                    members: self
                        .group_members
                        .get(g)
                        .map(|m| {
                            m.iter()
                                .filter_map(|&i| self.vrrp.config(i).map(|c| c.name.clone()))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })
            .collect();
        let view = VrrpView {
            instances,
            groups,
            unknown_vrid: self.unknown_vrid,
            bad_ip_header: self.bad_ip_header,
        };
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = view;
    }
}

fn counters_view(c: &Counters) -> VrrpCountersView {
    VrrpCountersView {
        adverts_received: c.adverts_received,
        adverts_sent: c.adverts_sent,
        priority_zero_received: c.priority_zero_received,
        priority_zero_sent: c.priority_zero_sent,
        became_master: c.became_master,
        released_master: c.released_master,
        dropped: c.dropped(),
        length_errors: c.length_errors,
        ttl_errors: c.ttl_errors,
        version_errors: c.version_errors,
        type_errors: c.type_errors,
        checksum_errors: c.checksum_errors,
        invalid_auth_type: c.invalid_auth_type,
        auth_type_mismatch: c.auth_type_mismatch,
        auth_failures: c.auth_failures,
        advert_interval_errors: c.advert_interval_errors,
        address_list_errors: c.address_list_errors,
        delivery_errors: c.delivery_errors,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A `vrrp_script`: runs every `interval` (killed after `timeout`); `rise`
/// successes in a row make it up, `fall` failures down; its first result
/// decides at once (keepalived's init state).
async fn run_script(index: usize, plan: ScriptPlan, tx: mpsc::Sender<(Source, bool)>) {
    let Some(words) = scripts::split_words(&plan.command.command).filter(|w| !w.is_empty()) else {
        tracing::error!(script = %plan.name, "vrrp_script: cannot split the command line");
        return;
    };
    let mut state: Option<bool> = plan.init_fail.then_some(false);
    let mut run_of = (true, 0u32);
    let mut every = tokio::time::interval(Duration::from_millis(plan.interval.as_millis()));
    loop {
        every.tick().await;
        let mut cmd = tokio::process::Command::new(&words[0]);
        cmd.args(&words[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let ok = match cmd.spawn() {
            Ok(mut child) => {
                match tokio::time::timeout(
                    Duration::from_millis(plan.timeout.as_millis()),
                    child.wait(),
                )
                .await
                {
                    Ok(Ok(status)) => status.success(),
                    Ok(Err(_)) => false,
                    Err(_) => {
                        let _ = child.kill().await;
                        false
                    }
                }
            }
            Err(e) => {
                tracing::warn!(script = %plan.name, error = %e, "vrrp_script did not start");
                false
            }
        };
        run_of = if run_of.0 == ok {
            (ok, run_of.1.saturating_add(1))
        } else {
            (ok, 1)
        };
        let need = if ok { plan.rise } else { plan.fall };
        let decided = match state {
            None => Some(ok),
            Some(s) if s != ok && run_of.1 >= need => Some(ok),
            _ => None,
        };
        if let Some(up) = decided {
            state = Some(up);
            tracing::info!(script = %plan.name, up, "VRRP script state");
            if tx.send((Source::Script(index), up)).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which daemon runs after following `states` from VRRP's start, with
    /// the daemons as a set (starting a running one or stopping a stopped one
    /// fails and changes nothing, as with ipvsadm).
    fn run_through(states: &[State]) -> Vec<(State, Option<Role>, Option<Role>)> {
        let (mut master, mut backup) = (false, false);
        let apply = |steps: &[SyncStep], master: &mut bool, backup: &mut bool| {
            for s in steps {
                match *s {
                    SyncStep::Start(Role::Master) => *master = true,
                    SyncStep::Start(Role::Backup) => *backup = true,
                    SyncStep::Stop(Role::Master) => *master = false,
                    SyncStep::Stop(Role::Backup) => *backup = false,
                }
            }
        };
        apply(&SYNC_AT_STARTUP, &mut master, &mut backup);
        let mut last = None;
        let mut out = Vec::new();
        for &s in states {
            apply(sync_steps(last, s), &mut master, &mut backup);
            last = Some(s);
            out.push((
                s,
                master.then_some(Role::Master),
                backup.then_some(Role::Backup),
            ));
        }
        out
    }

    #[test]
    fn the_daemons_follow_the_instance_as_keepalived_switches_them() {
        use State::*;
        let m = Some(Role::Master);
        let b = Some(Role::Backup);
        assert_eq!(
            run_through(&[Backup, Master, Backup, Fault, Backup, Master, Fault, Master, Stop]),
            vec![
                (Backup, None, b),
                (Master, m, None),
                (Backup, None, b),
                (Fault, None, b),
                (Backup, None, b),
                (Master, m, None),
                (Fault, None, b),
                (Master, m, None),
                (Stop, None, None),
            ]
        );
        // An owner goes straight to MASTER; a backup that stops stops its daemon.
        assert_eq!(run_through(&[Master]), vec![(Master, m, None)]);
        assert_eq!(
            run_through(&[Backup, Stop]),
            vec![(Backup, None, b), (Stop, None, None)]
        );
        assert_eq!(
            run_through(&[Fault, Stop]),
            vec![(Fault, None, b), (Stop, None, None)]
        );
    }
}
