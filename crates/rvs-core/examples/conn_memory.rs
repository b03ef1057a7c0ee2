//! Heap bytes per tracked connection, measured with a counting global allocator
//! (`stats_alloc`, so this example needs no `unsafe` of its own: the workspace
//! forbids it in every target of rvs-core).
//!
//! Run: `cargo run --release -p rvs-core --example conn_memory [N...]`
//! (default N = 1,000,000 and 10,000,000).
//!
//! For each N it reports live heap bytes / N after N inserts, for:
//! * `table/new`: `ConnTable::new` grown by inserts (as the director's table grows),
//!   DR connections (in-index only) and NAT connections (in- and out-index);
//! * `table/with_capacity`: `ConnTable::with_capacity(seed, N)`, DR;
//! * `director`: a `Director` with one TCP service of 10 DR servers, N SYNs from
//!   distinct clients through `handle_in` (everything the director allocates).
//!
//! It also prints the resident set growth from /proc/self/statm for comparison
//! (untouched capacity is not resident, so RSS can be lower than the heap figure).

// A benchmark harness, not library code: a failed setup should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::net::{IpAddr, Ipv4Addr};

use rvs_core::conn::{ConnFlags, ConnTable, NewConn};
use rvs_core::{
    Conn, ConnKey, DestConfig, DestId, Director, Packet, Protocol, ServiceConfig, ServiceKey, Span,
    TcpFlags, Time,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn client(i: u64) -> (IpAddr, u16) {
    (
        IpAddr::V4(Ipv4Addr::from(
            0x6400_0000u32.wrapping_add((i / 60_000) as u32),
        )),
        1024 + (i % 60_000) as u16,
    )
}

fn key(i: u64) -> ConnKey {
    let (caddr, cport) = client(i);
    ConnKey {
        proto: 6,
        template: false,
        caddr,
        cport,
        vaddr: IpAddr::V4(VIP),
        vport: 80,
    }
}

fn conn(i: u64) -> NewConn {
    let d = (i % 1000) as u32;
    NewConn {
        key: key(i),
        daddr: IpAddr::V4(Ipv4Addr::from(0xac10_0000u32 + d)),
        dport: 8080,
        dest: DestId(d),
        flags: ConnFlags {
            inactive: true,
            ..ConnFlags::default()
        },
        state: 0,
        timeout: Span::from_millis(1_000 + (i * 7919) % 900_000),
        control: None,
    }
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn live(r: &Region<'_, System>) -> i64 {
    let c = r.change();
    c.bytes_allocated as i64 - c.bytes_deallocated as i64
}

fn report(what: &str, n: u64, bytes: i64, rss: i64) {
    println!(
        "{what:<28} n={n:>10}  heap {bytes:>13} B  {:>7.1} B/conn   rss +{:>7.1} B/conn",
        bytes as f64 / n as f64,
        rss as f64 / n as f64
    );
}

fn table(n: u64, with_capacity: bool, nat: bool) {
    let rss0 = rss_bytes() as i64;
    let r = Region::new(GLOBAL);
    let mut t = if with_capacity {
        ConnTable::with_capacity(1, n as usize)
    } else {
        ConnTable::new(1)
    };
    for i in 0..n {
        let mut c = conn(i);
        c.flags.no_output = !nat;
        t.insert(c, Time::ZERO, nat);
    }
    assert_eq!(t.len() as u64, n);
    let bytes = live(&r);
    let rss = rss_bytes() as i64 - rss0;
    let what = match (with_capacity, nat) {
        (false, false) => "table/new DR",
        (false, true) => "table/new NAT",
        (true, false) => "table/with_capacity DR",
        (true, true) => "table/with_capacity NAT",
    };
    report(what, n, bytes, rss);
    drop(t);
}

fn director(n: u64) {
    let rss0 = rss_bytes() as i64;
    let r = Region::new(GLOBAL);
    let mut d = Director::default();
    let key = ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: IpAddr::V4(VIP),
        port: 80,
    };
    d.add_service(ServiceConfig::new(key)).unwrap();
    for i in 0..10u32 {
        d.add_dest(
            &key,
            DestConfig::new(IpAddr::V4(Ipv4Addr::from(0xac10_0001 + i)), 80),
        )
        .unwrap();
    }
    for i in 0..n {
        let (a, p) = client(i);
        d.handle_in(
            &Packet::tcp(a, p, IpAddr::V4(VIP), 80, TcpFlags::SYN),
            Time::ZERO,
        );
    }
    assert_eq!(d.conn_count() as u64, n);
    let bytes = live(&r);
    let rss = rss_bytes() as i64 - rss0;
    report("director (DR, SYN_RECV)", n, bytes, rss);
    drop(d);
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let sizes = if args.is_empty() {
        vec![1_000_000, 10_000_000]
    } else {
        args
    };
    println!(
        "size_of: Conn {} B, ConnKey {} B, IpAddr {} B, Time {} B",
        std::mem::size_of::<Conn>(),
        std::mem::size_of::<ConnKey>(),
        std::mem::size_of::<IpAddr>(),
        std::mem::size_of::<Time>(),
    );
    for n in sizes {
        table(n, false, false);
        table(n, false, true);
        table(n, true, false);
        director(n);
    }
}
