//! A virtual LAN of VRRP routers in virtual time: adverts are encoded with
//! rvs-wire, carried to every other live router after `delay`, and decoded by
//! the receiver's state machine, as on a real segment. Records every action with
//! its time so tests can check what happened when.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};

use rvs_core::time::{Span, Time};
use rvs_vrrp::{Action, GroupConfig, InstanceConfig, NoticeTarget, Received, State, Vrrp};
use rvs_wire::vrrp::{VrrpRepr, VRRP_MCAST_V4, VRRP_MCAST_V6};

pub const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100));

pub fn addr(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

/// One instance config with keepalived's defaults on router `n` (address 10.0.0.n).
pub fn instance(name: &str, n: u8, priority: u8) -> InstanceConfig {
    let mut c = InstanceConfig::new(name, 51, addr(n), vec![VIP]);
    c.priority = priority;
    c
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub at: Time,
    pub router: usize,
    pub action: Action,
}

pub struct Router {
    pub vrrp: Option<Vrrp>,
    configs: Vec<InstanceConfig>,
    groups: Vec<GroupConfig>,
    /// Link up: sends and receives.
    pub link: bool,
}

struct InFlight {
    at: Time,
    from: usize,
    payload: Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
}

pub struct Lan {
    pub now: Time,
    pub routers: Vec<Router>,
    pub events: Vec<Event>,
    /// One-way delay of the segment.
    pub delay: Span,
    in_flight: Vec<InFlight>,
}

impl Lan {
    pub fn new() -> Self {
        Lan {
            now: Time::ZERO,
            routers: Vec::new(),
            events: Vec::new(),
            delay: Span::from_millis(1),
            in_flight: Vec::new(),
        }
    }

    /// Adds a router (not started).
    pub fn add(&mut self, configs: Vec<InstanceConfig>, groups: Vec<GroupConfig>) -> usize {
        self.routers.push(Router {
            vrrp: None,
            configs,
            groups,
            link: true,
        });
        self.routers.len() - 1
    }

    /// Starts (or restarts, from scratch) router `r` now.
    pub fn start(&mut self, r: usize) {
        let router = &mut self.routers[r];
        let mut vrrp = Vrrp::new(router.configs.clone(), router.groups.clone()).unwrap();
        vrrp.start(self.now);
        router.vrrp = Some(vrrp);
        router.link = true;
        self.drain(r);
    }

    pub fn start_all(&mut self) {
        for r in 0..self.routers.len() {
            self.start(r);
        }
    }

    /// The box dies: no resign, nothing sent or received any more, and its
    /// addresses go with it.
    pub fn kill(&mut self, r: usize) {
        if let Some(vrrp) = self.routers[r].vrrp.take() {
            for instance in 0..vrrp.instance_count() {
                self.events.push(Event {
                    at: self.now,
                    router: r,
                    action: Action::RemoveAddresses { instance },
                });
            }
        }
    }

    /// A clean stop: priority 0 goes out.
    pub fn stop(&mut self, r: usize) {
        if let Some(v) = self.routers[r].vrrp.as_mut() {
            v.shutdown(self.now);
        }
        self.drain(r);
        self.routers[r].vrrp = None;
    }

    pub fn vrrp(&mut self, r: usize) -> &mut Vrrp {
        self.routers[r].vrrp.as_mut().unwrap()
    }

    pub fn state(&self, r: usize, i: usize) -> Option<State> {
        self.routers[r].vrrp.as_ref().and_then(|v| v.state(i))
    }

    pub fn tracker(&mut self, r: usize, i: usize, t: usize, up: bool) {
        let now = self.now;
        self.vrrp(r).handle_tracker(i, t, up, now);
        self.drain(r);
    }

    /// Injects raw bytes as if received by router `r`'s instance `i`.
    pub fn inject(
        &mut self,
        r: usize,
        i: usize,
        rx: Received<'_>,
    ) -> Result<(), rvs_vrrp::DropReason> {
        let now = self.now;
        let res = self.vrrp(r).handle_packet(i, rx, now);
        self.drain(r);
        res
    }

    fn drain(&mut self, r: usize) {
        let Some(vrrp) = self.routers[r].vrrp.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(a) = vrrp.poll_action() {
            out.push(a);
        }
        for action in out {
            if let Action::SendAdvert { instance, advert } = &action {
                if self.routers[r].link {
                    let cfg = self.routers[r]
                        .vrrp
                        .as_ref()
                        .unwrap()
                        .config(*instance)
                        .unwrap()
                        .clone();
                    self.send(r, &cfg, advert);
                }
            }
            self.events.push(Event {
                at: self.now,
                router: r,
                action,
            });
        }
    }

    fn send(&mut self, from: usize, cfg: &InstanceConfig, advert: &VrrpRepr) {
        let dst = if cfg.is_v6() {
            IpAddr::V6(VRRP_MCAST_V6)
        } else {
            IpAddr::V4(VRRP_MCAST_V4)
        };
        let payload = advert.emit(cfg.local_addr, dst).unwrap();
        self.in_flight.push(InFlight {
            at: self.now + self.delay,
            from,
            payload,
            src: cfg.local_addr,
            dst,
            ttl: 255,
        });
    }

    /// Runs every event up to and including `until`.
    pub fn run_until(&mut self, until: Time) {
        loop {
            let next_timer = self
                .routers
                .iter()
                .filter_map(|r| r.vrrp.as_ref().and_then(Vrrp::poll_timeout))
                .min();
            let next_packet = self.in_flight.iter().map(|p| p.at).min();
            let next = match (next_timer, next_packet) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            // Packets first: a packet and a timer at the same instant meet the
            // packet first, as a socket read before a timer on one loop turn.
            if next_packet == Some(next) {
                let idx = self.in_flight.iter().position(|p| p.at == next).unwrap();
                let p = self.in_flight.remove(idx);
                for r in 0..self.routers.len() {
                    if r == p.from || !self.routers[r].link {
                        continue;
                    }
                    let Some(vrrp) = self.routers[r].vrrp.as_mut() else {
                        continue;
                    };
                    for i in 0..vrrp.instance_count() {
                        let cfg = vrrp.config(i).unwrap();
                        if cfg.vrid != p.payload[1] || cfg.is_v6() != p.src.is_ipv6() {
                            continue;
                        }
                        let rx = Received {
                            payload: &p.payload,
                            src: p.src,
                            dst: p.dst,
                            hop_limit: Some(p.ttl),
                        };
                        let _ = vrrp.handle_packet(i, rx, self.now);
                    }
                    self.drain(r);
                }
                continue;
            }
            for r in 0..self.routers.len() {
                if let Some(vrrp) = self.routers[r].vrrp.as_mut() {
                    if vrrp.poll_timeout().is_some_and(|t| t <= next) {
                        vrrp.handle_timeout(next);
                        self.drain(r);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, span: Span) {
        let until = self.now + span;
        self.run_until(until);
    }

    /// When router `r`'s instance `i` last entered `state` (its notice), after `since`.
    pub fn entered(&self, r: usize, i: usize, state: State, since: Time) -> Option<Time> {
        self.events
            .iter()
            .filter(|e| e.router == r && e.at >= since)
            .find_map(|e| match e.action {
                Action::Notify(n) if n.target == NoticeTarget::Instance(i) && n.state == state => {
                    Some(e.at)
                }
                _ => None,
            })
    }

    /// Which routers hold instance `i`'s addresses, from the Add/Remove actions.
    pub fn holders(&self, i: usize) -> Vec<usize> {
        let mut held = vec![false; self.routers.len()];
        for e in &self.events {
            match e.action {
                Action::AddAddresses { instance } if instance == i => held[e.router] = true,
                Action::RemoveAddresses { instance } if instance == i => held[e.router] = false,
                _ => {}
            }
        }
        (0..self.routers.len()).filter(|&r| held[r]).collect()
    }

    /// Adverts router `r` sent, with their times and priorities.
    pub fn adverts(&self, r: usize, since: Time) -> Vec<(Time, u8)> {
        self.events
            .iter()
            .filter(|e| e.router == r && e.at >= since)
            .filter_map(|e| match &e.action {
                Action::SendAdvert { advert, .. } => Some((e.at, advert.priority)),
                _ => None,
            })
            .collect()
    }
}
