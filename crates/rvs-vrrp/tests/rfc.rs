#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Conformance of the state machine with the RFCs' timer and transition rules
//! (RFC 3768 section 6, RFC 5798 section 6) and keepalived's choices where the
//! RFCs leave room, on a virtual LAN in virtual time (no sleeps).
//!
//! Expected instants are computed here from the RFC definitions:
//! Master_Down_Interval = 3 x Master_Adver_Interval + Skew_Time, Skew_Time =
//! (256 - Priority)/256 s (v2) or ((256 - Priority) x Master_Adver_Interval)/256
//! (v3); times are whole milliseconds, truncated. The LAN delays every packet by
//! 1 ms.

mod sim;

use std::net::IpAddr;

use rvs_core::time::{Span, Time};
use rvs_vrrp::{Action, GroupConfig, NoticeTarget, State, TrackerConfig, Vrrp};
use rvs_wire::vrrp::VrrpVersion;
use sim::{addr, instance, Lan, VIP};

const A: usize = 0;
const B: usize = 1;
const DELAY: u64 = 1;

fn skew_v2_ms(prio: u64) -> u64 {
    (256 - prio) * 1000 / 256
}

fn skew_v3_ms(prio: u64, adver_ms: u64) -> u64 {
    (256 - prio) * (adver_ms / 10) * 10 / 256
}

fn down_v2_ms(prio: u64, adver_ms: u64) -> u64 {
    3 * adver_ms + skew_v2_ms(prio)
}

fn t(ms: u64) -> Time {
    Time::from_millis(ms)
}

/// A (priority 150) and B (priority 100), v2 advert_int 1 s, both started at 0.
fn pair() -> Lan {
    let mut lan = Lan::new();
    lan.add(vec![instance("VI_1", 1, 150)], vec![]);
    lan.add(vec![instance("VI_1", 2, 100)], vec![]);
    lan.start_all();
    lan
}

/// The time of A's first mastership in `pair()`.
fn a_first_master() -> u64 {
    down_v2_ms(150, 1000)
}

#[test]
fn both_start_backup_and_the_higher_priority_wins_after_its_down_interval() {
    let mut lan = pair();
    assert_eq!(lan.entered(A, 0, State::Backup, t(0)), Some(t(0)));
    assert_eq!(lan.entered(B, 0, State::Backup, t(0)), Some(t(0)));
    lan.run_until(t(20_000));
    assert_eq!(
        lan.entered(A, 0, State::Master, t(0)),
        Some(t(a_first_master()))
    );
    assert_eq!(
        lan.entered(B, 0, State::Master, t(0)),
        None,
        "B never preempts a higher priority"
    );
    assert_eq!(lan.holders(0), vec![A]);
    // The master advertises every advert_int from its takeover.
    let adverts = lan.adverts(A, t(0));
    assert_eq!(adverts[0], (t(a_first_master()), 150));
    for w in adverts.windows(2) {
        assert_eq!(w[1].0.millis_since(w[0].0), 1000);
    }
}

#[test]
fn backup_takes_over_one_master_down_interval_after_the_last_advert_v2() {
    let mut lan = pair();
    lan.run_until(t(10_000));
    let last = lan.adverts(A, t(0)).last().unwrap().0;
    lan.kill(A);
    lan.run_until(t(30_000));
    let expected = last.as_millis() + DELAY + down_v2_ms(100, 1000);
    assert_eq!(
        lan.entered(B, 0, State::Master, t(10_000)),
        Some(t(expected))
    );
    assert_eq!(lan.holders(0), vec![B]);
}

#[test]
fn v3_centisecond_adverts_fail_over_within_the_rfc_bound() {
    let mut lan = Lan::new();
    let mut a = instance("VI_1", 1, 150);
    let mut b = instance("VI_1", 2, 100);
    for c in [&mut a, &mut b] {
        c.version = VrrpVersion::V3;
        c.advert_int = Span::from_millis(100);
    }
    lan.add(vec![a], vec![]);
    lan.add(vec![b], vec![]);
    lan.start_all();
    lan.run_until(t(5_000));
    assert_eq!(
        lan.entered(A, 0, State::Master, t(0)),
        Some(t(300 + skew_v3_ms(150, 100)))
    );
    let last = lan.adverts(A, t(0)).last().unwrap().0;
    lan.kill(A);
    lan.run_until(t(8_000));
    let took = lan.entered(B, 0, State::Master, t(5_000)).unwrap();
    let down = 300 + skew_v3_ms(100, 100);
    assert_eq!(took, t(last.as_millis() + DELAY + down));
    assert!(down < 400, "3 x 100 ms + skew is under 400 ms");
}

