#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `rvs-realserver` binary end to end, root only: namespace A (the
//! director's side, `vetha` 10.77.0.1/24) and namespace B (the real server,
//! `vethb` 10.77.0.2/24) joined by a veth pair. The binary runs in B through
//! `ip netns exec`; frames come from A over AF_PACKET (`rvs_sys::FrameSender`)
//! as the director would send them; a UDP socket bound to the VIP in B must get
//! them. Pins go to a bpffs the test mounts on a temporary directory (visible
//! inside `ip netns exec`, unlike /sys/fs/bpf, which it hides by remounting
//! /sys). Namespaces and the mount go away in Drop guards; every wait times out.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::*;
use rvs_sys::{interface, netns, FrameSender};

const BIN: &str = env!("CARGO_BIN_EXE_rvs-realserver");
const WAIT: Duration = Duration::from_secs(5);
const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 9);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const VIP_PORT: u16 = 5000;
const CLIENT_PORT: u16 = 4000;

fn sysctl(ns: &Ns, key: &str) -> String {
    let out = ns.exec("sysctl", &["-n", key]);
    assert!(out.status.success(), "sysctl {key}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn set_sysctl(ns: &Ns, key: &str, value: &str) {
    let out = ns.exec("sysctl", &["-q", "-w", &format!("{key}={value}")]);
    assert!(out.status.success(), "sysctl -w {key}={value}");
}

/// Runs `f` on a thread inside `ns`.
fn spawn_in<T: Send + 'static>(ns: &Ns, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let name = ns.name.clone();
    thread::spawn(move || {
        netns::enter(&name).unwrap();
        f()
    })
}

/// A bpf filesystem mounted on a temporary directory, unmounted on drop.
struct BpfFs {
    dir: tempfile::TempDir,
}

