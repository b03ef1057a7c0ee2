#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Malformed or foreign VRRP packets are dropped and counted by reason, and
//! change nothing: a backup fed only bad packets takes over exactly when it
//! would have with silence. Random inputs never panic and keep the address
//! invariant (addresses set exactly while MASTER).

mod sim;

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use rvs_core::time::{Span, Time};
use rvs_vrrp::{Action, Counters, DropReason, InstanceConfig, Received, State, Vrrp};
use rvs_wire::vrrp::{VrrpRepr, VrrpVersion, VRRP_MCAST_V4};
use sim::{addr, instance, VIP};

const MCAST: IpAddr = IpAddr::V4(VRRP_MCAST_V4);

fn good(priority: u8) -> VrrpRepr {
    VrrpRepr {
        version: VrrpVersion::V2,
        vrid: 51,
        priority,
        adver_int_cs: 100,
        auth_type: 0,
        auth_data: [0; 8],
        addresses: vec![VIP],
    }
}

fn backup(cfg: InstanceConfig) -> Vrrp {
    let mut v = Vrrp::new(vec![cfg], vec![]).unwrap();
    v.start(Time::ZERO);
    while v.poll_action().is_some() {}
    v
}

/// Feeds `bytes` (from 10.0.0.1 to the group, TTL `ttl`) to a fresh backup.
fn feed(
    cfg: InstanceConfig,
    bytes: &[u8],
    ttl: u8,
    dst: IpAddr,
) -> (Result<(), DropReason>, Counters, Vrrp) {
    let mut v = backup(cfg);
    let res = v.handle_packet(
        0,
        Received {
            payload: bytes,
            src: addr(1),
            dst,
            hop_limit: Some(ttl),
        },
        Time::from_millis(500),
    );
    let counters = v.status(0).unwrap().counters;
    (res, counters, v)
}

fn emit(r: &VrrpRepr) -> Vec<u8> {
    r.emit(addr(1), MCAST).unwrap()
}

/// What is sent, with which TTL, to where; the drop it must give and its counter.
type Case = (
    &'static str,
    Vec<u8>,
    u8,
    IpAddr,
    DropReason,
    fn(&Counters) -> u64,
);