#[test]
fn v3_backup_learns_the_masters_advert_interval() {
    // RFC 5798 6.4.2: a backup sets Master_Adver_Interval from the advert.
    let mut lan = Lan::new();
    let mut a = instance("VI_1", 1, 150);
    a.version = VrrpVersion::V3;
    a.advert_int = Span::from_millis(100);
    let mut b = instance("VI_1", 2, 100);
    b.version = VrrpVersion::V3;
    b.advert_int = Span::from_millis(2000);
    lan.add(vec![a], vec![]);
    lan.add(vec![b], vec![]);
    lan.start_all();
    lan.run_until(t(2_000));
    assert_eq!(
        lan.vrrp(B).status(0).unwrap().master_adver_int,
        Span::from_millis(100)
    );
    let last = lan.adverts(A, t(0)).last().unwrap().0;
    lan.kill(A);
    lan.run_until(t(20_000));
    let took = lan.entered(B, 0, State::Master, t(2_000)).unwrap();
    assert_eq!(
        took,
        t(last.as_millis() + DELAY + 300 + skew_v3_ms(100, 100))
    );
    // As master it advertises its own interval again.
    let adverts = lan.adverts(B, took);
    assert_eq!(adverts[1].0.millis_since(adverts[0].0), 2000);
}

#[test]
fn a_stopping_master_sends_priority_zero_and_the_backup_takes_over_after_skew() {
    let mut lan = pair();
    lan.run_until(t(10_000));
    lan.stop(A);
    let stop_at = lan.now;
    assert_eq!(lan.adverts(A, stop_at), vec![(stop_at, 0)]);
    assert!(lan.events.iter().any(|e| e.router == A
        && e.at == stop_at
        && e.action == Action::RemoveAddresses { instance: 0 }));
    assert_eq!(lan.entered(A, 0, State::Stop, stop_at), Some(stop_at));
    lan.run_until(t(20_000));
    let took = lan.entered(B, 0, State::Master, stop_at).unwrap();
    assert_eq!(took.millis_since(stop_at), DELAY + skew_v2_ms(100));
    assert_eq!(
        lan.vrrp(B)
            .status(0)
            .unwrap()
            .counters
            .priority_zero_received,
        1
    );
}

#[test]
fn the_higher_priority_preempts_when_it_returns() {
    let mut lan = pair();
    lan.run_until(t(10_000));
    lan.kill(A);
    lan.run_until(t(20_000));
    assert_eq!(lan.holders(0), vec![B]);
    lan.start(A);
    lan.run_until(t(40_000));
    // A ignores B's lower-priority adverts, so its own down timer runs out.
    let back = lan.entered(A, 0, State::Master, t(20_000)).unwrap();
    assert_eq!(back, t(20_000 + a_first_master()));
    // B hears A's higher priority one packet later and steps down.
    assert_eq!(
        lan.entered(B, 0, State::Backup, t(20_000)),
        Some(t(back.as_millis() + DELAY))
    );
    assert_eq!(lan.holders(0), vec![A]);
}

#[test]
fn nopreempt_keeps_the_current_master() {
    let mut lan = Lan::new();
    let mut a = instance("VI_1", 1, 150);
    a.nopreempt = true;
    let mut b = instance("VI_1", 2, 100);
    b.nopreempt = true;
    lan.add(vec![a], vec![]);
    lan.add(vec![b], vec![]);
    lan.start_all();
    lan.run_until(t(10_000));
    lan.kill(A);
    lan.run_until(t(20_000));
    lan.start(A);
    lan.run_until(t(60_000));
    assert_eq!(lan.entered(A, 0, State::Master, t(20_000)), None);
    assert_eq!(lan.holders(0), vec![B]);
}

