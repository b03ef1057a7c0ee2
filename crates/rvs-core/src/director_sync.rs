//! The director's side of connection synchronisation (see [`crate::sync`]):
//! the master's announcement rule run on inbound traffic, the full-table
//! export, and the backup's import. Kernel references are
//! net/netfilter/ipvs/ip_vs_sync.c (`ip_vs_sync_conn`,
//! `ip_vs_sync_conn_needed`, `ip_vs_proc_conn`) and ip_vs_ctl.c
//! (`ip_vs_find_dest`).

use super::*;
use crate::sync::{
    ImportError, SyncCounters, SyncMaster, SyncParams, SyncedConn, DEFAULT_TEMPLATE_TIMEOUT,
};

/// Whether a connection in this state is announced at all (the state filter
/// of `ip_vs_sync_conn_needed`).
fn state_synced(c: &Conn) -> bool {
    if c.flags.template {
        return true;
    }
    match proto_of(c) {
        Some(Protocol::Tcp) => matches!(
            TcpState::from_index(c.state),
            Some(
                TcpState::Established
                    | TcpState::FinWait
                    | TcpState::Close
                    | TcpState::CloseWait
                    | TcpState::TimeWait
            )
        ),
        Some(Protocol::Sctp) => matches!(
            SctpState::from_index(c.state),
            Some(
                SctpState::Established
                    | SctpState::ShutdownSent
                    | SctpState::ShutdownReceived
                    | SctpState::ShutdownAckSent
                    | SctpState::Closed
            )
        ),
        _ => true,
    }
}

/// `ip_vs_sync_conn_needed` for one entry that sees its `pkts`-th inbound
/// packet at `now`. Updates the entry's `old_state` and sync end time when it
/// says yes.
fn sync_needed(params: &SyncParams, c: &mut Conn, pkts: u32, now: Time) -> bool {
    let orig = c.sync_end_ms;
    let timeout = u64::from(c.timeout_ms);
    let now_ms = now.as_millis();
    let mut n = (now_ms + timeout) & !3;
    // A state change other than to ESTABLISHED is announced at once (`force`).
    let mut skip_rules = false;
    if c.flags.template {
        // Templates: only the refresh rule limits them.
    } else if params.persist_mode && c.control().is_some() {
        return false;
    } else if matches!(proto_of(c), Some(Protocol::Tcp | Protocol::Sctp)) {
        if !state_synced(c) {
            return false;
        }
        let established = match proto_of(c) {
            Some(Protocol::Tcp) => TcpState::Established.index(),
            _ => SctpState::Established.index(),
        };
        skip_rules = c.state != c.old_state && c.state != established;
    }
    if !skip_rules {
        let refresh = params.refresh_period.as_millis();
        if refresh > 0 {
            let diff = n.abs_diff(orig);
            let min_diff = (timeout / 2).max(10_000);
            if diff < refresh.min(min_diff) {
                let retries = orig & 3;
                if retries >= u64::from(params.retries) {
                    return false;
                }
                // time_before(now, orig - timeout + refresh / 8)
                if (now_ms as i128) < orig as i128 - timeout as i128 + (refresh / 8) as i128 {
                    return false;
                }
                n |= retries + 1;
            }
        }
        if params.period > 0 {
            if !c.flags.template && pkts % params.period != params.threshold {
                return false;
            }
        } else if refresh == 0 && pkts != params.threshold {
            return false;
        }
    }
    c.old_state = c.state;
    c.sync_end_ms = n;
    true
}

/// `ip_vs_find_dest`'s port rule: a firewall-mark service's non-NAT real
/// has port 0, so it is looked up with port 0 first, then the other.
fn dest_port_candidates(fwmark: u32, forward_is_masq: bool, dport: u16) -> [u16; 2] {
    let port = if fwmark != 0 && !forward_is_masq {
        0
    } else {
        dport
    };
    [port, port ^ dport]
}

