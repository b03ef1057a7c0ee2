//! The VRRP state machine of every instance and sync group of one router:
//! `handle_*` inputs (received adverts, timer expiry, tracker reports, shutdown)
//! and `poll_*` outputs (actions for the driver, the next deadline).
//!
//! The rules are RFC 3768 section 6 / RFC 5798 section 6 as keepalived 2.2.7 runs
//! them (keepalived/vrrp/vrrp.c `vrrp_state_backup`, `vrrp_state_master_rx`,
//! `vrrp_state_master_tx`, `vrrp_state_leave_master`, `vrrp_state_leave_fault`;
//! vrrp_scheduler.c `vrrp_init_state`, `try_up_instance`; vrrp_track.c
//! `down_instance`, `vrrp_set_effective_priority`; vrrp_sync.c):
//! - Master_Down_Interval = `down_timer_adverts` x Master_Adver_Interval + Skew,
//!   Skew = (256 - priority)/256 s (v2) or (256 - priority) x
//!   Master_Adver_Interval/256 (v3), at the instance's effective priority.
//! - A backup restarts its down timer on an advert of higher or equal priority
//!   (or any priority with `nopreempt`, or while `preempt_delay` runs); it lets a
//!   lower-priority advert pass, so its timer runs out and it preempts. Priority 0
//!   cuts the timer to Skew.
//! - A master yields to a higher priority, or an equal one from a higher address;
//!   it answers priority 0 and lower priorities with an advert of its own.
//! - Becoming master: advert first (so the old master drops the addresses), then
//!   the addresses, a gratuitous ARP/NA burst, a second burst `garp_master_delay`
//!   later. Leaving for FAULT or stopping sends priority 0.
//! - Members of a sync group go MASTER only when all want to, and follow each
//!   other to BACKUP and FAULT.
//!
//! Invariants: the machine never reads a clock (time is an input, milliseconds);
//! a packet that fails a check changes nothing but its counter; every state
//! change is reported once as a [`Notice`]; addresses are added once per
//! mastership and removed once when it ends.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::net::IpAddr;

use rvs_core::time::{Span, Time};
use rvs_wire::vrrp::{VrrpError, VrrpRepr, VrrpVersion, VRRP_TTL};

use crate::config::{ConfigError, GroupConfig, InstanceConfig, PRIORITY_OWNER, PRIORITY_STOP};

/// RFC 3768 6.4 states, plus STOP after shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Init,
    Backup,
    Master,
    Fault,
    Stop,
}

impl State {
    /// keepalived's spelling (notify scripts' third argument, status output).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
            State::Stop => "STOP",
        }
    }
}

/// One received VRRP packet as the driver got it.
#[derive(Clone, Copy, Debug)]
pub struct Received<'a> {
    /// The VRRP message (the IP payload).
    pub payload: &'a [u8],
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 TTL / IPv6 hop limit, when the socket reported it.
    pub hop_limit: Option<u8>,
}

/// Why a packet was dropped; each has a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("length does not match the address count")]
    Length,
    #[error("TTL/hop limit is not 255")]
    Ttl,
    #[error("version differs from the instance's")]
    Version,
    #[error("not an ADVERTISEMENT")]
    Type,
    #[error("bad checksum")]
    Checksum,
    #[error("invalid authentication type")]
    InvalidAuthType,
    #[error("authentication type differs from the instance's")]
    AuthTypeMismatch,
    #[error("authentication failed")]
    AuthFailure,
    #[error("advertisement interval differs (VRRPv2)")]
    AdvertInterval,
    #[error("address list differs from the instance's")]
    AddressList,
    #[error("multicast where unicast was expected, or the reverse")]
    Delivery,
}

/// Per-instance packet and transition counters (keepalived's `vrrp_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub adverts_received: u64,
    pub adverts_sent: u64,
    pub priority_zero_received: u64,
    pub priority_zero_sent: u64,
    pub became_master: u64,
    pub released_master: u64,
    pub length_errors: u64,
    pub ttl_errors: u64,
    pub version_errors: u64,
    pub type_errors: u64,
    pub checksum_errors: u64,
    pub invalid_auth_type: u64,
    pub auth_type_mismatch: u64,
    pub auth_failures: u64,
    pub advert_interval_errors: u64,
    pub address_list_errors: u64,
    pub delivery_errors: u64,
}