#[test]
fn preempt_delay_postpones_preemption() {
    let mut lan = Lan::new();
    let mut a = instance("VI_1", 1, 150);
    a.preempt_delay = Span::from_secs(10);
    lan.add(vec![a], vec![]);
    lan.add(vec![instance("VI_1", 2, 100)], vec![]);
    // B alone first.
    lan.start(B);
    lan.run_until(t(10_000));
    assert_eq!(lan.holders(0), vec![B]);
    lan.start(A);
    lan.run_until(t(60_000));
    let first_heard = lan
        .adverts(B, t(10_000))
        .first()
        .map(|(at, _)| at.as_millis() + DELAY)
        .unwrap();
    let back = lan
        .entered(A, 0, State::Master, t(10_000))
        .unwrap()
        .as_millis();
    // Not before the delay from the first lower-priority advert, and at most one
    // advert interval plus a down interval after it.
    assert!(
        back >= first_heard + 10_000,
        "{back} < {first_heard} + 10 s"
    );
    assert!(
        back <= first_heard + 10_000 + 1000 + a_first_master(),
        "{back}"
    );
}

#[test]
fn equal_priority_goes_to_the_higher_address() {
    let mut lan = Lan::new();
    lan.add(vec![instance("VI_1", 1, 100)], vec![]);
    lan.add(vec![instance("VI_1", 2, 100)], vec![]);
    lan.start_all();
    lan.run_until(t(20_000));
    assert_eq!(lan.holders(0), vec![B], "10.0.0.2 beats 10.0.0.1");
}

#[test]
fn a_master_answers_a_lower_priority_advert_with_its_own() {
    let mut lan = Lan::new();
    let mut b = instance("VI_1", 2, 100);
    b.want_master = true;
    lan.add(vec![instance("VI_1", 1, 150)], vec![]);
    lan.add(vec![b], vec![]);
    // A alone becomes master; then B starts and claims mastership by timer
    // only if it never hears A: it does hear A, so it stays backup.
    lan.start(A);
    lan.run_until(t(5_000));
    lan.start(B);
    lan.run_until(t(30_000));
    assert_eq!(lan.holders(0), vec![A]);
    // Force a lower-priority advert into A: it answers at once.
    let b_cfg = lan.vrrp(B).config(0).unwrap().clone();
    let dst = IpAddr::V4(rvs_wire::vrrp::VRRP_MCAST_V4);
    let mut adv = rvs_wire::vrrp::VrrpRepr {
        version: VrrpVersion::V2,
        vrid: 51,
        priority: 100,
        adver_int_cs: 100,
        auth_type: 0,
        auth_data: [0; 8],
        addresses: vec![VIP],
    };
    let bytes = adv.emit(b_cfg.local_addr, dst).unwrap();
    let now = lan.now;
    let before = lan.adverts(A, now).len();
    lan.inject(
        A,
        0,
        rvs_vrrp::Received {
            payload: &bytes,
            src: b_cfg.local_addr,
            dst,
            hop_limit: Some(255),
        },
    )
    .unwrap();
    assert_eq!(lan.adverts(A, now).len(), before + 1);
    // And yields to a higher one.
    adv.priority = 200;
    let bytes = adv.emit(b_cfg.local_addr, dst).unwrap();
    lan.inject(
        A,
        0,
        rvs_vrrp::Received {
            payload: &bytes,
            src: b_cfg.local_addr,
            dst,
            hop_limit: Some(255),
        },
    )
    .unwrap();
    assert_eq!(lan.state(A, 0), Some(State::Backup));
}

#[test]
fn the_address_owner_takes_over_at_once() {
    let mut lan = Lan::new();
    let mut a = instance("VI_1", 1, 255);
    a.want_master = true;
    lan.add(vec![a], vec![]);
    lan.add(vec![instance("VI_1", 2, 100)], vec![]);
    lan.start_all();
    lan.run_until(t(100));
    assert_eq!(lan.entered(A, 0, State::Master, t(0)), Some(t(0)));
    assert_eq!(
        lan.entered(A, 0, State::Backup, t(0)),
        None,
        "no BACKUP notice on the way"
    );
}