impl Director {
    /// Starts (`Some`) or stops (`None`) announcing connections, as a master
    /// sync daemon does; stopping drops what was not yet taken.
    pub fn set_sync_master(&mut self, params: Option<SyncParams>) {
        match (params, self.sync.as_mut()) {
            (Some(p), Some(m)) => m.params = p,
            (Some(p), None) => {
                self.sync = Some(SyncMaster {
                    params: p,
                    ..SyncMaster::default()
                })
            }
            (None, _) => self.sync = None,
        }
    }

    /// Whether a master's announcements are on.
    pub fn sync_master(&self) -> Option<&SyncParams> {
        self.sync.as_ref().map(|m| &m.params)
    }

    /// What the master's rule has queued and dropped so far.
    pub fn sync_counters(&self) -> SyncCounters {
        self.sync.as_ref().map(|m| m.counters).unwrap_or_default()
    }

    /// Moves the queued announcements to `out`, oldest first.
    pub fn drain_sync(&mut self, out: &mut Vec<SyncedConn>) {
        if let Some(m) = self.sync.as_mut() {
            out.append(&mut m.queue);
        }
    }

    /// rvs extension: lets a mid-connection TCP packet (no SYN, no RST) with no
    /// entry open one when its service is scheduled by sh, dh or mh, as
    /// `sloppy_tcp` does for every service. Both directors then choose the same
    /// real server from the same table, so a flow whose announcement was lost
    /// keeps its server across a failover.
    pub fn set_hash_pickup(&mut self, on: bool) {
        self.hash_pickup = on;
    }

    pub fn hash_pickup(&self) -> bool {
        self.hash_pickup
    }

    /// Whether `p` (a TCP packet that cannot open a connection by itself) may
    /// open one under [`Director::set_hash_pickup`].
    pub(super) fn picks_up(&self, p: &Packet, proto: Protocol) -> bool {
        self.hash_pickup
            && self.find_service(p, proto).is_some_and(|sid| {
                matches!(
                    self.services[sid.index()].config.scheduler,
                    SchedulerKind::Sh | SchedulerKind::Dh | SchedulerKind::Mh
                )
            })
    }

    /// The record a master sends for entry `c`.
    fn record_of(&self, c: &Conn) -> SyncedConn {
        let dest = self.dests.get(c.dest.index());
        let fwmark = dest
            .and_then(|d| self.services.get(d.service.index()))
            .and_then(|s| s.config.key.fwmark())
            .unwrap_or(0);
        SyncedConn {
            key: c.key,
            daddr: c.daddr,
            dport: c.dport,
            fwmark,
            state: c.state,
            inactive: c.flags.inactive,
            no_output: c.flags.no_output,
            forward: dest.map_or(Forward::Route, |d| d.config.forward),
            timeout: c.timeout(),
        }
    }