impl Counters {
    fn count(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Length => &mut self.length_errors,
            DropReason::Ttl => &mut self.ttl_errors,
            DropReason::Version => &mut self.version_errors,
            DropReason::Type => &mut self.type_errors,
            DropReason::Checksum => &mut self.checksum_errors,
            DropReason::InvalidAuthType => &mut self.invalid_auth_type,
            DropReason::AuthTypeMismatch => &mut self.auth_type_mismatch,
            DropReason::AuthFailure => &mut self.auth_failures,
            DropReason::AdvertInterval => &mut self.advert_interval_errors,
            DropReason::AddressList => &mut self.address_list_errors,
            DropReason::Delivery => &mut self.delivery_errors,
        };
        *c += 1;
    }

    /// Packets dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.length_errors
            + self.ttl_errors
            + self.version_errors
            + self.type_errors
            + self.checksum_errors
            + self.invalid_auth_type
            + self.auth_type_mismatch
            + self.auth_failures
            + self.advert_interval_errors
            + self.address_list_errors
            + self.delivery_errors
    }
}

/// Whose state a notice is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeTarget {
    Instance(usize),
    Group(usize),
}

/// A state change to tell the world about (notify scripts, logs, the data plane).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    pub target: NoticeTarget,
    pub state: State,
    /// The instance's effective priority (0 for groups).
    pub priority: u8,
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this advert from the instance's source address to the multicast group
    /// or each unicast peer.
    SendAdvert {
        instance: usize,
        advert: VrrpRepr,
    },
    /// Add the instance's virtual addresses to its interface.
    AddAddresses {
        instance: usize,
    },
    /// Remove them.
    RemoveAddresses {
        instance: usize,
    },
    /// A burst of gratuitous ARPs / unsolicited NAs: `repeat` per virtual address.
    Gratuitous {
        instance: usize,
        repeat: u32,
    },
    Notify(Notice),
}

/// What the status API shows of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceStatus {
    pub name: String,
    pub vrid: u8,
    pub state: State,
    pub want_state: State,
    pub base_priority: u8,
    pub effective_priority: u8,
    pub advert_int: Span,
    pub master_adver_int: Span,
    /// The last master heard (address, priority).
    pub master: Option<(IpAddr, u8)>,
    pub addresses_set: bool,
    /// Per tracker: name and last state (`None` before the first report).
    pub trackers: Vec<(String, Option<bool>)>,
    pub last_transition: Option<Time>,
    pub counters: Counters,
}

struct Tracker {
    weight: i32,
    reverse: bool,
    up: Option<bool>,
}

impl Tracker {
    /// keepalived/vrrp/vrrp_track.c: a positive weight counts while up, a negative
    /// one while down; `reverse` flips the sign.
    fn contribution(&self) -> i32 {
        match self.up {
            Some(up) if self.weight != 0 && (self.weight > 0) == up => {
                if self.reverse {
                    -self.weight
                } else {
                    self.weight
                }
            }
            _ => 0,
        }
    }

    /// A weight-0 tracker faults the instance when down (when up with `reverse`).
    fn faults(&self) -> bool {
        self.weight == 0 && self.up.is_some_and(|up| up == self.reverse)
    }

    fn holds_init(&self) -> bool {
        self.weight == 0 && self.up.is_none()
    }
}

struct Instance {
    cfg: InstanceConfig,
    group: Option<usize>,
    trackers: Vec<Tracker>,
    state: State,
    want: State,
    effective_priority: u8,
    master_adver_int: Span,
    /// Master_Down_Interval, or the shorter wait set by a priority-0 advert.
    down_interval: Span,
    /// The instance's timer: next advert (MASTER) or master down (BACKUP).
    deadline: Option<Time>,
    garp_second_burst: Option<Time>,
    garp_refresh_due: Option<Time>,
    preempt_until: Option<Time>,
    addresses_set: bool,
    master: Option<(IpAddr, u8)>,
    notified: Option<State>,
    last_transition: Option<Time>,
    counters: Counters,
}

impl Instance {
    fn new(cfg: InstanceConfig) -> Self {
        let trackers = cfg
            .trackers
            .iter()
            .map(|t| Tracker {
                weight: t.weight,
                reverse: t.reverse,
                up: t.initial,
            })
            .collect();
        let mut inst = Instance {
            group: None,
            trackers,
            state: State::Init,
            want: if cfg.want_master {
                State::Master
            } else {
                State::Backup
            },
            effective_priority: cfg.priority,
            master_adver_int: cfg.advert_int,
            down_interval: Span::from_millis(0),
            deadline: None,
            garp_second_burst: None,
            garp_refresh_due: None,
            preempt_until: None,
            addresses_set: false,
            master: None,
            notified: None,
            last_transition: None,
            counters: Counters::default(),
            cfg,
        };
        inst.effective_priority = inst.total_priority();
        inst.down_interval = inst.master_down_interval();
        inst
    }