#[test]
fn state_master_without_ownership_still_waits_a_down_interval() {
    // keepalived 2.2.7 vrrp_init_state: only the owner (or a sync group) shortens it.
    let mut lan = Lan::new();
    let mut a = instance("VI_1", 1, 150);
    a.want_master = true;
    lan.add(vec![a], vec![]);
    lan.start_all();
    lan.run_until(t(10_000));
    assert_eq!(
        lan.entered(A, 0, State::Master, t(0)),
        Some(t(a_first_master()))
    );
}

#[test]
fn gratuitous_arp_bursts_at_takeover_and_after_garp_master_delay() {
    let mut lan = pair();
    lan.run_until(t(20_000));
    let at = t(a_first_master());
    let bursts: Vec<(Time, u32)> = lan
        .events
        .iter()
        .filter(|e| e.router == A)
        .filter_map(|e| match e.action {
            Action::Gratuitous { repeat, .. } => Some((e.at, repeat)),
            _ => None,
        })
        .collect();
    assert_eq!(bursts, vec![(at, 5), (t(at.as_millis() + 5000), 5)]);
    // Order at the takeover: advert, addresses, gratuitous ARP, notice.
    let at_takeover: Vec<&Action> = lan
        .events
        .iter()
        .filter(|e| e.router == A && e.at == at)
        .map(|e| &e.action)
        .collect();
    assert!(matches!(at_takeover[0], Action::SendAdvert { .. }));
    assert_eq!(*at_takeover[1], Action::AddAddresses { instance: 0 });
    assert!(matches!(at_takeover[2], Action::Gratuitous { .. }));
    assert!(matches!(at_takeover[3], Action::Notify(n) if n.state == State::Master));
}

#[test]
fn authentication_mismatch_is_rejected_and_both_become_master() {
    let mut lan = Lan::new();
    let mut a = instance("VI_1", 1, 150);
    a.auth_pass = Some(*b"1111\0\0\0\0");
    let mut b = instance("VI_1", 2, 100);
    b.auth_pass = Some(*b"2222\0\0\0\0");
    lan.add(vec![a], vec![]);
    lan.add(vec![b], vec![]);
    lan.start_all();
    lan.run_until(t(20_000));
    assert_eq!(lan.holders(0), vec![A, B]);
    assert!(lan.vrrp(A).status(0).unwrap().counters.auth_failures > 0);
    assert!(lan.vrrp(B).status(0).unwrap().counters.auth_failures > 0);
}

#[test]
fn matching_passwords_elect_one_master() {
    let mut lan = Lan::new();
    let mut a = instance("VI_1", 1, 150);
    a.auth_pass = Some(*b"secret\0\0");
    let mut b = instance("VI_1", 2, 100);
    b.auth_pass = a.auth_pass;
    lan.add(vec![a], vec![]);
    lan.add(vec![b], vec![]);
    lan.start_all();
    lan.run_until(t(20_000));
    assert_eq!(lan.holders(0), vec![A]);
}

fn script(weight: i32) -> TrackerConfig {
    TrackerConfig {
        name: "chk".into(),
        weight,
        reverse: false,
        initial: Some(true),
    }
}

#[test]
fn tracker_weights_move_the_priority_and_the_mastership() {
    let mut lan = Lan::new();
    lan.add(vec![instance("VI_1", 1, 150)], vec![]);
    let mut b = instance("VI_1", 2, 100);
    b.trackers.push(script(60));
    b.trackers[0].initial = Some(false);
    lan.add(vec![b], vec![]);
    lan.start_all();
    lan.run_until(t(10_000));
    assert_eq!(lan.holders(0), vec![A]);
    // B's script succeeds: 100 + 60 = 160 > 150, B preempts.
    lan.tracker(B, 0, 0, true);
    assert_eq!(lan.vrrp(B).status(0).unwrap().effective_priority, 160);
    lan.run_until(t(30_000));
    assert_eq!(lan.holders(0), vec![B]);
    // It fails again: 100 < 150, A preempts back.
    lan.tracker(B, 0, 0, false);
    lan.run_until(t(50_000));
    assert_eq!(lan.holders(0), vec![A]);
}

