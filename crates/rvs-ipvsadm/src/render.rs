//! The texts ipvsadm prints for the table: ipvsadm.c `list_all`, `list_service`,
//! `print_title`, `print_service_entry`, `print_tunnel_rule`, `print_sched_flags`,
//! `print_largenum`, `list_conn`/`print_conn`, `list_timeout` and
//! `addrport_to_anyname`. This module owns their bytes: column widths, trailing
//! blanks, number scaling, name look-ups and truncations.

use std::net::IpAddr;

use rvs_api::{
    ConnView, DaemonState, DaemonView, ForwardSpec, ServerView, ServiceRef, ServiceView, TableView,
    TimeoutsSpec, TunnelCsumSpec, TunnelSpec, TunnelType,
};

use crate::clib::{cut, left, ntop, right};
use crate::sort::{servers_in_order, services_in_order};
use crate::{Format, Output, Proto, Resolver};

/// ipvsadm.c `addrport_to_anyname`: `addr:port` (`[addr]:port` for IPv6), with names
/// unless `numeric`; at most 59 bytes (its 60-byte buffer).
fn anyname(addr: &IpAddr, port: u16, proto: Proto, numeric: bool, r: &dyn Resolver) -> String {
    let (open, close) = if addr.is_ipv4() { ("", "") } else { ("[", "]") };
    let s = if numeric {
        format!("{open}{}{close}:{port}", ntop(addr))
    } else {
        let host = r.addr_to_host(*addr).unwrap_or_else(|| ntop(addr));
        let serv = match proto {
            Proto::Other => None,
            p => r.port_to_service(port, p),
        }
        .unwrap_or_else(|| port.to_string());
        format!("{open}{host}{close}:{serv}")
    };
    cut(&s, 59)
}