    /// Queues entry `id` if the rule says so for its `pkts`-th packet.
    fn announce_if_needed(&mut self, params: &SyncParams, id: ConnId, pkts: u32, now: Time) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.flags.one_packet || c.flags.invalidated || !sync_needed(params, c, pkts, now) {
            return;
        }
        let c = c.clone();
        let rec = self.record_of(&c);
        if let Some(m) = self.sync.as_mut() {
            m.push(rec);
        }
    }

    /// `ip_vs_sync_conn`: entry `id` saw its `pkts`-th inbound packet; queue it
    /// if the rule says so, then its controlling template, whose own count
    /// goes up by one.
    pub(super) fn sync_conn(&mut self, id: ConnId, pkts: u32, now: Time) {
        let Some(params) = self.sync.as_ref().map(|m| m.params) else {
            return;
        };
        self.announce_if_needed(&params, id, pkts, now);
        // Only templates control connections, so the chain ends there.
        let Some(ct) = self.conns.get(id).and_then(Conn::control) else {
            return;
        };
        let Some(t) = self.conns.get_mut(ct) else {
            return;
        };
        let pkts = if t.flags.template {
            t.in_pkts = t.in_pkts.wrapping_add(1);
            t.in_pkts
        } else {
            params.threshold
        };
        self.announce_if_needed(&params, ct, pkts, now);
    }

    /// The announcement rule for inbound packets counted in bulk (a fast
    /// path's fold took the count from `old` to `new`): the connection is
    /// queued if some count in between would have fired, and its template if
    /// any packet came.
    pub(super) fn sync_bulk(&mut self, id: ConnId, old: u32, new: u32, now: Time) {
        let Some(params) = self.sync.as_ref().map(|m| m.params) else {
            return;
        };
        if new == old {
            return;
        }
        if let Some(p) = params.firing_count(old, new) {
            self.announce_if_needed(&params, id, p, now);
        }
        let Some(ct) = self.conns.get(id).and_then(Conn::control) else {
            return;
        };
        let Some(t) = self.conns.get_mut(ct) else {
            return;
        };
        let t_old = t.in_pkts;
        t.in_pkts = t.in_pkts.wrapping_add(new.wrapping_sub(old));
        let t_new = t.in_pkts;
        let fire = if params.period > 0 {
            Some(t_new)
        } else {
            params.firing_count(t_old, t_new)
        };
        if let Some(p) = fire {
            self.announce_if_needed(&params, ct, p, now);
        }
    }

    /// Every entry a master would announce in its current state, templates
    /// first (rvs extension: a backup that just started asks for the whole
    /// table instead of waiting for each flow's next announcement).
    pub fn sync_export(&self, out: &mut Vec<SyncedConn>) {
        let entries = || {
            self.conns
                .iter()
                .filter(|(_, c)| !c.flags.one_packet && !c.flags.invalidated && state_synced(c))
        };
        out.extend(
            entries()
                .filter(|(_, c)| c.flags.template)
                .map(|(_, c)| self.record_of(c)),
        );
        out.extend(
            entries()
                .filter(|(_, c)| !c.flags.template)
                .map(|(_, c)| self.record_of(c)),
        );
    }

    /// `ip_vs_proc_conn`: installs or updates an announced connection or
    /// template. A new entry is bound to the local real server with the same
    /// address and port in the same virtual service (found by firewall mark
    /// first, as `ip_vs_find_dest` does), counted active or inactive by its
    /// state, and expires after the announced timeout unless traffic or a later
    /// announcement refreshes it. Unlike the kernel, which keeps an entry with
    /// no destination "unbound", rvs refuses it ([`ImportError::NoDest`]): its
    /// counters always name a real server.
    pub fn import_synced(&mut self, s: &SyncedConn, now: Time) -> Result<ConnId, ImportError> {
        let template = s.key.template;
        let proto = s.key.proto;
        let active = if template {
            if s.state > 1 || (proto != PROTO_IP && Protocol::from_number(proto).is_none()) {
                return Err(ImportError::State {
                    proto,
                    state: s.state,
                });
            }
            false
        } else {
            match Protocol::from_number(proto) {
                Some(Protocol::Tcp) => TcpState::from_index(s.state)
                    .map(TcpState::is_active)
                    .ok_or(ImportError::State {
                        proto,
                        state: s.state,
                    })?,
                Some(Protocol::Sctp) => SctpState::from_index(s.state).map(sctp::is_active).ok_or(
                    ImportError::State {
                        proto,
                        state: s.state,
                    },
                )?,
                Some(Protocol::Udp) if s.state == 0 => false,
                Some(Protocol::Udp) => {
                    return Err(ImportError::State {
                        proto,
                        state: s.state,
                    })
                }
                None => return Err(ImportError::Protocol(proto)),
            }
        };
        let mut found = self.conns.lookup_in(&s.key);
        if let (Some(id), false) = (found, template) {
            let moved = self
                .conns
                .get(id)
                .is_some_and(|c| c.dport != s.dport || c.daddr != s.daddr);
            if moved {
                if s.inactive {
                    return Err(ImportError::Replaced);
                }
                self.expire(id, now);
                found = None;
            }
        }
        let timeout = if s.timeout.as_millis() > 0 {
            s.timeout
        } else if template {
            DEFAULT_TEMPLATE_TIMEOUT
        } else {
            match Protocol::from_number(proto) {
                Some(Protocol::Tcp) => self.timeouts.tcp[usize::from(s.state)],
                Some(Protocol::Sctp) => self.timeouts.sctp[usize::from(s.state)],
                _ => self.timeouts.udp,
            }
        };
        let id = match found {
            Some(id) => {
                if template {
                    if let Some(c) = self.conns.get_mut(id) {
                        c.state = s.state;
                        c.set_timeout(timeout);
                    }
                } else {
                    self.apply_transition(id, s.state, active, timeout, false);
                }
                id
            }
            None => {
                let dest = self.find_synced_dest(s)?;
                let sees_replies = self.dests[dest.index()].config.forward.sees_replies();
                let n = NewConn {
                    key: s.key,
                    daddr: s.daddr,
                    dport: s.dport,
                    dest,
                    flags: ConnFlags {
                        template,
                        inactive: true,
                        no_output: !sees_replies,
                        ..ConnFlags::default()
                    },
                    state: s.state,
                    timeout,
                    control: None,
                };
                let id = self.conns.insert(n, now, !template && sees_replies);
                self.bind(dest, template);
                if active {
                    if let Some(c) = self.conns.get_mut(id) {
                        c.flags.inactive = false;
                    }
                    let d = &mut self.dests[dest.index()];
                    d.inactive_conns = d.inactive_conns.saturating_sub(1);
                    d.active_conns += 1;
                    self.notify_load(dest);
                }
                id
            }
        };
        let threshold = self.sync.as_ref().map_or(3, |m| m.params.threshold);
        if let Some(c) = self.conns.get_mut(id) {
            c.old_state = c.state;
            c.in_pkts = threshold;
        }
        self.conns.rearm(id, now);
        Ok(id)
    }

    /// `ip_vs_find_dest`: the service by firewall mark, then address and port;
    /// the real server by address and port (port 0 first for a firewall-mark
    /// service's non-NAT real).
    fn find_synced_dest(&self, s: &SyncedConn) -> Result<DestId, ImportError> {
        let what = || {
            if s.fwmark != 0 {
                format!("fwmark {}", s.fwmark)
            } else {
                format!("{} {}:{}", s.key.proto, s.key.vaddr, s.key.vport)
            }
        };
        let family = Family::of(&s.key.vaddr);
        let by_mark = (s.fwmark != 0)
            .then(|| {
                self.by_key.get(&ServiceKey::Fwmark {
                    mark: s.fwmark,
                    family,
                })
            })
            .flatten()
            .copied();
        let sid = match by_mark {
            Some(sid) => sid,
            None => {
                let proto = Protocol::from_number(s.key.proto)
                    .ok_or_else(|| ImportError::NoService(what()))?;
                let p = Packet {
                    proto: s.key.proto,
                    saddr: s.key.caddr,
                    sport: s.key.cport,
                    daddr: s.key.vaddr,
                    dport: s.key.vport,
                    fwmark: 0,
                    tcp: TcpFlags::default(),
                    sctp: SctpInfo::default(),
                    len: 0,
                };
                self.find_service(&p, proto)
                    .ok_or_else(|| ImportError::NoService(what()))?
            }
        };
        let svc = &self.services[sid.index()];
        let masq = matches!(s.forward, Forward::Masq);
        for port in dest_port_candidates(s.fwmark, masq, s.dport) {
            if let Some(id) = svc.order.iter().copied().find(|id| {
                let c = &self.dests[id.index()].config;
                c.addr == s.daddr && c.port == port
            }) {
                return Ok(id);
            }
        }
        Err(ImportError::NoDest(format!("{}:{}", s.daddr, s.dport)))
    }
}