impl BpfFs {
    fn new() -> BpfFs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        run_checked("mount", &["-t", "bpf", "bpf", &path]);
        BpfFs { dir }
    }

    fn pin_dir(&self) -> PathBuf {
        self.dir.path().join("rvs")
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A (director side) and B (real server) joined by vetha/vethb.
struct Pair {
    a: Ns,
    b: Ns,
    state: tempfile::TempDir,
}

impl Pair {
    fn new() -> Pair {
        let pair = Pair {
            a: Ns::new("rvsrs"),
            b: Ns::new("rvsrs"),
            state: tempfile::tempdir().unwrap(),
        };
        pair.a.ip(&[
            "link",
            "add",
            "vetha",
            "type",
            "veth",
            "peer",
            "name",
            "vethb",
            "netns",
            &pair.b.name,
        ]);
        pair.a.ip(&["addr", "add", "10.77.0.1/24", "dev", "vetha"]);
        pair.b.ip(&["addr", "add", "10.77.0.2/24", "dev", "vethb"]);
        for (ns, dev) in [(&pair.a, "vetha"), (&pair.b, "vethb")] {
            ns.ip(&["link", "set", "lo", "up"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        pair
    }

    fn state_file(&self) -> PathBuf {
        self.state.path().join("realserver.json")
    }

    /// `ip netns exec B rvs-realserver --state FILE ARGS`, which must succeed.
    fn realserver(&self, args: &[&str]) -> String {
        let state = self.state_file();
        let mut all = vec![BIN, "--state", state.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = self.b.exec(all[0], &all[1..]);
        assert!(
            out.status.success(),
            "rvs-realserver {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends `ip_packet` from A to vethb's MAC; returns what B's UDP socket on
    /// VIP:VIP_PORT received (source and payload), or None after a second.
    fn deliver(&self, ip_packet: Vec<u8>) -> Option<(SocketAddr, Vec<u8>)> {
        let (ready, is_ready) = mpsc::channel();
        let receiver = spawn_in(&self.b, move || {
            let socket = UdpSocket::bind((VIP, VIP_PORT)).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            ready.send(interface("vethb").unwrap().mac).unwrap();
            let mut buf = [0u8; 1500];
            let (len, from) = socket.recv_from(&mut buf).ok()?;
            Some((from, buf[..len].to_vec()))
        });
        let b_mac = is_ready.recv_timeout(WAIT).unwrap();
        spawn_in(&self.a, move || {
            let a = interface("vetha").unwrap();
            let frame = ethernet(b_mac, a.mac, ETH_IPV4, &ip_packet);
            FrameSender::open(a.index).unwrap().send(&frame).unwrap();
        })
        .join()
        .unwrap();
        receiver.join().unwrap()
    }
}

fn client_datagram(payload: &[u8]) -> Vec<u8> {
    ipv4(CLIENT, VIP, 17, &udp(CLIENT_PORT, VIP_PORT, payload))
}

fn has_xdp(ns: &Ns, dev: &str) -> bool {
    ns.ip(&["link", "show", "dev", dev]).contains("xdp")
}

#[test]
fn tun_up_decapsulates_ipip_to_the_vip_and_down_undoes_it() {
    if !is_root("tun_up_decapsulates_ipip_to_the_vip_and_down_undoes_it") {
        return;
    }
    let pair = Pair::new();
    let bpffs = BpfFs::new();
    // Values `down` must bring back (none equal to what `up` writes).
    set_sysctl(&pair.b, "net.ipv4.conf.all.arp_ignore", "2");
    set_sysctl(&pair.b, "net.ipv4.conf.all.rp_filter", "1");
    set_sysctl(&pair.b, "net.ipv4.conf.vethb.rp_filter", "1");
    let pin_dir = bpffs.pin_dir();
    let up = pair.realserver(&[
        "tun",
        "up",
        "--vip",
        "10.9.9.9",
        "--dev",
        "vethb",
        "--pin-dir",
        pin_dir.to_str().unwrap(),
    ]);
    assert!(up.contains("decapsulating on vethb"), "{up}");
    assert!(has_xdp(&pair.b, "vethb"), "no XDP program on vethb");
    assert!(pair
        .b
        .ip(&["addr", "show", "dev", "lo"])
        .contains("10.9.9.9/32"));
    assert_eq!(sysctl(&pair.b, "net.ipv4.conf.all.arp_ignore"), "1");
    assert_eq!(sysctl(&pair.b, "net.ipv4.conf.lo.arp_announce"), "2");
    assert_eq!(sysctl(&pair.b, "net.ipv4.conf.all.rp_filter"), "0");
    assert_eq!(sysctl(&pair.b, "net.ipv4.conf.vethb.rp_filter"), "0");

    let inner = client_datagram(b"through the tunnel");
    let (from, payload) = pair
        .deliver(ipv4(A_ADDR, B_ADDR, 4, &inner))
        .expect("the VIP socket got nothing");
    assert_eq!(from, SocketAddr::from((CLIENT, CLIENT_PORT)));
    assert_eq!(payload, b"through the tunnel");
    let status = pair.realserver(&["status"]);
    assert!(status.contains("xdp on vethb: attached"), "{status}");
    assert!(status.contains("decapsulated: 1\n"), "{status}");

    pair.realserver(&["tun", "down"]);
    assert!(!has_xdp(&pair.b, "vethb"), "XDP still on vethb after down");
    assert!(!pair
        .b
        .ip(&["addr", "show", "dev", "lo"])
        .contains("10.9.9.9"));
    assert_eq!(sysctl(&pair.b, "net.ipv4.conf.all.arp_ignore"), "2");
    assert_eq!(sysctl(&pair.b, "net.ipv4.conf.lo.arp_announce"), "0");
    assert_eq!(sysctl(&pair.b, "net.ipv4.conf.all.rp_filter"), "1");
    assert_eq!(sysctl(&pair.b, "net.ipv4.conf.vethb.rp_filter"), "1");
    assert!(!pair.state_file().exists());
    assert!(!pin_dir.join("decap_link_vethb").exists());
}

#[test]
fn dr_up_puts_vips_on_lo_with_arp_sysctls_and_down_restores() {
    if !is_root("dr_up_puts_vips_on_lo_with_arp_sysctls_and_down_restores") {
        return;
    }
    let pair = Pair::new();
    // A VIP already on lo stays after `down`; a second one is added and removed.
    pair.b.ip(&["addr", "add", "10.9.9.8/32", "dev", "lo"]);
    set_sysctl(&pair.b, "net.ipv4.conf.lo.arp_ignore", "3");
    pair.realserver(&[
        "dr",
        "up",
        "--vip",
        "10.9.9.9",
        "--vip",
        "10.9.9.8",
        "--vip",
        "2001:db8::9",
    ]);
    let lo = pair.b.ip(&["addr", "show", "dev", "lo"]);
    assert!(lo.contains("10.9.9.9/32"), "{lo}");
    assert!(lo.contains("2001:db8::9/128"), "{lo}");
    for scope in ["all", "lo"] {
        assert_eq!(
            sysctl(&pair.b, &format!("net.ipv4.conf.{scope}.arp_ignore")),
            "1"
        );
        assert_eq!(
            sysctl(&pair.b, &format!("net.ipv4.conf.{scope}.arp_announce")),
            "2"
        );
    }
    assert!(!has_xdp(&pair.b, "vethb"));
    // A frame addressed to the real server's MAC and the VIP, as DR sends it.
    let (from, payload) = pair
        .deliver(client_datagram(b"direct routing"))
        .expect("the VIP socket got nothing");
    assert_eq!(from, SocketAddr::from((CLIENT, CLIENT_PORT)));
    assert_eq!(payload, b"direct routing");
    // `up` twice is refused while the state file records a setup.
    let again = pair.b.exec(
        BIN,
        &[
            "--state",
            pair.state_file().to_str().unwrap(),
            "dr",
            "up",
            "--vip",
            "10.9.9.7",
        ],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("dr down"));

    pair.realserver(&["dr", "down"]);
    let lo = pair.b.ip(&["addr", "show", "dev", "lo"]);
    assert!(!lo.contains("10.9.9.9"), "{lo}");
    assert!(!lo.contains("2001:db8::9"), "{lo}");
    assert!(lo.contains("10.9.9.8/32"), "pre-existing VIP removed: {lo}");
    assert_eq!(sysctl(&pair.b, "net.ipv4.conf.lo.arp_ignore"), "3");
    assert_eq!(sysctl(&pair.b, "net.ipv4.conf.all.arp_ignore"), "0");
    assert_eq!(sysctl(&pair.b, "net.ipv4.conf.all.arp_announce"), "0");
    assert!(!pair.state_file().exists());
    assert!(pair.realserver(&["status"]).contains("nothing set up"));
}

/// Without CAP_NET_ADMIN the binary names the capability and changes nothing.
#[test]
fn missing_capabilities_are_named() {
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("s.json");
    let args = [
        "--state",
        state_file.to_str().unwrap(),
        "dr",
        "up",
        "--vip",
        "10.9.9.9",
    ];
    let out = if nix::unistd::geteuid().is_root() {
        // Drop to nobody: no effective capabilities.
        let mut all = vec!["--reuid=65534", "--regid=65534", "--clear-groups", BIN];
        all.extend_from_slice(&args);
        Command::new("setpriv").args(&all).output().unwrap()
    } else {
        Command::new(BIN).args(args).output().unwrap()
    };
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs CAP_NET_ADMIN to add addresses"),
        "{stderr}"
    );
    assert!(!Path::new(&state_file).exists());
}