/// ipvsadm.c `print_largenum`.
fn largenum(i: u64, exact: bool) -> String {
    if exact {
        let s = i.to_string();
        let width = if s.len() <= 8 { 9 } else { s.len() + 1 };
        return right(&s, width);
    }
    if i < 100_000_000 {
        format!("{i:>9}")
    } else if i < 1_000_000_000 {
        format!("{:>8}K", i / 1000)
    } else if i < 100_000_000_000 {
        format!("{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        format!("{:>8}G", i / 1_000_000_000)
    } else {
        format!("{:>8}T", i / 1_000_000_000_000)
    }
}

/// ipvsadm.c `print_title`.
fn title(f: Format) -> String {
    const PROT: &str = "Prot LocalAddress:Port";
    const REMOTE: &str = "  -> RemoteAddress:Port\n";
    let col = |names: [&str; 5]| {
        let mut s = left(PROT, 33);
        for n in names {
            s.push(' ');
            s.push_str(&right(n, 8));
        }
        s.push('\n');
        s.push_str(REMOTE);
        s
    };
    if f.stats {
        col(["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"])
    } else if f.rate {
        col(["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"])
    } else if f.thresholds {
        format!(
            "{} {} {} {} {}\n{REMOTE}",
            left(PROT, 33),
            left("Uthreshold", 10),
            left("Lthreshold", 10),
            left("ActiveConn", 10),
            left("InActConn", 10)
        )
    } else if f.persistent_conn {
        format!(
            "{} {} {} {} {}\n{REMOTE}",
            left(PROT, 33),
            left("Weight", 9),
            left("PersistConn", 11),
            left("ActiveConn", 10),
            left("InActConn", 10)
        )
    } else if f.tun_info {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n".to_string()
    } else if !f.rule {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string()
    } else {
        String::new()
    }
}

/// ipvsadm.c `print_sched_flags`: names depend on the scheduler.
fn sched_flags(spec: &rvs_api::ServiceSpec) -> String {
    let f = spec.sched_flags;
    let names: Vec<&str> = match spec.scheduler.as_str() {
        "sh" => [(f.flag1, "sh-fallback"), (f.flag2, "sh-port")].to_vec(),
        "mh" => [(f.flag1, "mh-fallback"), (f.flag2, "mh-port")].to_vec(),
        _ => [
            (f.flag1, "flag-1"),
            (f.flag2, "flag-2"),
            (f.flag3, "flag-3"),
        ]
        .to_vec(),
    }
    .into_iter()
    .filter_map(|(on, n)| on.then_some(n))
    .collect();
    names.join(",")
}

/// Which protocol port names of a service are looked up for (fwmark entries carry 0).
fn proto_of(service: &ServiceRef) -> Proto {
    match service {
        ServiceRef::Tcp { .. } => Proto::Tcp,
        ServiceRef::Udp { .. } => Proto::Udp,
        ServiceRef::Sctp { .. } => Proto::Sctp,
        ServiceRef::Fwmark { .. } => Proto::Other,
    }
}

fn is_ipv6(service: &ServiceRef) -> bool {
    match service {
        ServiceRef::Tcp { address, .. }
        | ServiceRef::Udp { address, .. }
        | ServiceRef::Sctp { address, .. } => address.is_ipv6(),
        ServiceRef::Fwmark { ipv6, .. } => *ipv6,
    }
}

/// The low 32 bits: libipvs 1.31 reads a real server's 64-bit counters and rates
/// (all but the byte counts) with `nla_get_u32` (ipvs_dests_parse_cb passes
/// IPVS_DEST_ATTR_STATS64 to `ipvs_parse_stats`), so they wrap at 2^32.
fn low32(v: u64) -> u64 {
    v & 0xffff_ffff
}

/// `svc_name` of ipvsadm.c `print_service_entry`.
fn service_name(service: &ServiceRef, f: Format, r: &dyn Resolver) -> String {
    match service {
        ServiceRef::Fwmark { mark, ipv6 } => {
            // Printed with %d: marks above 2^31 show negative.
            let mark = *mark as i32;
            match (f.rule, *ipv6) {
                (true, true) => format!("-f {mark} -6"),
                (true, false) => format!("-f {mark}"),
                (false, true) => format!("FWM  {mark} IPv6"),
                (false, false) => format!("FWM  {mark}"),
            }
        }
        ServiceRef::Tcp { address, port }
        | ServiceRef::Udp { address, port }
        | ServiceRef::Sctp { address, port } => {
            let vname = anyname(address, *port, proto_of(service), f.numeric, r);
            let (switch, name) = match service {
                ServiceRef::Tcp { .. } => ("-t", "TCP"),
                ServiceRef::Udp { .. } => ("-u", "UDP"),
                _ => ("--sctp-service", "SCTP"),
            };
            if f.rule {
                format!("{switch} {vname}")
            } else {
                let s = format!("{} {vname}", left(name, 4));
                if address.is_ipv6() {
                    s
                } else {
                    cut(&s, 33)
                }
            }
        }
    }
}

/// The persistence granularity as ipvsadm prints it, unless it is the default (/32
/// or /128): a dotted mask for IPv4, `%i` of the prefix length for IPv6.
fn mask_text(spec: &rvs_api::ServiceSpec, p: &rvs_api::PersistenceSpec) -> Option<String> {
    if is_ipv6(&spec.service) {
        let len = p.prefix_len.unwrap_or(128);
        (len != 128).then(|| (len as i32).to_string())
    } else {
        let mask = p.netmask.unwrap_or(std::net::Ipv4Addr::BROADCAST);
        (mask != std::net::Ipv4Addr::BROADCAST).then(|| mask.to_string())
    }
}

/// The `-S` switch of a forwarding method (`FullNat`, an rvs extension, saves as
/// `-m`: ipvsadm has no switch for it).
fn fwd_switch(f: ForwardSpec) -> &'static str {
    match f {
        ForwardSpec::Masq | ForwardSpec::Fullnat => "-m",
        ForwardSpec::Tunnel => "-i",
        ForwardSpec::Route | ForwardSpec::Local => "-g",
    }
}