#[test]
fn negative_weight_applies_while_down_and_reverse_flips_it() {
    let mut lan = Lan::new();
    let mut a = instance("VI_1", 1, 150);
    a.trackers.push(script(-30));
    a.trackers.push(TrackerConfig {
        reverse: true,
        ..script(20)
    });
    lan.add(vec![a], vec![]);
    lan.start_all();
    // Both up: -30 is not applied; reversed +20 while up subtracts 20.
    assert_eq!(lan.vrrp(A).status(0).unwrap().effective_priority, 130);
    lan.tracker(A, 0, 0, false);
    assert_eq!(lan.vrrp(A).status(0).unwrap().effective_priority, 100);
    lan.tracker(A, 0, 1, false);
    assert_eq!(lan.vrrp(A).status(0).unwrap().effective_priority, 120);
}

#[test]
fn priority_is_clamped_to_1_254_and_the_owner_ignores_weights() {
    let mut lan = Lan::new();
    let mut a = instance("VI_1", 1, 250);
    a.trackers.push(script(100));
    let mut b = instance("VI_2", 2, 10);
    b.trackers.push(script(-100));
    b.trackers[0].initial = Some(false);
    let mut c = instance("VI_3", 3, 255);
    c.trackers.push(script(-100));
    c.trackers[0].initial = Some(false);
    lan.add(vec![a], vec![]);
    lan.add(vec![b], vec![]);
    lan.add(vec![c], vec![]);
    lan.start_all();
    assert_eq!(lan.vrrp(0).status(0).unwrap().effective_priority, 254);
    assert_eq!(lan.vrrp(1).status(0).unwrap().effective_priority, 1);
    assert_eq!(lan.vrrp(2).status(0).unwrap().effective_priority, 255);
}

#[test]
fn a_weight_zero_failure_faults_the_master_which_resigns() {
    let mut lan = Lan::new();
    let mut a = instance("VI_1", 1, 150);
    a.trackers.push(script(0));
    lan.add(vec![a], vec![]);
    lan.add(vec![instance("VI_1", 2, 100)], vec![]);
    lan.start_all();
    lan.run_until(t(10_000));
    lan.tracker(A, 0, 0, false);
    let at = lan.now;
    assert_eq!(lan.state(A, 0), Some(State::Fault));
    assert_eq!(lan.adverts(A, at), vec![(at, 0)]);
    lan.run_until(t(20_000));
    assert_eq!(
        lan.entered(B, 0, State::Master, at)
            .map(|x| x.millis_since(at)),
        Some(DELAY + skew_v2_ms(100))
    );
    // In FAULT it neither advertises nor reacts.
    assert!(lan.adverts(A, t(at.as_millis() + 1)).is_empty());
    // Recovery: BACKUP first, then preemption by its down timer.
    lan.tracker(A, 0, 0, true);
    let up_at = lan.now;
    assert_eq!(lan.state(A, 0), Some(State::Backup));
    lan.run_until(t(40_000));
    assert_eq!(
        lan.entered(A, 0, State::Master, up_at),
        Some(t(up_at.as_millis() + a_first_master()))
    );
}

#[test]
fn a_script_that_has_not_run_holds_the_instance_silently_in_fault() {
    let mut lan = Lan::new();
    let mut a = instance("VI_1", 1, 150);
    a.trackers.push(TrackerConfig {
        initial: None,
        ..script(0)
    });
    lan.add(vec![a], vec![]);
    lan.start_all();
    assert_eq!(lan.state(A, 0), Some(State::Fault));
    assert!(!lan
        .events
        .iter()
        .any(|e| matches!(e.action, Action::Notify(_))));
    lan.run_until(t(1000));
    lan.tracker(A, 0, 0, true);
    assert_eq!(lan.state(A, 0), Some(State::Backup));
    assert_eq!(lan.entered(A, 0, State::Backup, t(0)), Some(t(1000)));
}

