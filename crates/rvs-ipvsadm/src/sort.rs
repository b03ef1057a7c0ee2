//! Listing order: libipvs `ipvs_cmp_services`/`ipvs_cmp_dests` and the glibc 2.36
//! `qsort` they run under. This module owns both, because the comparators subtract
//! unsigned fields into a C `int` (so 10.0.0.1 compares above 200.0.0.1: the
//! difference wraps) and are not transitive; only the exact merge sort glibc uses
//! gives the order ipvsadm prints.

use std::cmp::Ordering;
use std::net::IpAddr;

use rvs_api::{ServerView, ServiceRef, ServiceView};

use crate::parse::{AF_INET, AF_INET6};

/// The fields libipvs compares, as the kernel hands them over: fwmark services carry
/// protocol, address and port 0; an IPv4 address fills the first word of four.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    pub fwmark: u32,
    pub af: u16,
    pub protocol: u16,
    pub words: [u32; 4],
    pub port: u16,
}

/// Address words in host order (`ntohl` of each 32-bit group).
pub(crate) fn words(addr: &IpAddr) -> [u32; 4] {
    match addr {
        IpAddr::V4(a) => [u32::from(*a), 0, 0, 0],
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

fn af_of(addr: &IpAddr) -> u16 {
    match addr {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

pub(crate) fn service_key(r: &ServiceRef) -> Key {
    let addr = |protocol: u16, address: &IpAddr, port: u16| Key {
        fwmark: 0,
        af: af_of(address),
        protocol,
        words: words(address),
        port,
    };
    match r {
        ServiceRef::Tcp { address, port } => addr(6, address, *port),
        ServiceRef::Udp { address, port } => addr(17, address, *port),
        ServiceRef::Sctp { address, port } => addr(132, address, *port),
        ServiceRef::Fwmark { mark, ipv6 } => Key {
            fwmark: *mark,
            af: if *ipv6 { AF_INET6 } else { AF_INET },
            protocol: 0,
            words: [0; 4],
            port: 0,
        },
    }
}

/// The C `int` a difference of two unsigned 32-bit values converts to.
fn diff32(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

fn sign(r: i32) -> Ordering {
    r.cmp(&0)
}

/// libipvs `ipvs_cmp_services`.
pub(crate) fn cmp_services(a: &Key, b: &Key) -> Ordering {
    let mut r = diff32(a.fwmark, b.fwmark);
    if r != 0 {
        return sign(r);
    }
    r = i32::from(a.af) - i32::from(b.af);
    if r != 0 {
        return sign(r);
    }
    r = i32::from(a.protocol) - i32::from(b.protocol);
    if r != 0 {
        return sign(r);
    }
    if a.af == AF_INET6 {
        for i in 0..4 {
            r = diff32(a.words[i], b.words[i]);
            if r != 0 {
                break;
            }
        }
    } else {
        r = diff32(a.words[0], b.words[0]);
    }
    if r != 0 {
        return sign(r);
    }
    sign(i32::from(a.port) - i32::from(b.port))
}

/// libipvs `ipvs_cmp_dests`: the first server's family decides how many address
/// words are compared (real servers of one service may mix families when tunnelled).
pub(crate) fn cmp_dests(a: &ServerView, b: &ServerView) -> Ordering {
    let (wa, wb) = (words(&a.spec.address), words(&b.spec.address));
    let mut r = 0;
    if a.spec.address.is_ipv6() {
        for i in 0..4 {
            r = diff32(wa[i], wb[i]);
            if r != 0 {
                break;
            }
        }
    } else {
        r = diff32(wa[0], wb[0]);
    }
    if r != 0 {
        return sign(r);
    }
    sign(i32::from(a.spec.port) - i32::from(b.spec.port))
}

/// glibc 2.36 `qsort` (`msort_with_tmp`): top-down merge sort, the left half being
/// the smaller (`n / 2`), merging from the left run while `cmp(left, right)` is not
/// greater. Returns the sorted order as indices into `items`.
pub(crate) fn msort<T>(items: &[T], cmp: &dyn Fn(&T, &T) -> Ordering) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..items.len()).collect();
    sort_range(&mut idx, items, cmp);
    idx
}

fn sort_range<T>(idx: &mut [usize], items: &[T], cmp: &dyn Fn(&T, &T) -> Ordering) {
    let n = idx.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    {
        let (left, right) = idx.split_at_mut(n1);
        sort_range(left, items, cmp);
        sort_range(right, items, cmp);
    }
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&items[idx[i]], &items[idx[j]]) != Ordering::Greater {
            merged.push(idx[i]);
            i += 1;
        } else {
            merged.push(idx[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&idx[i..n1]);
    merged.extend_from_slice(&idx[j..n]);
    idx.copy_from_slice(&merged);
}

/// Services in listing order (`--nosort`: as given).
pub(crate) fn services_in_order(services: &[ServiceView], nosort: bool) -> Vec<&ServiceView> {
    if nosort {
        return services.iter().collect();
    }
    let keys: Vec<Key> = services
        .iter()
        .map(|s| service_key(&s.spec.service))
        .collect();
    msort(&keys, &cmp_services)
        .into_iter()
        .map(|i| &services[i])
        .collect()
}

/// Real servers in listing order (`--nosort`: as given, the kernel's newest first).
pub(crate) fn servers_in_order(servers: &[ServerView], nosort: bool) -> Vec<&ServerView> {
    if nosort {
        return servers.iter().collect();
    }
    msort(servers, &cmp_dests)
        .into_iter()
        .map(|i| &servers[i])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sort_is_glibc_msort_on_a_total_order() {
        let v = [5, 3, 9, 1, 1, 7, 2, 8, 0, 6];
        let order = msort(&v, &|a: &i32, b: &i32| a.cmp(b));
        let sorted: Vec<i32> = order.iter().map(|i| v[*i]).collect();
        assert_eq!(sorted, vec![0, 1, 1, 2, 3, 5, 6, 7, 8, 9]);
        // Stable: equal keys keep their order.
        assert_eq!(&order[..3], &[8, 3, 4]);
    }

    #[test]
    fn wrapped_differences() {
        let k = |a: [u8; 4]| Key {
            fwmark: 0,
            af: AF_INET,
            protocol: 6,
            words: [u32::from_be_bytes(a), 0, 0, 0],
            port: 80,
        };
        // 10.0.0.1 - 200.0.0.1 wraps to a positive int.
        assert_eq!(
            cmp_services(&k([10, 0, 0, 1]), &k([200, 0, 0, 1])),
            Ordering::Greater
        );
        assert_eq!(
            cmp_services(&k([10, 0, 0, 1]), &k([100, 0, 0, 1])),
            Ordering::Less
        );
        assert_eq!(
            cmp_services(&k([100, 0, 0, 1]), &k([200, 0, 0, 1])),
            Ordering::Less
        );
        // A large fwmark sorts before address services.
        let fw = Key {
            fwmark: 0x8000_0001,
            af: AF_INET,
            protocol: 0,
            words: [0; 4],
            port: 0,
        };
        assert_eq!(cmp_services(&k([1, 2, 3, 4]), &fw), Ordering::Greater);
    }
}
