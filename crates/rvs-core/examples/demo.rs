//! A director on simulated traffic: three real servers behind a wlc service, a
//! minute of clients opening and closing NAT connections, then the table as
//! `ipvsadm -Ln` and `--stats` would show it. Everything runs in virtual time.
//!
//! Run: `cargo run -p rvs-core --example demo [seconds] [connections-per-second]`

use std::net::{IpAddr, Ipv4Addr};

use rvs_core::{
    DestConfig, Director, Forward, InVerdict, Packet, Protocol, SchedulerKind, ServiceConfig,
    ServiceKey, TcpFlags, Time,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let cps: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);

    let vip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let key = ServiceKey::Addr {
        proto: Protocol::Tcp,
        addr: vip,
        port: 80,
    };
    let mut d = Director::default();
    let mut svc = ServiceConfig::new(key);
    svc.scheduler = SchedulerKind::Wlc;
    if let Err(e) = d.add_service(svc) {
        eprintln!("demo: {e}");
        return;
    }
    for (i, w) in [1u32, 2, 3].into_iter().enumerate() {
        let mut rs = DestConfig::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2 + i as u8)), 8080);
        rs.weight = w;
        rs.forward = Forward::Masq;
        if let Err(e) = d.add_dest(&key, rs) {
            eprintln!("demo: {e}");
            return;
        }
    }

    // Each client connection lives `5 + n % 20` seconds, then closes.
    let mut open: Vec<(u64, IpAddr, u16, IpAddr)> = Vec::new();
    let mut n: u64 = 0;
    // Steps of 10 ms: `cps` arrivals per 100 steps.
    let mut due: u64 = 0;
    for ms in (0..seconds * 1000).step_by(10) {
        let now = Time::from_millis(ms);
        due += cps;
        while due >= 100 {
            due -= 100;
            n += 1;
            let client = IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + (n % 250) as u32));
            let cport = 1024 + (n % 60000) as u16;
            let syn = Packet::tcp(client, cport, vip, 80, TcpFlags::SYN);
            if let InVerdict::Forward(f) = d.handle_in(&syn, now) {
                d.handle_out(
                    &Packet::tcp(f.daddr, f.dport, client, cport, TcpFlags::SYN_ACK),
                    now,
                );
                d.handle_in(&Packet::tcp(client, cport, vip, 80, TcpFlags::ACK), now);
                open.push((ms + 5000 + (n % 20) * 1000, client, cport, f.daddr));
            }
        }
        open.retain(|&(close_at, client, cport, rs)| {
            if close_at > ms {
                return true;
            }
            d.handle_in(&Packet::tcp(client, cport, vip, 80, TcpFlags::FIN_ACK), now);
            d.handle_out(
                &Packet::tcp(rs, 8080, client, cport, TcpFlags::FIN_ACK),
                now,
            );
            d.handle_in(&Packet::tcp(client, cport, vip, 80, TcpFlags::ACK), now);
            false
        });
        d.handle_timeout(now, |_, _| {});
    }

    println!("after {seconds} s of virtual time, {n} connections");
    println!("Prot LocalAddress:Port Scheduler Flags");
    println!("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn");
    for s in d.services() {
        println!("{key} {}", s.config.scheduler);
        for rs in d.dests_of(s) {
            let addr = format!("{}:{}", rs.config.addr, rs.config.port);
            println!(
                "  -> {addr:<28} {:<7} {:<6} {:<10} {:<10}",
                rs.config.forward.name(),
                rs.weight(),
                rs.active_conns,
                rs.inactive_conns
            );
        }
        let c = s.stats.counters();
        let r = s.stats.rates();
        println!(
            "stats: conns {} inpkts {} outpkts {}; rates: {} cps {} in-pps",
            c.conns, c.in_pkts, c.out_pkts, r.cps, r.in_pps
        );
    }
}