#[test]
fn sync_group_members_fault_and_fail_over_together() {
    let mut lan = Lan::new();
    let mut a1 = instance("VI_1", 1, 150);
    a1.trackers.push(script(0));
    let mut a2 = instance("VI_2", 1, 150);
    a2.vrid = 52;
    a2.vips = vec![IpAddr::V4("10.0.1.100".parse().unwrap())];
    let mut b1 = instance("VI_1", 2, 100);
    b1.trackers.clear();
    let mut b2 = instance("VI_2", 2, 100);
    b2.vrid = 52;
    b2.vips = a2.vips.clone();
    let group = |n: &str| GroupConfig {
        name: n.into(),
        members: vec![0, 1],
    };
    lan.add(vec![a1, a2], vec![group("G")]);
    lan.add(vec![b1, b2], vec![group("G")]);
    lan.start_all();
    lan.run_until(t(10_000));
    assert_eq!(lan.holders(0), vec![A]);
    assert_eq!(lan.holders(1), vec![A]);
    // Only VI_1's tracker fails; VI_2 follows it into FAULT.
    lan.tracker(A, 0, 0, false);
    assert_eq!(lan.state(A, 0), Some(State::Fault));
    assert_eq!(lan.state(A, 1), Some(State::Fault));
    assert_eq!(lan.vrrp(A).group_state(0), Some(State::Fault));
    lan.run_until(t(20_000));
    assert_eq!(lan.holders(0), vec![B]);
    assert_eq!(lan.holders(1), vec![B]);
    assert_eq!(lan.vrrp(B).group_state(0), Some(State::Master));
    let group_notices: Vec<State> = lan
        .events
        .iter()
        .filter(|e| e.router == B)
        .filter_map(|e| match e.action {
            Action::Notify(n) if n.target == NoticeTarget::Group(0) => Some(n.state),
            _ => None,
        })
        .collect();
    assert_eq!(group_notices, vec![State::Backup, State::Master]);
    // A recovers: both members come back together and preempt.
    lan.tracker(A, 0, 0, true);
    lan.run_until(t(40_000));
    assert_eq!(lan.holders(0), vec![A]);
    assert_eq!(lan.holders(1), vec![A]);
}

#[test]
fn a_sync_group_goes_master_only_when_every_member_wants_to() {
    // B's VI_1 hears no master (vrid 51 has no peer), but its VI_2 hears A's
    // VI_2: the group must stay BACKUP rather than split.
    let mut lan = Lan::new();
    let mut a2 = instance("VI_2", 1, 150);
    a2.vrid = 52;
    let mut b1 = instance("VI_1", 2, 100);
    b1.vips = vec![IpAddr::V4("10.0.1.100".parse().unwrap())];
    let mut b2 = instance("VI_2", 2, 100);
    b2.vrid = 52;
    lan.add(vec![a2], vec![]);
    lan.add(
        vec![b1, b2],
        vec![GroupConfig {
            name: "G".into(),
            members: vec![0, 1],
        }],
    );
    lan.start_all();
    lan.run_until(t(30_000));
    assert_eq!(lan.state(B, 0), Some(State::Backup));
    assert_eq!(lan.state(B, 1), Some(State::Backup));
    assert!(!lan.holders(0).contains(&B));
    // Once A dies, both want MASTER and the group goes together.
    lan.kill(A);
    lan.run_until(t(60_000));
    assert_eq!(lan.state(B, 0), Some(State::Master));
    assert_eq!(lan.state(B, 1), Some(State::Master));
}

#[test]
fn vrrp_refuses_bad_configs() {
    let mut c = instance("VI_1", 1, 100);
    c.vrid = 0;
    assert!(Vrrp::new(vec![c], vec![]).is_err());
    let mut c = instance("VI_1", 1, 100);
    c.advert_int = Span::from_millis(1500);
    assert!(
        Vrrp::new(vec![c.clone()], vec![]).is_err(),
        "v2 carries whole seconds"
    );
    c.version = VrrpVersion::V3;
    assert!(Vrrp::new(vec![c], vec![]).is_ok());
    let mut c = instance("VI_1", 1, 100);
    c.vips.push(IpAddr::V6("fe80::1".parse().unwrap()));
    assert!(Vrrp::new(vec![c], vec![]).is_err());
    let c = instance("VI_1", 1, 100);
    assert!(Vrrp::new(
        vec![c],
        vec![GroupConfig {
            name: "G".into(),
            members: vec![3]
        }]
    )
    .is_err());
    let _ = addr(1);
}