/// The Forward column (`FullNat` is an rvs extension; ipvsadm knows the other four).
fn fwd_name(f: ForwardSpec) -> &'static str {
    match f {
        ForwardSpec::Masq => "Masq",
        ForwardSpec::Route => "Route",
        ForwardSpec::Tunnel => "Tunnel",
        ForwardSpec::Local => "Local",
        ForwardSpec::Fullnat => "FullNat",
    }
}

fn tun_flag_index(c: TunnelCsumSpec) -> usize {
    match c {
        TunnelCsumSpec::Nocsum => 0,
        TunnelCsumSpec::Csum => 1,
        TunnelCsumSpec::Remcsum => 2,
    }
}

/// ipvsadm.c `fwd_tun_info`: the TunnelInfo column (`None` prints `n/a`).
fn tun_info(s: &ServerView) -> Option<String> {
    if s.spec.forward != ForwardSpec::Tunnel {
        return None;
    }
    let t: TunnelSpec = s.spec.tunnel.unwrap_or_default();
    let flag = ["-c", "+c", "r+c"][tun_flag_index(t.csum)];
    Some(match t.kind {
        TunnelType::Ipip => "ipip".to_string(),
        TunnelType::Gue => format!("gue:{}:{flag}", t.port),
        TunnelType::Gre => format!("gre:{flag}"),
    })
}

/// ipvsadm.c `print_tunnel_rule`.
fn tunnel_rule(svc_name: &str, dname: &str, s: &ServerView) -> String {
    let t: TunnelSpec = s.spec.tunnel.unwrap_or_default();
    let head = format!(
        "-a {svc_name} -r {dname} {} -w {}",
        fwd_switch(s.spec.forward),
        s.spec.weight as i32
    );
    let opt = ["--tun-nocsum", "--tun-csum", "--tun-remcsum"][tun_flag_index(t.csum)];
    match t.kind {
        TunnelType::Gre => format!("{head} --tun-type gre {opt}\n"),
        TunnelType::Gue => format!("{head} --tun-type gue --tun-port {} {opt}\n", t.port),
        TunnelType::Ipip => format!("{head} --tun-type ipip\n"),
    }
}