    fn is_owner(&self) -> bool {
        self.cfg.priority == PRIORITY_OWNER
    }

    /// The base priority plus tracker weights, clamped to 1..=254; the owner's
    /// priority never moves (keepalived `vrrp_set_effective_priority`).
    fn total_priority(&self) -> u8 {
        if self.is_owner() {
            return PRIORITY_OWNER;
        }
        let total: i32 = i32::from(self.cfg.priority)
            + self.trackers.iter().map(Tracker::contribution).sum::<i32>();
        u8::try_from(total.clamp(1, i32::from(PRIORITY_OWNER) - 1)).unwrap_or(1)
    }

    fn faulty(&self) -> bool {
        self.trackers.iter().any(Tracker::faults)
    }

    fn init_held(&self) -> bool {
        self.trackers.iter().any(Tracker::holds_init)
    }

    /// Skew_Time at a given priority difference `256 - p` (keepalived's
    /// VRRP_TIMER_SKEW_CALC): milliseconds, truncated.
    fn skew_for(&self, diff: u64) -> Span {
        match self.cfg.version {
            VrrpVersion::V2 => Span::from_millis(diff * 1000 / 256),
            VrrpVersion::V3 => {
                let centis = self.master_adver_int.as_millis() / 10;
                Span::from_millis(diff * centis * 10 / 256)
            }
        }
    }

    fn skew(&self) -> Span {
        self.skew_for(256 - u64::from(self.effective_priority))
    }

    fn master_down_interval(&self) -> Span {
        Span::from_millis(
            u64::from(self.cfg.down_timer_adverts) * self.master_adver_int.as_millis()
                + self.skew().as_millis(),
        )
    }

    fn advert(&self, priority: u8) -> VrrpRepr {
        let (auth_type, auth_data) = match (self.cfg.version, self.cfg.auth_pass) {
            (VrrpVersion::V2, Some(pass)) => (1, pass),
            _ => (0, [0; 8]),
        };
        VrrpRepr {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            priority,
            adver_int_cs: u16::try_from(self.cfg.advert_int.as_millis() / 10).unwrap_or(u16::MAX),
            auth_type,
            auth_data,
            addresses: self.cfg.vips.clone(),
        }
    }

    /// keepalived `vrrp_init_instance_sands`.
    fn arm_timer(&mut self, now: Time) {
        self.deadline = match self.state {
            State::Master => Some(now + self.cfg.advert_int),
            State::Backup => Some(now + self.down_interval),
            _ => None,
        };
    }

    /// keepalived `vrrp_check_packet` (and the VIP check after it), in its order
    /// where the decoder allows.
    fn check(&mut self, rx: &Received<'_>) -> Result<VrrpRepr, DropReason> {
        if rx.payload.len() < 8 {
            return Err(DropReason::Length);
        }
        // RFC 3768 7.1 / RFC 5798 7.1: TTL must be 255 (not checked for unicast).
        if !self.cfg.unicast && rx.hop_limit.is_some_and(|ttl| ttl != VRRP_TTL) {
            return Err(DropReason::Ttl);
        }
        let repr = VrrpRepr::parse(rx.payload, rx.src, rx.dst).map_err(|e| match e {
            VrrpError::BadVersion(_) => DropReason::Version,
            VrrpError::BadType(_) => DropReason::Type,
            VrrpError::BadChecksum => DropReason::Checksum,
            VrrpError::Truncated | VrrpError::BadLength { .. } | VrrpError::FamilyMismatch => {
                DropReason::Length
            }
        })?;
        if repr.version != self.cfg.version {
            return Err(DropReason::Version);
        }
        if repr.version == VrrpVersion::V2 {
            if repr.auth_type > 2 {
                return Err(DropReason::InvalidAuthType);
            }
            let want_type = if self.cfg.auth_pass.is_some() { 1 } else { 0 };
            if repr.auth_type != want_type {
                return Err(DropReason::AuthTypeMismatch);
            }
            if let Some(pass) = self.cfg.auth_pass {
                if repr.auth_data != pass {
                    return Err(DropReason::AuthFailure);
                }
            }
            if u64::from(repr.adver_int_cs) * 10 != self.cfg.advert_int.as_millis() {
                return Err(DropReason::AdvertInterval);
            }
        }
        if repr.addresses.len() != self.cfg.vips.len() {
            return Err(DropReason::AddressList);
        }
        if rx.dst.is_multicast() == self.cfg.unicast {
            return Err(DropReason::Delivery);
        }
        if repr.addresses.iter().any(|a| !self.cfg.vips.contains(a)) {
            return Err(DropReason::AddressList);
        }
        Ok(repr)
    }
}