#[test]
fn each_kind_of_bad_packet_is_dropped_and_counted_by_its_reason() {
    let cfg = instance("VI_1", 2, 100);
    let ok = emit(&good(150));

    let mut bad_checksum = ok.clone();
    bad_checksum[6] ^= 0xff;
    let mut wrong_version = good(150);
    wrong_version.version = VrrpVersion::V3;
    let mut too_many = good(150);
    too_many
        .addresses
        .push(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 101)));
    let mut other_vip = good(150);
    other_vip.addresses = vec![IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9))];
    let mut other_interval = good(150);
    other_interval.adver_int_cs = 200;
    let mut with_pass = good(150);
    with_pass.auth_type = 1;
    with_pass.auth_data = *b"pass\0\0\0\0";
    let mut bad_auth_type = good(150);
    bad_auth_type.auth_type = 7;
    let mut not_advert = ok.clone();
    not_advert[0] = 0x22; // version 2, type 2
                          // Recompute the v2 checksum so only the type is wrong.
    not_advert[6] = 0;
    not_advert[7] = 0;
    let sum = rvs_wire::checksum::internet_checksum(&[&not_advert]);
    not_advert[6..8].copy_from_slice(&sum.to_be_bytes());

    let cases: Vec<Case> = vec![
        (
            "bad checksum",
            bad_checksum,
            255,
            MCAST,
            DropReason::Checksum,
            |c| c.checksum_errors,
        ),
        ("TTL 254", ok.clone(), 254, MCAST, DropReason::Ttl, |c| {
            c.ttl_errors
        }),
        (
            "truncated",
            ok[..ok.len() - 3].to_vec(),
            255,
            MCAST,
            DropReason::Length,
            |c| c.length_errors,
        ),
        (
            "four bytes",
            ok[..4].to_vec(),
            255,
            MCAST,
            DropReason::Length,
            |c| c.length_errors,
        ),
        (
            "version 3 to a v2 instance",
            emit(&wrong_version),
            255,
            MCAST,
            DropReason::Version,
            |c| c.version_errors,
        ),
        (
            "version 4",
            {
                let mut b = ok.clone();
                b[0] = 0x41;
                b
            },
            255,
            MCAST,
            DropReason::Version,
            |c| c.version_errors,
        ),
        (
            "not an advertisement",
            not_advert,
            255,
            MCAST,
            DropReason::Type,
            |c| c.type_errors,
        ),
        (
            "two addresses for one",
            emit(&too_many),
            255,
            MCAST,
            DropReason::AddressList,
            |c| c.address_list_errors,
        ),
        (
            "another address",
            emit(&other_vip),
            255,
            MCAST,
            DropReason::AddressList,
            |c| c.address_list_errors,
        ),
        (
            "another interval",
            emit(&other_interval),
            255,
            MCAST,
            DropReason::AdvertInterval,
            |c| c.advert_interval_errors,
        ),
        (
            "a password we do not expect",
            emit(&with_pass),
            255,
            MCAST,
            DropReason::AuthTypeMismatch,
            |c| c.auth_type_mismatch,
        ),
        (
            "auth type 7",
            emit(&bad_auth_type),
            255,
            MCAST,
            DropReason::InvalidAuthType,
            |c| c.invalid_auth_type,
        ),
        (
            "unicast to a multicast instance",
            ok.clone(),
            255,
            addr(2),
            DropReason::Delivery,
            |c| c.delivery_errors,
        ),
    ];
    for (what, bytes, ttl, dst, reason, counter) in cases {
        let (res, counters, _) = feed(cfg.clone(), &bytes, ttl, dst);
        assert_eq!(res, Err(reason), "{what}");
        assert_eq!(counter(&counters), 1, "{what}");
        assert_eq!(counters.dropped(), 1, "{what}: one counter only");
        assert_eq!(counters.adverts_received, 0, "{what}");
    }
    // The good packet passes, for contrast.
    let (res, counters, _) = feed(cfg, &ok, 255, MCAST);
    assert_eq!(res, Ok(()));
    assert_eq!(counters.adverts_received, 1);
    assert_eq!(counters.dropped(), 0);
}

#[test]
fn passwords_are_checked_and_unicast_skips_the_ttl_check() {
    let mut cfg = instance("VI_1", 2, 100);
    cfg.auth_pass = Some(*b"secret\0\0");
    let mut wrong = good(150);
    wrong.auth_type = 1;
    wrong.auth_data = *b"guess\0\0\0";
    let (res, c, _) = feed(cfg.clone(), &emit(&wrong), 255, MCAST);
    assert_eq!((res, c.auth_failures), (Err(DropReason::AuthFailure), 1));
    let (res, c, _) = feed(cfg.clone(), &emit(&good(150)), 255, MCAST);
    assert_eq!(
        (res, c.auth_type_mismatch),
        (Err(DropReason::AuthTypeMismatch), 1)
    );
    let mut right = wrong.clone();
    right.auth_data = *b"secret\0\0";
    assert_eq!(feed(cfg, &emit(&right), 255, MCAST).0, Ok(()));

    let mut uni = instance("VI_1", 2, 100);
    uni.unicast = true;
    let bytes = good(150).emit(addr(1), addr(2)).unwrap();
    assert_eq!(feed(uni.clone(), &bytes, 64, addr(2)).0, Ok(()));
    assert_eq!(
        feed(uni, &emit(&good(150)), 255, MCAST).0,
        Err(DropReason::Delivery)
    );
}