/// ipvsadm.c `print_service_entry`: the service line and its real servers.
fn service_entry(out: &mut String, sv: &ServiceView, f: Format, r: &dyn Resolver) {
    let spec = &sv.spec;
    let svc_name = service_name(&spec.service, f, r);
    let any_flag = spec.sched_flags.flag1 || spec.sched_flags.flag2 || spec.sched_flags.flag3;
    if f.rule {
        out.push_str(&format!("-A {svc_name} -s {}", spec.scheduler));
        if let Some(p) = &spec.persistence {
            out.push_str(&format!(" -p {}", p.timeout));
            if let Some(m) = mask_text(spec, p) {
                out.push_str(&format!(" -M {m}"));
            }
        }
        if let Some(pe) = spec.pe.as_deref().filter(|p| !p.is_empty()) {
            out.push_str(&format!(" --pe {pe}"));
        }
        if spec.one_packet {
            out.push_str(" -o");
        }
        if any_flag {
            out.push_str(" -b ");
            out.push_str(&sched_flags(spec));
        }
    } else if f.stats || f.rate {
        out.push_str(&left(&svc_name, 33));
        let (s, t) = (sv.stats, sv.rates);
        let nums = if f.stats {
            [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes]
        } else {
            [t.cps, t.in_pps, t.out_pps, t.in_bps, t.out_bps]
        };
        for n in nums {
            out.push_str(&largenum(n, f.exact));
        }
    } else {
        out.push_str(&format!("{svc_name} {}", spec.scheduler));
        if any_flag {
            out.push_str(&format!(" ({})", sched_flags(spec)));
        }
        if let Some(p) = &spec.persistence {
            out.push_str(&format!(" persistent {}", p.timeout));
            if let Some(m) = mask_text(spec, p) {
                out.push_str(&format!(" mask {m}"));
            }
            if let Some(pe) = spec.pe.as_deref().filter(|p| !p.is_empty()) {
                out.push_str(&format!(" pe {pe}"));
            }
        }
        if spec.one_packet {
            out.push_str(" ops");
        }
    }
    out.push('\n');

    let proto = proto_of(&spec.service);
    for s in servers_in_order(&sv.servers, f.nosort) {
        let d = &s.spec;
        let mut dname = anyname(&d.address, d.port, proto, f.numeric, r);
        if !f.rule && d.address.is_ipv4() {
            dname = cut(&dname, 28);
        }
        let weight = d.weight as i32;
        if f.rule {
            if d.forward == ForwardSpec::Tunnel {
                out.push_str(&tunnel_rule(&svc_name, &dname, s));
            } else {
                out.push_str(&format!(
                    "-a {svc_name} -r {dname} {} -w {weight}\n",
                    fwd_switch(d.forward)
                ));
            }
        } else if f.stats {
            out.push_str(&format!("  -> {}", left(&dname, 28)));
            let st = s.stats;
            for n in [
                low32(st.conns),
                low32(st.in_pkts),
                low32(st.out_pkts),
                st.in_bytes,
                st.out_bytes,
            ] {
                out.push_str(&largenum(n, f.exact));
            }
            out.push('\n');
        } else if f.rate {
            // Only the byte rates go through print_largenum; the others are %8llu.
            let rt = s.rates;
            out.push_str(&format!(
                "  -> {} {:>8} {:>8} {:>8}",
                left(&dname, 28),
                low32(rt.cps),
                low32(rt.in_pps),
                low32(rt.out_pps)
            ));
            out.push_str(&largenum(low32(rt.in_bps), f.exact));
            out.push_str(&largenum(low32(rt.out_bps), f.exact));
            out.push('\n');
        } else if f.thresholds {
            out.push_str(&format!(
                "  -> {} {} {} {} {}\n",
                left(&dname, 28),
                left(&d.u_threshold.to_string(), 10),
                left(&d.l_threshold.to_string(), 10),
                left(&s.active_conns.to_string(), 10),
                left(&s.inactive_conns.to_string(), 10)
            ));
        } else if f.persistent_conn {
            out.push_str(&format!(
                "  -> {} {} {} {} {}\n",
                left(&dname, 28),
                left(&(weight as u32).to_string(), 9),
                left(&s.persistent_conns.to_string(), 11),
                left(&s.active_conns.to_string(), 10),
                left(&s.inactive_conns.to_string(), 10)
            ));
        } else if f.tun_info {
            let ti = tun_info(s).unwrap_or_else(|| "n/a".to_string());
            out.push_str(&format!(
                "  -> {} {} {} {} {} {}\n",
                left(&dname, 28),
                left(fwd_name(d.forward), 7),
                left(&ti, 13),
                left(&weight.to_string(), 6),
                left(&s.active_conns.to_string(), 10),
                left(&s.inactive_conns.to_string(), 10)
            ));
        } else {
            out.push_str(&format!(
                "  -> {} {} {} {} {}\n",
                left(&dname, 28),
                left(fwd_name(d.forward), 7),
                left(&weight.to_string(), 6),
                left(&s.active_conns.to_string(), 10),
                left(&s.inactive_conns.to_string(), 10)
            ));
        }
    }
}

/// Everything `ipvsadm -L...` prints for the whole table (header line included), or
/// the `-S` rules when `format.rule` (no header, no title).
///
/// Order: services by libipvs `ipvs_cmp_services`, servers by `ipvs_cmp_dests`, both
/// through glibc's merge sort (see the `sort` module). With `format.nosort`, services
/// come in `table.services` order (rvs: insertion order; the kernel's own `--nosort`
/// order follows a per-boot hash of a kernel pointer, which no tool can reproduce)
/// and servers in `ServerView` order (newest first, as the kernel lists them).
///
/// rvs extensions: `ForwardSpec::Fullnat` prints as `FullNat` in listings and saves
/// as `-m`; `ForwardSpec::Local` prints `Local` and saves as `-g`, as ipvsadm does.
pub fn render_list_all(table: &TableView, format: Format, r: &dyn Resolver) -> String {
    let mut out = String::new();
    if !format.rule {
        out.push_str(&format!(
            "IP Virtual Server version {} (size={})\n",
            table.version, table.conn_tab_size
        ));
    }
    out.push_str(&title(format));
    for sv in services_in_order(&table.services, format.nosort) {
        service_entry(&mut out, sv, format, r);
    }
    out
}