struct Group {
    cfg: GroupConfig,
    state: State,
    notified: Option<State>,
}

/// Every VRRP instance and sync group of one router.
pub struct Vrrp {
    instances: Vec<Instance>,
    groups: Vec<Group>,
    actions: VecDeque<Action>,
}

impl Vrrp {
    pub fn new(
        instances: Vec<InstanceConfig>,
        groups: Vec<GroupConfig>,
    ) -> Result<Vrrp, ConfigError> {
        for cfg in &instances {
            cfg.validate()?;
        }
        let mut instances: Vec<Instance> = instances.into_iter().map(Instance::new).collect();
        for (g, group) in groups.iter().enumerate() {
            for &m in &group.members {
                let inst = instances
                    .get_mut(m)
                    .ok_or_else(|| ConfigError::GroupMember {
                        group: group.name.clone(),
                        member: m,
                    })?;
                if inst.group.is_some() {
                    return Err(ConfigError::TwoGroups {
                        instance: inst.cfg.name.clone(),
                    });
                }
                inst.group = Some(g);
            }
        }
        let groups = groups
            .into_iter()
            .map(|cfg| Group {
                cfg,
                state: State::Init,
                notified: None,
            })
            .collect();
        Ok(Vrrp {
            instances,
            groups,
            actions: VecDeque::new(),
        })
    }

    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }

    pub fn config(&self, instance: usize) -> Option<&InstanceConfig> {
        self.instances.get(instance).map(|i| &i.cfg)
    }

    pub fn state(&self, instance: usize) -> Option<State> {
        self.instances.get(instance).map(|i| i.state)
    }

    pub fn group_state(&self, group: usize) -> Option<State> {
        self.groups.get(group).map(|g| g.state)
    }

    pub fn group_name(&self, group: usize) -> Option<&str> {
        self.groups.get(group).map(|g| g.cfg.name.as_str())
    }

    pub fn status(&self, instance: usize) -> Option<InstanceStatus> {
        let i = self.instances.get(instance)?;
        Some(InstanceStatus {
            name: i.cfg.name.clone(),
            vrid: i.cfg.vrid,
            state: i.state,
            want_state: i.want,
            base_priority: i.cfg.priority,
            effective_priority: i.effective_priority,
            advert_int: i.cfg.advert_int,
            master_adver_int: i.master_adver_int,
            master: i.master,
            addresses_set: i.addresses_set,
            trackers: i
                .cfg
                .trackers
                .iter()
                .zip(&i.trackers)
                .map(|(c, t)| (c.name.clone(), t.up))
                .collect(),
            last_transition: i.last_transition,
            counters: i.counters,
        })
    }

    /// The next time [`Vrrp::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.instances
            .iter()
            .flat_map(|i| [i.deadline, i.garp_second_burst])
            .flatten()
            .min()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Leaves INIT (keepalived `vrrp_init_state`): each instance goes BACKUP with
    /// its down timer running (at once for an owner that wants MASTER; one advert
    /// interval for a sync-group member that wants MASTER), or FAULT while a
    /// weight-0 tracker is down or has not reported.
    pub fn start(&mut self, now: Time) {
        for g in 0..self.groups.len() {
            let members = self.groups[g].cfg.members.clone();
            let any_fault = members.iter().any(|&m| self.instances[m].faulty());
            let any_init = members.iter().any(|&m| self.instances[m].init_held());
            self.groups[g].state = if any_fault {
                State::Fault
            } else if any_init {
                State::Init
            } else {
                State::Backup
            };
        }
        for i in 0..self.instances.len() {
            let group_state = self.instances[i].group.map(|g| self.groups[g].state);
            let inst = &mut self.instances[i];
            let up = !inst.faulty();
            let held = inst.init_held();
            let new_state = group_state.unwrap_or(inst.want);
            if up
                && !held
                && new_state == State::Master
                && inst.want == State::Master
                && inst.is_owner()
            {
                // The owner takes over at once; MASTER is its first notice.
                inst.state = State::Backup;
                inst.down_interval = Span::from_millis(0);
                inst.arm_timer(now);
                inst.last_transition = Some(now);
                continue;
            } else {
                inst.down_interval = if new_state == State::Backup && inst.want == State::Master {
                    Span::from_millis(
                        inst.master_adver_int.as_millis() + inst.skew_for(1).as_millis(),
                    )
                } else {
                    inst.master_down_interval()
                };
                inst.state = if up && !held && new_state != State::Fault {
                    State::Backup
                } else {
                    State::Fault
                };
            }
            inst.arm_timer(now);
            inst.last_transition = Some(now);
            // A FAULT held only by scripts that have not run yet is not announced.
            if inst.state != State::Fault || inst.faulty() {
                self.notify_instance(i);
            }
        }
        for g in 0..self.groups.len() {
            if matches!(self.groups[g].state, State::Backup | State::Fault) {
                self.notify_group(g);
            }
        }
    }

    /// A VRRP packet for `instance` (the driver matched its interface, family and
    /// VRID). Err: it failed a check and was counted.
    pub fn handle_packet(
        &mut self,
        instance: usize,
        rx: Received<'_>,
        now: Time,
    ) -> Result<(), DropReason> {
        let Some(inst) = self.instances.get_mut(instance) else {
            return Ok(());
        };
        let before = inst.state;
        if !matches!(before, State::Backup | State::Master) {
            return Ok(());
        }
        let repr = match inst.check(&rx) {
            Ok(r) => r,
            Err(reason) => {
                inst.counters.count(reason);
                return Err(reason);
            }
        };
        inst.counters.adverts_received += 1;
        if repr.priority == PRIORITY_STOP {
            inst.counters.priority_zero_received += 1;
        }
        match before {
            State::Backup => self.backup_rx(instance, &repr, rx.src, now),
            _ => {
                if self.master_rx(instance, &repr, rx.src) {
                    self.leave_master(instance, false, now);
                }
            }
        }
        self.sync_after(instance, before, now);
        Ok(())
    }

    /// Runs every timer that is due.
    pub fn handle_timeout(&mut self, now: Time) {
        for i in 0..self.instances.len() {
            if self.instances[i]
                .garp_second_burst
                .is_some_and(|t| t <= now)
            {
                let inst = &mut self.instances[i];
                inst.garp_second_burst = None;
                if inst.addresses_set && inst.state == State::Master {
                    self.actions.push_back(Action::Gratuitous {
                        instance: i,
                        repeat: inst.cfg.garp.master_repeat,
                    });
                }
            }
            if self.instances[i].deadline.is_none_or(|t| t > now) {
                continue;
            }
            let before = self.instances[i].state;
            match before {
                State::Backup => {
                    self.instances[i].want = State::Master;
                    self.goto_master(i, now);
                }
                State::Master => self.master_tx(i, now),
                _ => self.instances[i].deadline = None,
            }
            self.sync_after(i, before, now);
            let inst = &mut self.instances[i];
            if inst.deadline.is_some_and(|t| t <= now) || before != inst.state {
                inst.arm_timer(now);
            }
        }
    }

    /// A tracked object of `instance` changed (`tracker` indexes its
    /// `InstanceConfig::trackers`).
    pub fn handle_tracker(&mut self, instance: usize, tracker: usize, up: bool, now: Time) {
        let Some(inst) = self.instances.get_mut(instance) else {
            return;
        };
        let Some(t) = inst.trackers.get_mut(tracker) else {
            return;
        };
        if t.up == Some(up) {
            return;
        }
        let weighted = t.weight != 0;
        let was_faulty = inst.faulty();
        let was_held = inst.init_held();
        inst.trackers[tracker].up = Some(up);
        if weighted {
            self.set_effective_priority(instance, now);
            return;
        }
        if matches!(inst.state, State::Stop) {
            return;
        }
        let faulty = inst.faulty();
        let held = inst.init_held();
        if faulty && (!was_faulty || was_held) {
            self.down_instance(instance, now);
        } else if !faulty && !held && (was_faulty || was_held) {
            self.try_up_instance(instance, now);
        }
    }

    /// Stops every instance (keepalived's shutdown): a master sends priority 0 and
    /// removes its addresses; every instance reports STOP.
    pub fn shutdown(&mut self, now: Time) {
        for i in 0..self.instances.len() {
            if self.instances[i].state == State::Stop {
                continue;
            }
            if self.instances[i].addresses_set || self.instances[i].state == State::Master {
                self.restore_interface(i, true);
            }
            let inst = &mut self.instances[i];
            inst.state = State::Stop;
            inst.want = State::Stop;
            inst.deadline = None;
            inst.garp_second_burst = None;
            inst.last_transition = Some(now);
            self.notify_instance(i);
        }
        for g in 0..self.groups.len() {
            self.groups[g].state = State::Stop;
            self.notify_group(g);
        }
    }

    // ---- transitions --------------------------------------------------------

    fn send_advert(&mut self, i: usize, priority: u8) {
        let inst = &mut self.instances[i];
        inst.counters.adverts_sent += 1;
        if priority == PRIORITY_STOP {
            inst.counters.priority_zero_sent += 1;
        }
        let advert = inst.advert(priority);
        self.actions.push_back(Action::SendAdvert {
            instance: i,
            advert,
        });
    }

    fn notify_instance(&mut self, i: usize) {
        let inst = &mut self.instances[i];
        if inst.notified == Some(inst.state) {
            return;
        }
        inst.notified = Some(inst.state);
        self.actions.push_back(Action::Notify(Notice {
            target: NoticeTarget::Instance(i),
            state: inst.state,
            priority: inst.effective_priority,
        }));
    }

    fn notify_group(&mut self, g: usize) {
        let group = &mut self.groups[g];
        if group.notified == Some(group.state) {
            return;
        }
        group.notified = Some(group.state);
        self.actions.push_back(Action::Notify(Notice {
            target: NoticeTarget::Group(g),
            state: group.state,
            priority: 0,
        }));
    }

    /// keepalived `vrrp_state_goto_master`.
    fn goto_master(&mut self, i: usize, now: Time) {
        if self.instances[i].group.is_some() && !self.sync_can_goto_master(i, now) {
            self.instances[i].want = State::Master;
            return;
        }
        let inst = &mut self.instances[i];
        inst.state = State::Master;
        inst.arm_timer(now);
        self.master_tx(i, now);
    }

    /// keepalived `vrrp_state_master_tx`: the periodic advert; on the first one of
    /// a mastership, take the addresses and announce them.
    fn master_tx(&mut self, i: usize, now: Time) {
        let prio = self.instances[i].effective_priority;
        self.send_advert(i, prio);
        let inst = &mut self.instances[i];
        if !inst.addresses_set {
            inst.counters.became_master += 1;
            inst.master_adver_int = inst.cfg.advert_int;
            inst.addresses_set = true;
            inst.master = Some((inst.cfg.local_addr, prio));
            inst.last_transition = Some(now);
            let garp = inst.cfg.garp;
            inst.garp_refresh_due = garp.refresh.map(|r| now + r);
            inst.garp_second_burst =
                (garp.master_delay.as_millis() > 0).then(|| now + garp.master_delay);
            self.actions.push_back(Action::AddAddresses { instance: i });
            self.actions.push_back(Action::Gratuitous {
                instance: i,
                repeat: garp.master_repeat,
            });
            self.notify_instance(i);
        } else if let (Some(due), Some(every)) = (inst.garp_refresh_due, inst.cfg.garp.refresh) {
            if now > due {
                inst.garp_refresh_due = Some(now + every);
                let repeat = inst.cfg.garp.refresh_repeat;
                self.actions.push_back(Action::Gratuitous {
                    instance: i,
                    repeat,
                });
            }
        }
        let inst = &mut self.instances[i];
        inst.deadline = Some(now + inst.cfg.advert_int);
    }

    /// keepalived `vrrp_restore_interface`.
    fn restore_interface(&mut self, i: usize, resign: bool) {
        if resign {
            self.send_advert(i, PRIORITY_STOP);
        }
        let inst = &mut self.instances[i];
        inst.garp_second_burst = None;
        inst.garp_refresh_due = None;
        if inst.addresses_set {
            inst.addresses_set = false;
            self.actions
                .push_back(Action::RemoveAddresses { instance: i });
        }
    }

    /// keepalived `vrrp_state_leave_master`: to `want` (BACKUP or FAULT).
    fn leave_master(&mut self, i: usize, resign: bool, now: Time) {
        let want = self.instances[i].want;
        match want {
            State::Backup => self.instances[i].preempt_until = None,
            // Entering FAULT tells the backups to take over now.
            State::Fault => self.send_advert(i, PRIORITY_STOP),
            _ => return,
        }
        self.restore_interface(i, resign && want != State::Fault);
        let inst = &mut self.instances[i];
        inst.state = want;
        inst.counters.released_master += 1;
        inst.last_transition = Some(now);
        inst.down_interval = inst.master_down_interval();
        inst.arm_timer(now);
        self.notify_instance(i);
    }

    /// keepalived `vrrp_state_leave_fault`: to `want` (MASTER, BACKUP or FAULT).
    fn leave_fault(&mut self, i: usize, now: Time) {
        let inst = &mut self.instances[i];
        inst.master_adver_int = inst.cfg.advert_int;
        if inst.want == State::Master {
            self.goto_master(i, now);
        } else {
            if inst.want == State::Fault && inst.state == State::Master {
                self.send_advert(i, PRIORITY_STOP);
                self.restore_interface(i, false);
            }
            let inst = &mut self.instances[i];
            if inst.state != inst.want {
                inst.last_transition = Some(now);
            }
            inst.state = inst.want;
            if inst.state == State::Backup {
                inst.preempt_until = None;
            }
            self.notify_instance(i);
        }
        let inst = &mut self.instances[i];
        inst.down_interval = inst.master_down_interval();
        if inst.state != State::Master {
            inst.arm_timer(now);
        }
    }

    /// keepalived `vrrp_state_backup`.
    fn backup_rx(&mut self, i: usize, adv: &VrrpRepr, src: IpAddr, now: Time) {
        let inst = &mut self.instances[i];
        if adv.priority == PRIORITY_STOP {
            // RFC 3768 6.4.2: the master resigned; take over after Skew_Time.
            inst.down_interval = inst.skew();
            inst.arm_timer(now);
            return;
        }
        let preempt_delay_running = inst.cfg.preempt_delay.as_millis() > 0
            && inst.preempt_until.is_none_or(|until| until > now);
        if inst.cfg.nopreempt || adv.priority >= inst.effective_priority || preempt_delay_running {
            if inst.cfg.version == VrrpVersion::V3 {
                // RFC 5798 6.4.2: learn Master_Adver_Interval from the advert.
                inst.master_adver_int = Span::from_millis(u64::from(adv.adver_int_cs) * 10);
            }
            inst.down_interval = inst.master_down_interval();
            inst.master = Some((src, adv.priority));
            if inst.cfg.preempt_delay.as_millis() > 0 {
                if adv.priority >= inst.effective_priority {
                    inst.preempt_until = None;
                } else if inst.preempt_until.is_none() {
                    inst.preempt_until = Some(now + inst.cfg.preempt_delay);
                }
            }
            inst.want = State::Backup;
            inst.arm_timer(now);
        } else {
            // A lower priority while we may preempt: let the down timer run out.
            inst.master = Some((src, adv.priority));
        }
    }

    /// keepalived `vrrp_state_master_rx`; true: leave for BACKUP.
    fn master_rx(&mut self, i: usize, adv: &VrrpRepr, src: IpAddr) -> bool {
        let inst = &mut self.instances[i];
        let mine = inst.effective_priority;
        // Which address is higher decides a tie (RFC 5798 6.4.3).
        let addr_cmp = compare_addresses(src, inst.cfg.local_addr);
        if adv.priority == PRIORITY_STOP {
            self.send_advert(i, mine);
            return false;
        }
        if adv.priority == mine && addr_cmp != Ordering::Equal && mine == PRIORITY_OWNER {
            // Two owners: keepalived reports it and steps its own priority down.
            let inst = &mut self.instances[i];
            inst.effective_priority = PRIORITY_OWNER - 1;
            inst.cfg.priority = PRIORITY_OWNER - 1;
        }
        let mine = self.instances[i].effective_priority;
        if adv.priority < mine || (adv.priority == mine && addr_cmp == Ordering::Less) {
            if !self.instances[i].cfg.lower_prio_no_advert {
                self.send_advert(i, mine);
            }
            return false;
        }
        if adv.priority > mine || (adv.priority == mine && addr_cmp == Ordering::Greater) {
            let inst = &mut self.instances[i];
            if inst.cfg.version == VrrpVersion::V3 {
                inst.master_adver_int = Span::from_millis(u64::from(adv.adver_int_cs) * 10);
            }
            inst.master = Some((src, adv.priority));
            inst.want = State::Backup;
            return true;
        }
        false
    }

    /// keepalived `down_instance`: a weight-0 tracker failed.
    fn down_instance(&mut self, i: usize, now: Time) {
        let inst = &mut self.instances[i];
        inst.want = State::Fault;
        let before = inst.state;
        if before == State::Master {
            self.leave_master(i, true, now);
        } else {
            self.leave_fault(i, now);
        }
        if let Some(g) = self.instances[i].group {
            let others_faulty = self.groups[g]
                .cfg
                .members
                .iter()
                .any(|&m| m != i && self.instances[m].faulty());
            if !others_faulty {
                self.sync_fault(i, now);
            }
        }
    }

    /// keepalived `try_up_instance`: every weight-0 tracker is up again.
    fn try_up_instance(&mut self, i: usize, now: Time) {
        let inst = &mut self.instances[i];
        inst.want = if inst.want == State::Master && inst.is_owner() {
            State::Master
        } else {
            State::Backup
        };
        inst.master_adver_int = inst.cfg.advert_int;
        if let Some(g) = inst.group {
            let members = self.groups[g].cfg.members.clone();
            if members
                .iter()
                .any(|&m| self.instances[m].faulty() || self.instances[m].init_held())
            {
                return;
            }
        }
        let want = self.instances[i].want;
        if self.instances[i].group.is_some()
            && want == State::Master
            && !self.sync_can_goto_master(i, now)
        {
            self.instances[i].want = State::Backup;
        }
        self.leave_fault(i, now);
        self.instances[i].want = want;
        if self.instances[i].group.is_some() {
            if self.instances[i].state == State::Master {
                self.sync_master(i, now);
            } else {
                self.sync_backup(i, now);
            }
        }
    }

    /// keepalived `vrrp_set_effective_priority`: a weighted tracker changed.
    fn set_effective_priority(&mut self, i: usize, now: Time) {
        let inst = &mut self.instances[i];
        let new = inst.total_priority();
        if new == inst.effective_priority {
            return;
        }
        let old_down = inst.master_down_interval();
        inst.effective_priority = new;
        let new_down = inst.master_down_interval();
        inst.down_interval = new_down;
        if inst.state == State::Backup {
            // The running down timer moves by the change of the interval.
            if let Some(deadline) = inst.deadline {
                let ms = deadline.as_millis() + new_down.as_millis();
                let ms = ms.saturating_sub(old_down.as_millis()).max(now.as_millis());
                inst.deadline = Some(Time::from_millis(ms));
            }
        }
    }

    // ---- sync groups (keepalived/vrrp/vrrp_sync.c) ---------------------------

    fn sync_after(&mut self, i: usize, before: State, now: Time) {
        let after = self.instances[i].state;
        if before == after || self.instances[i].group.is_none() {
            return;
        }
        match after {
            State::Master => self.sync_master(i, now),
            State::Backup => self.sync_backup(i, now),
            State::Fault => self.sync_fault(i, now),
            _ => {}
        }
    }

    /// A member goes MASTER only when the group already is, or every other member
    /// wants to; otherwise it waits another down interval.
    fn sync_can_goto_master(&mut self, i: usize, now: Time) -> bool {
        let Some(g) = self.instances[i].group else {
            return true;
        };
        if self.groups[g].state == State::Master {
            return true;
        }
        let others_ready = self.groups[g]
            .cfg
            .members
            .iter()
            .all(|&m| m == i || self.instances[m].want == State::Master);
        if !others_ready {
            let inst = &mut self.instances[i];
            inst.down_interval = inst.master_down_interval();
            inst.deadline = Some(now + inst.down_interval);
        }
        others_ready
    }

    fn sync_master(&mut self, i: usize, now: Time) {
        let Some(g) = self.instances[i].group else {
            return;
        };
        if self.groups[g].state == State::Master || !self.sync_can_goto_master(i, now) {
            return;
        }
        for m in self.groups[g].cfg.members.clone() {
            if m != i && self.instances[m].state != State::Master {
                self.instances[m].want = State::Master;
                self.goto_master(m, now);
            }
        }
        self.groups[g].state = State::Master;
        self.notify_group(g);
    }

    fn sync_backup(&mut self, i: usize, now: Time) {
        let Some(g) = self.instances[i].group else {
            return;
        };
        if self.groups[g].state == State::Backup {
            return;
        }
        for m in self.groups[g].cfg.members.clone() {
            if m == i || self.instances[m].state == State::Backup {
                continue;
            }
            self.instances[m].want = State::Backup;
            if matches!(self.instances[m].state, State::Fault | State::Init) {
                self.leave_fault(m, now);
            } else {
                self.leave_master(m, false, now);
            }
        }
        self.groups[g].state = State::Backup;
        self.notify_group(g);
    }

    fn sync_fault(&mut self, i: usize, now: Time) {
        let Some(g) = self.instances[i].group else {
            return;
        };
        if self.groups[g].state == State::Fault {
            return;
        }
        for m in self.groups[g].cfg.members.clone() {
            if m == i || self.instances[m].state == State::Fault {
                continue;
            }
            self.instances[m].want = State::Fault;
            if self.instances[m].state == State::Master {
                self.leave_master(m, false, now);
            } else {
                self.leave_fault(m, now);
            }
        }
        self.groups[g].state = State::Fault;
        self.notify_group(g);
    }
}

/// Addresses compared as keepalived compares them (byte order of the address).
fn compare_addresses(a: IpAddr, b: IpAddr) -> Ordering {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets().cmp(&b.octets()),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets().cmp(&b.octets()),
        _ => Ordering::Equal,
    }
}