#[test]
fn bad_packets_do_not_hold_off_a_takeover() {
    // A backup that hears only broken adverts takes over at its own down
    // interval, as if it heard nothing.
    let cfg = instance("VI_1", 2, 100);
    let silent_takeover = {
        let mut v = backup(cfg.clone());
        let t = v.poll_timeout().unwrap();
        v.handle_timeout(t);
        assert_eq!(v.state(0), Some(State::Master));
        t
    };
    let mut v = backup(cfg);
    let mut bad = emit(&good(200));
    bad[2] ^= 1; // the priority: breaks the checksum
    let mut now = 0;
    while now < silent_takeover.as_millis() {
        let rx = Received {
            payload: &bad,
            src: addr(1),
            dst: MCAST,
            hop_limit: Some(255),
        };
        assert!(v.handle_packet(0, rx, Time::from_millis(now)).is_err());
        now += 100;
    }
    assert_eq!(v.poll_timeout(), Some(silent_takeover));
    assert_eq!(
        v.status(0).unwrap().counters.checksum_errors,
        silent_takeover.as_millis().div_ceil(100)
    );
}

#[derive(Clone, Debug)]
enum Input {
    Packet(Vec<u8>, u8),
    Advert(u8, bool),
    Timeout(u16),
    Tracker(bool),
    Shutdown,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (proptest::collection::vec(any::<u8>(), 0..64), any::<u8>())
            .prop_map(|(b, t)| Input::Packet(b, t)),
        (any::<u8>(), any::<bool>()).prop_map(|(p, ok)| Input::Advert(p, ok)),
        any::<u16>().prop_map(Input::Timeout),
        any::<bool>().prop_map(Input::Tracker),
        Just(Input::Shutdown),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_inputs_never_panic_and_addresses_follow_mastership(
        inputs in proptest::collection::vec(input(), 1..80),
        v3 in any::<bool>(),
    ) {
        let mut cfg = instance("VI_1", 2, 100);
        if v3 {
            cfg.version = VrrpVersion::V3;
            cfg.advert_int = Span::from_millis(100);
        }
        cfg.trackers.push(rvs_vrrp::TrackerConfig {
            name: "t".into(),
            weight: 0,
            reverse: false,
            initial: Some(true),
        });
        let mut v = Vrrp::new(vec![cfg.clone()], vec![]).unwrap();
        v.start(Time::ZERO);
        let mut now = 0u64;
        let mut held = false;
        // When handle_timeout last ran: every deadline due by then has been
        // handled. (Other inputs move the clock without firing timers, as a
        // driver's wake-up may come a little late, so a deadline may be
        // overdue between two timeouts.)
        let mut fired_at = 0u64;
        for inp in inputs {
            now += 7;
            let t = Time::from_millis(now);
            match inp {
                Input::Packet(bytes, ttl) => {
                    let _ = v.handle_packet(0, Received { payload: &bytes, src: addr(1), dst: MCAST, hop_limit: Some(ttl) }, t);
                }
                Input::Advert(prio, ok) => {
                    let mut r = good(prio);
                    r.version = cfg.version;
                    r.adver_int_cs = u16::try_from(cfg.advert_int.as_millis() / 10).unwrap();
                    let mut bytes = emit(&r);
                    if !ok { bytes[2] ^= 0x40; }
                    let _ = v.handle_packet(0, Received { payload: &bytes, src: addr(1), dst: MCAST, hop_limit: Some(255) }, t);
                }
                Input::Timeout(ms) => {
                    now += u64::from(ms);
                    v.handle_timeout(Time::from_millis(now));
                    fired_at = now;
                }
                Input::Tracker(up) => v.handle_tracker(0, 0, up, t),
                Input::Shutdown => v.shutdown(t),
            }
            while let Some(a) = v.poll_action() {
                match a {
                    Action::AddAddresses { .. } => { prop_assert!(!held, "added twice"); held = true; }
                    Action::RemoveAddresses { .. } => { prop_assert!(held, "removed while not held"); held = false; }
                    _ => {}
                }
            }
            let st = v.status(0).unwrap();
            prop_assert_eq!(held, st.state == State::Master, "state {:?}", st.state);
            prop_assert_eq!(held, st.addresses_set);
            if let Some(deadline) = v.poll_timeout() {
                prop_assert!(
                    deadline.as_millis() + 1 >= fired_at || st.state != State::Backup,
                    "a backup's timer due at {} ms was left after handle_timeout at {} ms",
                    deadline.as_millis(),
                    fired_at
                );
            }
        }
    }
}