/// `ipvsadm -L -t|-u|--sctp-service|-f ...`: the title and that one service, or, when
/// the table has no such service, what ipvsadm prints then (`No such service` on
/// stderr, exit 1).
pub fn render_list_service(
    table: &TableView,
    service: &ServiceRef,
    format: Format,
    r: &dyn Resolver,
) -> Result<String, Output> {
    let Some(sv) = table.services.iter().find(|s| &s.spec.service == service) else {
        return Err(Output::stderr("No such service\n".to_string(), 1));
    };
    let mut out = title(format);
    service_entry(&mut out, sv, format, r);
    Ok(out)
}

/// `ipvsadm -L -c` (ipvsadm.c `list_conn`/`print_conn`). With `persistent_conn` the
/// header has the `pe name`/`pe_data` columns, but rows show them only for entries
/// with persistence-engine data, which rvs does not have.
pub fn render_conns(conns: &[ConnView], format: Format, r: &dyn Resolver) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if format.persistent_conn {
        out.push_str(&format!(
            "pro expire {} {} {} {} {} pe_data\n",
            left("state", 11),
            left("source", 18),
            left("virtual", 18),
            left("destination", 18),
            left("pe name", 16)
        ));
    } else {
        out.push_str(&format!(
            "pro expire {} {} {} destination\n",
            left("state", 11),
            left("source", 18),
            left("virtual", 18)
        ));
    }
    for c in conns {
        let proto = match c.protocol.as_str() {
            "TCP" => Proto::Tcp,
            "UDP" => Proto::Udp,
            "SCTP" => Proto::Sctp,
            _ => Proto::Other,
        };
        let name = |a: &IpAddr, p: u16| anyname(a, p, proto, format.numeric, r);
        // The kernel's value is an unsigned int printed as "%02d:%02d".
        let expires = c.expires as u32;
        let expire = format!("{:02}:{:02}", (expires / 60) as i32, (expires % 60) as i32);
        out.push_str(&format!(
            "{} {} {} {} {} {}\n",
            left(&c.protocol, 3),
            left(&expire, 6),
            left(&c.state, 11),
            left(&name(&c.client, c.client_port), 18),
            left(&name(&c.virtual_address, c.virtual_port), 18),
            name(&c.server, c.server_port)
        ));
    }
    out
}

/// `ipvsadm -L --timeout` (ipvsadm.c `list_timeout`; the values are C `int`s).
pub fn render_timeout(t: &TimeoutsSpec) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp as i32, t.tcpfin as i32, t.udp as i32
    )
}

/// `ipvsadm -L --daemon` (ipvsadm.c `list_daemon`): one line per running sync
/// daemon, the master's first. maxlen, port and ttl are printed only when not
/// zero (the kernel's netlink answer always fills them in; the old sockopt
/// interface did not), the group always (a view always has one).
pub fn render_daemons(daemons: &[DaemonView]) -> String {
    let mut ordered: Vec<&DaemonView> = daemons.iter().collect();
    ordered.sort_by_key(|d| d.state != DaemonState::Master);
    let mut out = String::new();
    for d in ordered {
        out.push_str(&format!(
            "{} sync daemon (mcast={}, syncid={}",
            d.state.name(),
            d.mcast_interface,
            d.syncid
        ));
        if d.sync_maxlen != 0 {
            out.push_str(&format!(", maxlen={}", d.sync_maxlen));
        }
        out.push_str(&format!(", group={}", ntop(&d.mcast_group)));
        if d.mcast_port != 0 {
            out.push_str(&format!(", port={}", d.mcast_port));
        }
        if d.mcast_ttl != 0 {
            out.push_str(&format!(", ttl={}", d.mcast_ttl));
        }
        out.push_str(")\n");
    }
    out
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
